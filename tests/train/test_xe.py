"""XE on the tiny synthetic dataset: learns, checkpoints, and resumes exactly."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs.default import get_config
from nic_jax.train import checkpoint, xe
from nic_jax.train.metric_writer import read_metrics


def _config(**overrides):
    config = get_config("tiny").copy_and_resolve_references()
    config.evals.final_split = ""
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def _final_params(workdir, config):
    manager = checkpoint.make_manager(workdir, config.ckpt, "val/CIDEr", read_only=True)
    step = manager.latest_step()
    restored = manager.restore(
        step, args=ocp.args.Composite(params=ocp.args.StandardRestore())
    )
    return step, restored.params


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("full"))
    config = _config()
    scores = xe.train_and_evaluate(config, workdir)
    return workdir, config, scores


def test_loss_decreases_and_files_are_written(uninterrupted):
    workdir, _, scores = uninterrupted
    lines = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    losses = [m["train/loss"] for m in lines if "train/loss" in m]
    assert losses[-1] < losses[0]
    assert "val/CIDEr" in scores
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["trainer"] == "xe"


def test_interrupted_then_resumed_equals_uninterrupted(
    uninterrupted, tmp_path, monkeypatch
):
    full_dir, config, _ = uninterrupted
    workdir = str(tmp_path / "resumed")
    real_batch = xe.train_batch

    def crash_at_position_9(split, seed, position, *args):
        if position == 9:
            raise _Interrupt
        return real_batch(split, seed, position, *args)

    monkeypatch.setattr(xe, "train_batch", crash_at_position_9)
    with pytest.raises(_Interrupt):
        xe.train_and_evaluate(config, workdir)
    monkeypatch.setattr(xe, "train_batch", real_batch)
    xe.train_and_evaluate(config, workdir)

    step_a, params_a = _final_params(full_dir, config)
    step_b, params_b = _final_params(workdir, config)
    assert step_a == step_b
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    full = read_metrics(os.path.join(full_dir, "metrics.jsonl"))
    resumed = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    assert [m["step"] for m in full] == [m["step"] for m in resumed]
    for a, b in zip(full, resumed):
        for key in a:
            np.testing.assert_allclose(
                a[key], b[key], rtol=1e-6, atol=1e-6, err_msg=key
            )
