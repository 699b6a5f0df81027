"""Every file of configs/ loads, passes the config checks, and the COCO-shaped
ones (es-img-captioning's experiment files) train on cocotalk-format files."""

import pathlib

import jax
import numpy as np
import pytest

from nic_jax.config_args import sibling_config
from nic_jax.config_check import check_config
from nic_jax.errors import InputError
from nic_jax.train import common, nes
from nic_jax.train.metric_writer import read_metrics

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
NAMES = sorted(p.name for p in CONFIGS.glob("*.py"))


def _load(name: str, preset: str = ""):
    return sibling_config(str(CONFIGS / "default.py"), name, preset)


@pytest.mark.parametrize("preset", ["", "tiny"])
@pytest.mark.parametrize("name", NAMES)
def test_config_loads_and_checks(name, preset):
    check_config(_load(name, preset))


def test_coco_configs_mirror_the_experiment_files():
    es, nes_config = _load("coco_es.py"), _load("coco_nes.py")
    assert (es.trainer, nes_config.trainer) == ("es", "nes")
    assert (es.es.population_size, es.es.num_parents, es.es.num_elites) == (1000, 50, 3)
    assert 2 * nes_config.es.num_pairs == 1000
    for config in (es, nes_config):
        assert config.data.name == "cocotalk"
        assert (config.model.input_encoding_size, config.model.rnn_size) == (128, 128)


def test_coco_nes_trains_on_cocotalk_files(cocotalk_dataset, tmp_path):
    config = _load("coco_nes.py", "tiny").copy_and_resolve_references()
    for key, value in cocotalk_dataset.items():  # the files in place of data/
        group, name = key.split(".")
        config[group][name] = value
    nes.train_and_evaluate(config, str(tmp_path / "w"))
    lines = read_metrics(str(tmp_path / "w" / "metrics.jsonl"))
    fitness = [m["es/fitness_mean"] for m in lines if "es/fitness_mean" in m]
    assert len(fitness) == 2 and np.isfinite(fitness).all()


def test_matmul_precision_is_applied_and_checked():
    config = _load("default.py")
    try:
        with config.unlocked():
            config.compute.matmul_precision = "bfloat16"
        common.apply_compute(config)
        assert jax.config.jax_default_matmul_precision == "bfloat16"
        with config.unlocked():
            config.compute.matmul_precision = "default"
        common.apply_compute(config)
        assert jax.config.jax_default_matmul_precision is None
        with config.unlocked():
            config.compute.matmul_precision = "fp8"
        with pytest.raises(InputError, match="compute.matmul_precision"):
            check_config(config)
    finally:
        jax.config.update("jax_default_matmul_precision", None)
