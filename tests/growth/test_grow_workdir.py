"""Growing a trained XE workdir mid-training: W2 evaluates like W, serves as
init_from, and training continues on the same losses (no spike)."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from configs.default import get_config
from nic_jax.data.batches import train_batch
from nic_jax.data.dataset import load_dataset
from nic_jax.errors import InputError
from nic_jax.evaluation.restore import load_workdir_model
from nic_jax.evaluation.workdir import evaluate_workdir
from nic_jax.growth import apply, layer_widening
from nic_jax.growth.workdir import grow_workdir, widen_train_state
from nic_jax.models.functional import init_params
from nic_jax.train import common, xe
from nic_jax.train.metric_writer import read_metrics

EXTRA = 8


def _config(num_epochs: int, hidden_sizes=()):
    config = get_config("tiny").copy_and_resolve_references()
    config.finetune.trainer = ""
    config.evals.final_split = ""
    config.evals.num_images = 6
    config.evals.every_steps = 1000  # validate at the end only
    config.log.every_steps = 1
    config.model.drop_prob_lm = 0.0  # losses are then exact functions of params
    config.xe.num_epochs = num_epochs
    config.model.hidden_sizes = hidden_sizes
    return config


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _losses(workdir: str) -> dict:
    lines = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    return {m["step"]: m["train/loss"] for m in lines if "train/loss" in m}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """W: one epoch; W2: W grown by r2r, trained on; W_ref: W trained on."""
    root = tmp_path_factory.mktemp("grow")
    workdir, grown, ref = (str(root / name) for name in ("w", "w2", "w_ref"))
    xe.train_and_evaluate(_config(1), workdir)
    shutil.copytree(workdir, ref)
    summary = grow_workdir(workdir, grown, 0, EXTRA, "r2r", rescale_lr=True)
    evaluate_workdir(workdir, "val", num_images=6)
    evaluate_workdir(grown, "val", num_images=6)
    xe.train_and_evaluate(_config(2, tuple(summary["hidden_sizes"])), grown)
    xe.train_and_evaluate(_config(2), ref)
    return workdir, grown, ref, summary


def test_grown_workdir_decodes_like_the_original(runs):
    workdir, grown, _, summary = runs
    assert summary["hidden_sizes"] == [32 + EXTRA]
    old, new = summary["num_params"]
    assert summary["lr_ratio"] == pytest.approx(old / new) and new > old
    assert (
        f"--config.optim.learning_rate={5e-4 * (old / new)}"
        in (summary["resume_overrides"])
    )
    before = read_json(os.path.join(workdir, "eval_val.json"))
    after = read_json(os.path.join(grown, "eval_val.json"))
    assert before["step"] == after["step"] == summary["step"]
    assert before["captions"] == after["captions"]
    assert before["metrics"] == after["metrics"]


def test_training_continues_on_the_same_losses(runs):
    workdir, grown, ref, summary = runs
    before, after, reference = _losses(workdir), _losses(grown), _losses(ref)
    first = summary["step"] + 1
    assert max(before) == summary["step"] and min(after) == first
    assert sorted(after) == sorted(k for k in reference if k >= first)
    # the first update after growing sees the same function on the same batch
    assert after[first] == pytest.approx(reference[first], abs=1e-5)
    # then the new units move a little; no spike: losses track the un-grown run
    gaps = [abs(after[s] - reference[s]) for s in after]
    assert max(gaps) < 0.02, gaps
    assert max(after.values()) < max(before.values())


def test_first_loss_after_growing_equals_the_original_models(runs):
    """Independent of the trainer: W's params on the batch W2 trained on first."""
    workdir, _, _, summary = runs
    config = _config(1)
    model = load_workdir_model(workdir)
    dataset = load_dataset(config.data, config.model.fc_feat_size, False, ("train",))
    batch = train_batch(
        dataset.splits["train"], config.seed, summary["step"], 10, 5, False
    )
    loss, _ = xe.xe_loss(model.decoder, model.params, batch, None, 0.0)
    assert _losses(runs[1])[summary["step"] + 1] == pytest.approx(float(loss), abs=1e-5)


def test_grown_workdir_serves_as_init_from(runs):
    _, grown, _, summary = runs
    config = _config(1, tuple(summary["hidden_sizes"]))
    config.ckpt.init_from = grown
    dataset = load_dataset(config.data, config.model.fc_feat_size, False, ("train",))
    params = common.initial_params(config, dataset, jax.random.key(0))
    best = load_workdir_model(grown)
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, best.params)
    config.model.hidden_sizes = ()  # the un-grown shape is refused, by name
    with pytest.raises(InputError, match="model.hidden_sizes"):
        common.initial_params(config, dataset, jax.random.key(0))


def test_bad_destinations_are_refused(runs, tmp_path):
    workdir, grown, _, _ = runs
    with pytest.raises(InputError, match="is --workdir"):
        grow_workdir(workdir, workdir, 0, 2)
    with pytest.raises(InputError, match="already holds checkpoints"):
        grow_workdir(workdir, grown, 0, 2)
    with pytest.raises(InputError, match="--layer=1: model 'fc' has layers 0..0"):
        grow_workdir(workdir, str(tmp_path / "new"), 1, 2)


def test_evolution_states_widen_their_flat_params_rows():
    """NES theta / GA parents rows are widened like params; moments get zeros."""
    config = _config(1).model
    params = init_params(config, 7, jax.random.key(0))
    flat, unravel = ravel_pytree(params)
    rows = np.stack([flat, 2 * flat])
    train = {"strategy": {"parents": rows, "moments": [{"mu": flat + 1}], "n": 3}}
    widening = layer_widening(params, "fc", 0, EXTRA)
    grown = widen_train_state(train, params, widening, "net2net", seed=4)
    for index, (row, old) in enumerate(zip(grown["strategy"]["parents"], rows)):
        expected = apply(unravel(old), widening, "net2net", 4 + index)
        np.testing.assert_array_equal(row, ravel_pytree(expected)[0])
    moment = grown["strategy"]["moments"][0]["mu"]
    expected = ravel_pytree(apply(unravel(flat + 1), widening, "zeros"))[0]
    np.testing.assert_array_equal(moment, expected)
    assert grown["strategy"]["n"] == 3
