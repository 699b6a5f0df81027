"""`es_workload.measure_alternating` (the lowrank benchmark's fresh processes,
alternating), with a stand-in for the child runs (the real ones:
test_benchmarks_quick.py)."""

from nic_jax.benchmarks import es_workload


def test_lowrank_alternates_fresh_processes_and_joins_their_runs(monkeypatch):
    calls = []

    def fake_measure(population, quick, batch_size, repeats, chunk, rank):
        calls.append(rank)
        n = len(calls)
        return {"seconds": [float(n)] * repeats, "compile_s": 10.0 * n}

    monkeypatch.setattr(es_workload, "measure_in_subprocess", fake_measure)
    shape = es_workload.QUICK
    full, low = es_workload.measure_alternating(shape, True, 16, (0, 4), 2, 3)
    assert calls == [0, 4, 0, 4, 0, 4]
    assert full == {"seconds": [1.0, 1.0, 3.0, 3.0, 5.0, 5.0], "compile_s": 10.0}
    assert low == {"seconds": [2.0, 2.0, 4.0, 4.0, 6.0, 6.0], "compile_s": 20.0}
