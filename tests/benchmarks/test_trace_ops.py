"""`benchmarks.trace_ops` (profile_generation's op tables) on traces made by hand."""

import gzip
import json

import pytest

from nic_jax.benchmarks import trace_ops

GPU = "/device:GPU:0"


def test_device_kernels_are_summed_by_name_and_host_events_left_out():
    events = [
        (GPU, "gemm", 300.0),
        (GPU, "reduce", 100.0),
        (GPU, "gemm", 100.0),
        ("/host:CPU", "while.3", 5_000.0),
    ]
    table = trace_ops.op_table(events, top=5)
    assert table["source"] == "device kernels"
    assert table["kernel_ms"] == pytest.approx(0.5)
    assert table["top"] == [
        ["gemm", pytest.approx(0.4), 2, pytest.approx(0.8)],
        ["reduce", pytest.approx(0.1), 1, pytest.approx(0.2)],
    ]


def test_without_a_device_the_xla_ops_on_host_threads_are_ranked():
    events = [
        ("/host:CPU", "$api.py:10 block_until_ready", 900.0),
        ("/host:CPU", "ThunkExecutor::Execute", 800.0),
        ("/host:CPU", "PjitFunction(jit(generation))", 700.0),
        ("/host:CPU", "ynn_fusion.3", 30.0),
        ("/host:CPU", "while.7", 70.0),
        ("/host:CPU", "ynn_fusion.3", 30.0),
    ]
    table = trace_ops.op_table(events, top=1)
    assert table["source"] == "host events" and table["kernel_ms"] is None
    share = 70.0 / (70.0 + 60.0)  # of the XLA ops alone
    assert table["top"] == [["while.7", pytest.approx(0.07), 1, pytest.approx(share)]]


def test_complete_events_name_their_process(tmp_path):
    trace = {
        "traceEvents": [
            {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": GPU}},
            {"ph": "X", "pid": 7, "name": "gemm", "dur": 12.5, "ts": 0},
            {"ph": "X", "pid": 9, "name": "orphan", "dur": 1, "ts": 0},
            {"ph": "i", "pid": 7, "name": "instant", "ts": 3},
        ]
    }
    path = tmp_path / "plugins" / "profile" / "run" / "host.trace.json.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt") as f:
        json.dump(trace, f)
    assert trace_ops.complete_events(str(tmp_path)) == [
        (GPU, "gemm", 12.5),
        ("9", "orphan", 1.0),
    ]


def test_a_directory_without_a_trace_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="no \\*.trace.json.gz"):
        trace_ops.complete_events(str(tmp_path))
