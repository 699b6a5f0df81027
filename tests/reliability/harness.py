"""Shared pieces of the fault-injection tests: short runs of every trainer, as a
command line (to kill) and as a library call (the uninterrupted reference), and
readers of what a workdir holds afterwards."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from configs.default import get_config as default_config
from configs.es import get_config as es_config
from configs.nes import get_config as nes_config
from configs.scst import get_config as scst_config
from nic_jax.train import checkpoint
from nic_jax.train.metric_writer import read_metrics
from nic_jax.train.registry import get_trainer
from tests.reliability import tally

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = os.path.join(REPO, "tests", "reliability", "driver.py")
FULL = tally.FULL

_QUIET = {"evals.final_split": "", "finetune.trainer": ""}
_EVOLUTION = {
    "es.num_steps": 8,
    "ckpt.every_steps": 2,
    "evals.every_steps": 4,
    "log.every_steps": 2,
}
_GRADIENT = {"ckpt.every_steps": 3, "evals.every_steps": 6, "log.every_steps": 3}
# trainer -> (config file, get_config, overrides): runs of 8-12 steps on `:tiny`
RUNS = {
    "xe": ("default.py", default_config, {**_QUIET, **_GRADIENT, "xe.num_epochs": 1}),
    "scst": ("scst.py", scst_config, {**_QUIET, **_GRADIENT, "scst.num_epochs": 1}),
    "nes": ("nes.py", nes_config, {**_QUIET, **_EVOLUTION}),
    "es": ("es.py", es_config, {**_QUIET, **_EVOLUTION}),
}


def total_steps(trainer: str) -> int:
    return 8 if trainer in ("nes", "es") else 12


def make_config(trainer: str, **extra):
    """The library config of `RUNS[trainer]` (+ `extra` overrides "a.b": v)."""
    _, get_config, overrides = RUNS[trainer]
    config = get_config("tiny").copy_and_resolve_references()
    for key, value in {**overrides, **extra}.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def cli_args(trainer: str, workdir, **extra) -> list:
    """The command line arguments of the same run."""
    name, _, overrides = RUNS[trainer]
    flags = [f"--config.{k}={v}" for k, v in {**overrides, **extra}.items()]
    return [f"--config=configs/{name}:tiny", f"--workdir={workdir}", *flags]


def train_in_process(trainer: str, workdir, **extra) -> dict:
    """The uninterrupted reference run."""
    return get_trainer(trainer)(make_config(trainer, **extra), str(workdir))


def start(args: list, fault: str = "") -> subprocess.Popen:
    """`python -m nic_jax.main args` (through the fault driver when `fault`); its
    stdout and stderr go to a file (a pipe nobody reads would stall a long run)."""
    env = dict(os.environ, NIC_JAX_FAULT=fault)
    command = [DRIVER] if fault else ["-m", "nic_jax.main"]
    log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (outlives)
    proc = subprocess.Popen(
        [sys.executable, *command, *args], cwd=REPO, env=env, stdout=log, stderr=log
    )
    proc.log = log
    return proc


def output(proc: subprocess.Popen) -> str:
    """Everything the process printed (stdout and stderr, interleaved)."""
    proc.log.seek(0)
    text = proc.log.read()
    proc.log.close()
    return text


def run(args: list, fault: str = "", timeout: float = 900):
    """Runs to the end: (returncode, output)."""
    proc = start(args, fault)
    proc.wait(timeout=timeout)
    return proc.returncode, output(proc)


def kill(proc: subprocess.Popen) -> str:
    """SIGKILLs the process; returns what it printed."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return output(proc)


def wait_for(condition, proc, timeout: float = 300) -> bool:
    """Polls `condition()` until true (True) or the process ends first (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.02)
    raise TimeoutError("the run neither reached the point nor ended")


def complete_steps(workdir) -> list:
    return checkpoint.complete_steps(checkpoint.checkpoint_dir(str(workdir)))


def restore(workdir, step: int | None = None):
    """(step, params, train state, meta) of a checkpoint, read back as saved."""
    manager = checkpoint.make_manager(str(workdir), _ckpt_config(), "", True)
    step = manager.latest_step() if step is None else step
    params, train, meta = checkpoint.restore(manager, step)
    manager.close()
    return step, params, train, meta


def _ckpt_config():
    return default_config("tiny").ckpt


def assert_trees_close(a, b, atol=1e-6) -> None:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


def metrics(workdir) -> list:
    return read_metrics(os.path.join(str(workdir), "metrics.jsonl"))


def assert_same_run(reference, resumed) -> None:
    """The final checkpoint and the metrics of two workdirs agree."""
    step_a, params_a, train_a, _ = restore(reference)
    step_b, params_b, train_b, _ = restore(resumed)
    assert step_a == step_b
    assert_trees_close(params_a, params_b)
    assert_trees_close(train_a, train_b)
    lines_a, lines_b = metrics(reference), metrics(resumed)
    assert [m["step"] for m in lines_a] == [m["step"] for m in lines_b]
    for a, b in zip(lines_a, lines_b, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
