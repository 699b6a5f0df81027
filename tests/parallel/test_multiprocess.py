"""Two processes x two CPU devices on loopback (launch/multiprocess.sh, gloo)
train NES with the population split over all four devices, checkpoint, stop,
resume, and end where one unsharded process ends."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs.nes import get_config
from nic_jax.train import checkpoint, nes
from nic_jax.train.metric_writer import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
OVERRIDES = {
    "evals.final_split": "",
    "evals.every_steps": 2,
    "evals.metrics": ("CIDEr",),
    "ckpt.every_steps": 2,
    "log.every_steps": 1,
    "es.num_pairs": 4,  # P = 8: 2 members a device
    "es.batch_size": 4,
    "es.noise": "generated",
}


def _flags(num_steps: int) -> list:
    flags = [
        f"--config.{k}={v!r}" if isinstance(v, tuple) else f"--config.{k}={v}"
        for k, v in OVERRIDES.items()
    ]
    return [
        "--config=configs/nes.py:tiny",
        *flags,
        f"--config.es.num_steps={num_steps}",
    ]


def _config(num_steps: int):
    config = get_config("tiny").copy_and_resolve_references()
    for key, value in OVERRIDES.items():
        section, name = key.split(".")
        config[section][name] = value
    config.es.num_steps = num_steps
    config.mesh.population = 1  # the reference: one device, nothing split
    return config


def _launch(workdir, num_steps: int, env: dict) -> str:
    done = subprocess.run(
        [
            str(REPO / "launch" / "multiprocess.sh"),
            "2",
            *_flags(num_steps),
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stderr


def _latest(workdir, like=None):
    """(step, params) of the newest checkpoint, restored on this process's first
    device; `like`: params whose shapes to restore against (None: as saved)."""
    manager = checkpoint.make_manager(workdir, _config(4).ckpt, "val/CIDEr-D", True)
    step = manager.latest_step()
    abstract = None
    if like is not None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), like
        )
    restored = manager.restore(
        step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract))
    )
    return step, restored.params


@pytest.mark.slow
def test_two_processes_checkpoint_resume_and_match_one_process(tmp_path):
    reference = str(tmp_path / "one_process")
    nes.train_and_evaluate(_config(4), reference)
    flags = os.environ.get("XLA_FLAGS", "").split()  # conftest's, 2 devices each
    flags = [f for f in flags if "xla_force_host_platform_device_count" not in f]
    env = dict(
        os.environ,
        XLA_FLAGS=" ".join(flags + ["--xla_force_host_platform_device_count=2"]),
        JAX_PLATFORMS="cpu",
        PYTHON=sys.executable,
        # the resumed run reuses the first run's compiled programs
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jit_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    workdir = tmp_path / "two_processes"
    first = _launch(workdir, 2, env)
    assert "process 0 of 2: 2 local devices of 4" in first
    assert max(int(step) for step in os.listdir(workdir / "checkpoints")) == 2
    resumed = _launch(workdir, 4, env)
    assert "resumed from step 2" in resumed

    step_a, params_a = _latest(reference)
    step_b, params_b = _latest(str(workdir), params_a)
    assert step_a == step_b == 4
    leaves_a, leaves_b = jax.tree.leaves(params_a), jax.tree.leaves(params_b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-5)
    # process 0 alone wrote metrics.jsonl: each step once, the same numbers
    one = read_metrics(os.path.join(reference, "metrics.jsonl"))
    two = read_metrics(str(workdir / "metrics.jsonl"))
    assert [m["step"] for m in one] == [m["step"] for m in two] == [0, 1, 2, 2, 3, 4, 4]
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)
