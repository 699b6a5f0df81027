"""What a user sees for a mistake on the command line: one `error: ...` line on
stderr naming the flag, file or field, exit status 2, and no traceback (from
absl's flag parser, ml_collections, orbax or JAX)."""

import re
import subprocess
import sys

import pytest

from tests.reliability import harness

TINY = "--config=configs/default.py:tiny"

# name -> (module and arguments, the regex the last stderr line matches)
CASES = {
    "unknown config field": (
        ["nic_jax.main", TINY, "--workdir=W", "--config.model.rnn_sise=3"],
        r"^error: --config\.model\.rnn_sise=3: the config has no field 'rnn_sise'; "
        r"did you mean 'rnn_size'\?",
    ),
    "wrong value type": (
        ["nic_jax.main", TINY, "--workdir=W", "--config.es.sigma=big"],
        r"^error: --config\.es\.sigma=big: found 'big', expected a number$",
    ),
    "unknown preset": (
        ["nic_jax.main", "--config=configs/default.py:tyni", "--workdir=W"],
        r"^error: --config=configs/default\.py:tyni: config argument 'tyni' is "
        r"unknown; valid: \['seed', 'tiny'\]$",
    ),
    "value that cannot run": (
        ["nic_jax.main", TINY, "--workdir=W", "--config.data.batch_size=0"],
        r"^error: config data\.batch_size=0; expected an integer >= 1$",
    ),
    "missing config file": (
        ["nic_jax.main", "--config=configs/nope.py", "--workdir=W"],
        r"^error: --config: \[Errno 2\] No such file or directory: 'configs/nope\.py'",
    ),
    "evaluation of an empty workdir": (
        ["nic_jax.evaluate", "--workdir=W", "--split=test"],
        r"^error: .*/checkpoints does not exist; is --workdir a training workdir\?$",
    ),
    "scoring results that miss images": (
        ["nic_jax.score", "--annotations=A", "--results=R", "--tokenizer=python"],
        r"^error: .*R\.json: no image_id for 1 annotated images, e\.g\. \[2\]$",
    ),
}
SHORT = ("unknown config field", "wrong value type", "scoring results that miss images")


@pytest.mark.parametrize("case", sorted(CASES) if harness.FULL else SHORT)
def test_one_error_line_and_exit_status_2(case, tmp_path, tally):
    args, message = CASES[case]
    (tmp_path / "A.json").write_text(
        '{"images": [{"id": 1}, {"id": 2}], "annotations": [{"image_id": 1, '
        '"caption": "a dot"}, {"image_id": 2, "caption": "two dots"}]}'
    )
    (tmp_path / "R.json").write_text('[{"image_id": 1, "caption": "a dot"}]')
    args = [
        a.replace("=W", f"={tmp_path / 'w'}")
        .replace("=A", f"={tmp_path / 'A.json'}")
        .replace("=R", f"={tmp_path / 'R.json'}")
        for a in args
    ]
    result = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=harness.REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    tally["bad_inputs_tried"] += 1
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.count("error:") == 1
    assert re.search(message, last), last


@pytest.mark.skipif(not harness.FULL, reason="full version: NIC_JAX_FULL_FAULTS=1")
def test_a_run_stopped_by_a_nan_is_one_error_line(tmp_path, tally):
    """A learning rate of 1e30 makes the loss NaN within two steps."""
    args = harness.cli_args("xe", tmp_path / "w", **{"optim.learning_rate": 1e30})
    code, text = harness.run(args)
    tally["faults_injected"] += 1
    assert code == 2, text[-3000:]
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("error: non-finite train/loss=nan"), last
    assert "at step" in last and "lower the step size" in last
