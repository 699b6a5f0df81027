"""The README's commands as a user runs them: train, then evaluate.

kill -9 and the same command again: tests/reliability (test_sigkill.py kills an
NES run at random points, test_checkpoints.py an XE run in the middle of a save).
"""

import json
import os
import subprocess
import sys

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
