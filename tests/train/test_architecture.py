"""Architecture mutation inside the NIC-ES trainer (`train/architecture.py`,
`es.arch_mutation`): kept offspring are widened on the way, every member's
padding stays exactly zero, the exported model evaluates with the saved (widest)
config, and a killed run resumes to the same parents."""

import json
import os

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from configs.es import get_config
from nic_jax.data.dataset import load_dataset
from nic_jax.errors import InputError
from nic_jax.evaluation.workdir import evaluate_workdir
from nic_jax.growth.mutation import row_buckets
from nic_jax.models.functional import init_params
from nic_jax.train import architecture, es, evolution, nes
from nic_jax.train.metric_writer import read_metrics
from tests.train.test_evolution import _Interrupt, _latest

STEP, BUCKETS = 4, 3


def _config(probability=0.5):
    config = get_config("tiny").copy_and_resolve_references()
    config.evals.final_split = ""
    config.es.num_steps = 4
    config.evals.every_steps = 2
    config.ckpt.every_steps = 2
    config.log.every_steps = 1
    config.es.population_size, config.es.num_parents = 8, 4
    config.es.num_val_items = config.evals.num_images = 8
    config.es.arch_mutation = probability
    config.es.arch_step = STEP
    config.es.arch_buckets = BUCKETS
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("arch"))
    es.train_and_evaluate(_config(), workdir)
    return workdir


def _arch_and_parents(workdir):
    config = _config()
    _, _, train = _latest(workdir, config)
    dataset = load_dataset(config.data, config.model.fc_feat_size, False, ("val",))
    arch = architecture.from_config(config, len(dataset.ix_to_word))
    return arch, np.asarray(train["strategy"]["parents"])


def test_kept_offspring_widen_and_padding_stays_zero(trained):
    lines = read_metrics(os.path.join(trained, "metrics.jsonl"))
    means = [m["es/arch_bucket_mean"] for m in lines if "es/arch_bucket_mean" in m]
    assert len(means) == 4 and means[0] > 0 and means[-1] >= means[0]
    arch, parents = _arch_and_parents(trained)
    masks = arch.buckets.masks
    buckets = np.asarray(row_buckets(parents, masks))
    assert buckets.max() > 0  # some parents are wider than the start
    for row, bucket in zip(parents, buckets):
        assert not row[masks[bucket] == 0].any()  # masked noise: padding is zero
    with open(os.path.join(trained, "config.json"), encoding="utf-8") as f:
        saved = json.load(f)["model"]
    rnn = _config().model.rnn_size
    assert saved["hidden_sizes"] == [rnn + (BUCKETS - 1) * STEP]


def test_exported_model_evaluates_with_the_saved_config(trained):
    result = evaluate_workdir(trained, "val")
    assert 0.0 <= result["metrics"]["CIDEr"] < 10.0
    assert len(result["captions"]) == 24  # the whole tiny val split


def test_resumed_run_widens_the_same_rows(trained, tmp_path, monkeypatch):
    real_batch = evolution.train_batch

    def crash_at_position_3(split, seed, position, *args):
        if position == 3:
            raise _Interrupt
        return real_batch(split, seed, position, *args)

    resumed = str(tmp_path / "resumed")
    monkeypatch.setattr(evolution, "train_batch", crash_at_position_3)
    with pytest.raises(_Interrupt):
        es.train_and_evaluate(_config(), resumed)
    monkeypatch.setattr(evolution, "train_batch", real_batch)
    es.train_and_evaluate(_config(), resumed)
    (_, params_a, train_a), (_, params_b, train_b) = (
        _latest(w, _config()) for w in (trained, resumed)
    )
    np.testing.assert_allclose(
        train_a["strategy"]["parents"], train_b["strategy"]["parents"], atol=1e-6
    )
    np.testing.assert_allclose(
        ravel_pytree(params_a)[0], ravel_pytree(params_b)[0], atol=1e-6
    )


def test_only_the_ga_mutates_architectures(tmp_path):
    config = _config()
    config.trainer = "nes"
    with pytest.raises(InputError, match="arch_mutation=0.5 needs trainer 'es'"):
        nes.train_and_evaluate(config, str(tmp_path / "w"))


@pytest.mark.parametrize("name", ["fc", "topdown", "in5400_gru"])
def test_traceable_padding_equals_the_widening_transform(name):
    config = _config()
    config.model.name = name
    arch = architecture.from_config(config, 30)
    params = init_params(config.model, 30, jax.random.key(1))
    padded = ravel_pytree(architecture.padded_params(arch, params))[0]
    np.testing.assert_array_equal(padded, arch.buckets.pad(params, 0))
