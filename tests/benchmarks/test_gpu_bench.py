"""launch/gpu_bench.sh: its plan, order and flags, a failing benchmark recorded
without ending the run, the time budget and the subset, checked with a stand-in
python that prints one JSON line per benchmark (the real benchmarks' lines are
checked in test_benchmarks_quick.py)."""

import json
import os
import pathlib
import stat
import subprocess

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "launch" / "gpu_bench.sh"

# -c: the device kind; -: the environment line from stdin; -m MODULE ARGS: a
# benchmark's line after SLEEP_<name> seconds, exit status EXIT_<name>
FAKE_PYTHON = r"""#!/usr/bin/env python3
import json, os, sys, time
if sys.argv[1] == "-c":
    print("Fake GPU")
elif sys.argv[1] == "-":
    print(json.dumps({"benchmark": "environment"}))
else:
    name = sys.argv[2].rsplit(".", 1)[-1]
    time.sleep(float(os.environ.get("SLEEP_" + name, 0)))
    print("log line")
    print(json.dumps({"benchmark": name, "argv": sys.argv[3:]}))
    sys.exit(int(os.environ.get("EXIT_" + name, 0)))
"""


def _run(tmp_path, *args, **env):
    python = tmp_path / "fake_python"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "bench.jsonl"
    full_env = dict(os.environ, PYTHON=str(python), NIC_JAX_BENCH_CPU="1", **env)
    done = subprocess.run(
        ["bash", str(SCRIPT), str(out), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [json.loads(x) for x in done.stdout.splitlines()] == lines[1:]  # echoed
    return done, lines


def test_runs_the_plan_in_order_and_records_a_failure_without_stopping(tmp_path):
    _, lines = _run(tmp_path, "--quick", EXIT_profile_generation="3")
    assert lines[0] == {"benchmark": "environment"}
    names = [line["benchmark"] for line in lines[1:]]
    assert names == [
        "es_throughput",
        "lowrank",
        "profile_generation",
        "es_throughput",
        "decode",
        "xe_step",
        "memory",
        "metrics",
    ]
    assert lines[1]["argv"] == ["--low_rank=4", "--quick"]
    forms = "--products=grouped,stacked,shared"
    assert lines[2]["argv"] == [
        "--rank=4",
        "--population=1024",
        "--processes=1",
        "--repeats=3",
        forms,
        "--quick",
    ]
    assert lines[3] == {
        "benchmark": "profile_generation",
        "flags": "--rank=4 --product=grouped",
        "error": "exit status 3",
    }
    assert lines[4]["argv"] == [
        "--matmul_precision=bfloat16",
        "--low_rank=4",
        "--quick",
    ]
    assert lines[5]["argv"] == ["--quick"]


def test_budget_skips_what_cannot_start_with_a_minute_left(tmp_path):
    done, lines = _run(tmp_path, NIC_JAX_BENCH_BUDGET_S="62", SLEEP_es_throughput="3")
    assert [line["benchmark"] for line in lines[1:]] == ["es_throughput"]
    assert "lowrank --rank=4 --population=1024" in done.stderr
    assert "--products=grouped,stacked,shared: skipped" in done.stderr


def test_only_runs_the_named_benchmarks(tmp_path):
    _, lines = _run(tmp_path, NIC_JAX_BENCH_ONLY="memory decode")
    assert [line["benchmark"] for line in lines[1:]] == ["decode", "memory"]
