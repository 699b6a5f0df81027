"""The README's commands as a user runs them: train, kill -9, resume, evaluate."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=configs/default.py:tiny"]


def _run(args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def _json_lines(stdout: str) -> list:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_train_then_evaluate_print_one_json_line_each(tmp_path):
    workdir = str(tmp_path / "w")
    train = _run(["nic_jax.main", *TINY, f"--workdir={workdir}"])
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = _json_lines(train.stdout)  # XE, then its NES fine-tuning
    assert [m["split"] for m in metrics] == ["test", "test"]
    for stage in metrics:
        assert {"Bleu_4", "ROUGE_L", "CIDEr"} <= set(stage)
    assert train.stdout.count("    ref: ") >= 10  # sample captions with references
    assert "val CIDEr-D before nes: " in train.stdout
    assert os.path.isdir(os.path.join(workdir, "nes", "checkpoints"))

    evaluation = _run(["nic_jax.evaluate", f"--workdir={workdir}", "--split=test"])
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    (line,) = _json_lines(evaluation.stdout)
    with open(os.path.join(workdir, "eval_test.json")) as f:
        written = json.load(f)
    assert written["metrics"] == {
        k: v for k, v in line.items() if k not in ("split", "step")
    }
    assert len(written["captions"]) == 24


def _latest_step(workdir):
    ckpts = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpts):
        return 0
    return max([int(d) for d in os.listdir(ckpts) if d.isdigit()] or [0])


def test_sigkill_then_same_command_resumes_to_the_same_result(tmp_path):
    args = [
        "nic_jax.main",
        *TINY,
        "--config.xe.num_epochs=12",
        "--config.evals.final_split=",
        "--config.finetune.trainer=",  # tests/train/test_evolution.py: NES resume
    ]
    full = _run([*args, f"--workdir={tmp_path / 'full'}"])
    assert full.returncode == 0, full.stderr[-3000:]

    workdir = str(tmp_path / "killed")
    proc = subprocess.Popen(
        [sys.executable, "-m", *args, f"--workdir={workdir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while _latest_step(workdir) < 30 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _latest_step(workdir)
    assert 0 < killed_at < 144, "the run must be killed mid-way"

    resumed = _run([*args, f"--workdir={workdir}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {killed_at}" in resumed.stderr

    def last_lines(w):
        with open(os.path.join(w, "metrics.jsonl")) as f:
            lines = f.read().splitlines()
        return [json.loads(x) for x in lines[-2:]]

    for a, b in zip(last_lines(tmp_path / "full"), last_lines(workdir)):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(
                a[key], b[key], rtol=1e-6, atol=1e-6, err_msg=key
            )
