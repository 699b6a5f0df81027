"""NES and NIC-ES trainers on the tiny synthetic dataset: start from an XE
checkpoint, anneal on schedule, checkpoint, and resume exactly."""

import os

import jax
import numpy as np
import pytest

from configs.es import get_config as es_config
from nic_jax import plot
from nic_jax.errors import InputError
from nic_jax.train import checkpoint, es, evolution, nes, xe
from nic_jax.train.metric_writer import read_metrics
from tests.train.test_xe import _config as xe_config

TRAINERS = {"nes": nes, "es": es}


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def xe_workdir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("xe"))
    xe.train_and_evaluate(xe_config(), workdir)
    return workdir


def _config(trainer: str, init_from: str):
    config = es_config("tiny").copy_and_resolve_references()
    config.trainer = trainer
    config.evals.final_split = ""
    config.ckpt.init_from = init_from
    config.es.num_steps = 12
    config.evals.every_steps = 6
    config.ckpt.every_steps = 4
    return config


def _latest(workdir, config):
    manager = checkpoint.make_manager(workdir, config.ckpt, "val/CIDEr-D", True)
    step = manager.latest_step()
    params, train, _ = checkpoint.restore(manager, step)
    return step, params, train


def _assert_trees_close(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


@pytest.mark.parametrize("trainer", ["nes", "es"])
def test_interrupted_then_resumed_equals_uninterrupted(
    trainer, xe_workdir, tmp_path, monkeypatch
):
    config = _config(trainer, xe_workdir)
    full_dir, resumed_dir = str(tmp_path / "full"), str(tmp_path / "resumed")
    scores = TRAINERS[trainer].train_and_evaluate(config, full_dir)
    assert "val/CIDEr-D" in scores and "val/CIDEr" in scores

    real_batch = evolution.train_batch

    def crash_at_position_7(split, seed, position, *args):
        if position == 7:
            raise _Interrupt
        return real_batch(split, seed, position, *args)

    monkeypatch.setattr(evolution, "train_batch", crash_at_position_7)
    with pytest.raises(_Interrupt):
        TRAINERS[trainer].train_and_evaluate(config, resumed_dir)
    monkeypatch.setattr(evolution, "train_batch", real_batch)
    TRAINERS[trainer].train_and_evaluate(config, resumed_dir)

    step_a, params_a, train_a = _latest(full_dir, config)
    step_b, params_b, train_b = _latest(resumed_dir, config)
    assert step_a == step_b == 12
    _assert_trees_close(params_a, params_b)
    _assert_trees_close(train_a["strategy"], train_b["strategy"])  # podium too
    full = read_metrics(os.path.join(full_dir, "metrics.jsonl"))
    resumed = read_metrics(os.path.join(resumed_dir, "metrics.jsonl"))
    assert [m["step"] for m in full] == [m["step"] for m in resumed]
    for a, b in zip(full, resumed):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)


def test_starts_from_the_xe_checkpoint_and_validates_it_first(xe_workdir, tmp_path):
    config = _config("nes", xe_workdir)
    config.es.num_steps = 2
    nes.train_and_evaluate(config, str(tmp_path / "nes"))
    lines = read_metrics(str(tmp_path / "nes" / "metrics.jsonl"))
    first = lines[0]
    assert first["step"] == 0 and "val/CIDEr-D" in first
    xe_lines = read_metrics(os.path.join(xe_workdir, "metrics.jsonl"))
    xe_cider = max(m["val/CIDEr"] for m in xe_lines if "val/CIDEr" in m)
    # step 0 scores the XE model itself (its best checkpoint), not fresh params
    np.testing.assert_allclose(first["val/CIDEr"], xe_cider, rtol=1e-5)


def test_schedule_anneals_sigma_batch_size_and_learning_rate(tmp_path, monkeypatch):
    config = _config("nes", "")
    config.es.num_steps = 6
    config.es.schedule_start = 3
    config.es.schedule_limit = 2
    config.log.every_steps = 1
    config.log.plots = True
    drawn, draw = [], plot.write_plots  # the curves are redrawn at each checkpoint

    def write_plots(workdir, *args):
        drawn.append(read_metrics(os.path.join(workdir, "metrics.jsonl"))[-1]["step"])
        return draw(workdir, *args)

    monkeypatch.setattr(plot, "write_plots", write_plots)
    nes.train_and_evaluate(config, str(tmp_path / "nes"))
    assert drawn == [4, 6]  # checkpoint at 4, validation (and checkpoint) at 6
    for name in ("sigma", "batch_size", "fitness", "validation", "metrics"):
        assert (tmp_path / "nes" / "plots" / f"{name}.png").is_file(), name
    lines = [
        m
        for m in read_metrics(str(tmp_path / "nes" / "metrics.jsonl"))
        if "es/sigma" in m
    ]
    sigma = [m["es/sigma"] for m in lines]
    batch = [m["es/batch_size"] for m in lines]
    s0, b0 = config.es.sigma, config.es.batch_size
    # generation g (1-based) runs after the steps due at 3, 5: / 2 and x 2 each
    np.testing.assert_allclose(sigma, [s0, s0, s0 / 2, s0 / 2, s0 / 4, s0 / 4])
    assert batch == [b0, b0, 2 * b0, 2 * b0, 4 * b0, 4 * b0]


def test_low_rank_noise_is_refused_by_the_ga(tmp_path):
    config = _config("es", "")
    config.es.noise_rank = 2
    with pytest.raises(InputError, match="es.noise_rank=2: low-rank"):
        es.train_and_evaluate(config, str(tmp_path / "es"))
