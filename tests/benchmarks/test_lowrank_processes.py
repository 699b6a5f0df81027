"""`es_workload.measure_alternating` (the lowrank benchmark's fresh processes,
alternating), with a stand-in for the child runs (the real ones:
test_benchmarks_quick.py)."""

from nic_jax.benchmarks import es_workload


def test_lowrank_alternates_fresh_processes_and_joins_their_runs(monkeypatch):
    calls = []

    def fake_measure(population, quick, batch_size, repeats, chunk, rank, product):
        calls.append((rank, product, chunk))
        n = len(calls)
        return {"seconds": [float(n)] * repeats, "compile_s": 10.0 * n}

    monkeypatch.setattr(es_workload, "measure_in_subprocess", fake_measure)
    shape = es_workload.QUICK
    variants = ((0, "auto", 0), (4, "grouped", 4))  # chunk 0: the shape's
    full, low = es_workload.measure_alternating(shape, True, 16, variants, 2, 3)
    assert calls == [(0, "auto", shape.chunk_size), (4, "grouped", 4)] * 3
    assert full == {"seconds": [1.0, 1.0, 3.0, 3.0, 5.0, 5.0], "compile_s": 10.0}
    assert low == {"seconds": [2.0, 2.0, 4.0, 4.0, 6.0, 6.0], "compile_s": 20.0}
