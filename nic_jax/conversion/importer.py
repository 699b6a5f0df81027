"""Turns a PyTorch captioner checkpoint into a complete nic_jax workdir.

The workdir gets `config.json` (the given config with `config.model` sized from the
checkpoint) and one orbax checkpoint at step 0 with the items every nic_jax
checkpoint has: `params`, `train` (only `step`: a converted model has no optimizer
state) and `meta` (config, vocabulary, origin). `nic_jax.evaluate --workdir` and
the trainers' `config.ckpt.init_from` read it like any trained workdir; training
goes into a new workdir from there (there is no optimizer state to resume).
"""

import json
import os

import jax
import jax.numpy as jnp
from absl import logging

from nic_jax.conversion import es_captioning, self_critical
from nic_jax.conversion.layout import (
    check_state_dict,
    params_from_state_dict,
    torch_layout,
)
from nic_jax.data.cocotalk import _parse_ix_to_word
from nic_jax.data.karpathy import read_json
from nic_jax.errors import InputError
from nic_jax.models.functional import init_params
from nic_jax.train import checkpoint, common

SOURCES = {
    "sc_fc": self_critical.read_fc,
    "sc_topdown": self_critical.read_topdown,
    "es_fc": es_captioning.read_fc,
}


def get_source(name: str):
    """The reader of checkpoint source `name`."""
    if name not in SOURCES:
        raise InputError(f"--source={name!r} is unknown; valid: {sorted(SOURCES)}")
    return SOURCES[name]


def _sized_config(config, model_fields: dict):
    """A copy of `config` whose `model` group is the checkpoint's model."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for key, value in model_fields.items():
            config.model[key] = value
    return config


def convert_params(source_model, model_config, where: str) -> dict:
    """nic_jax params (numpy) of `source_model`, checked against the decoder."""
    vocab_size = len(source_model.ix_to_word)
    abstract = jax.eval_shape(
        lambda: init_params(model_config, vocab_size, jax.random.key(0))
    )
    layout = torch_layout(abstract, source_model.renames)
    check_state_dict(source_model.state_dict, layout, where)
    return params_from_state_dict(source_model.state_dict, layout)


def _check_data_vocabulary(config, ix_to_word: dict, where: str) -> None:
    """Fails now, not at evaluation, when the configured data has other words."""
    if config.data.name != "cocotalk" or not config.data.input_json:
        logging.warning(
            "config data.name=%r: evaluate with the data the model was trained on",
            config.data.name,
        )
        return
    path = config.data.input_json
    data = read_json(path)
    raw = data.get("ix_to_word") if isinstance(data, dict) else None
    data_words = _parse_ix_to_word(f"config data.input_json={path}", raw)
    meta = {"vocab": [ix_to_word[i] for i in sorted(ix_to_word)]}
    checkpoint.check_vocabulary(meta, data_words, where)


def _check_new_workdir(workdir: str) -> None:
    """Never mixes an import into a training run's checkpoints."""
    where = checkpoint.checkpoint_dir(workdir)
    if os.path.isdir(where) and os.listdir(where):
        raise InputError(
            f"--workdir={workdir} already holds checkpoints; convert into a new one"
        )


def _write_workdir(workdir, config, params, meta) -> None:
    common.save_config(config, workdir)
    best = f"{config.evals.split}/{config.evals.best_metric}"
    manager = checkpoint.make_manager(workdir, config.ckpt, best)
    train = {"step": jnp.zeros((), jnp.int32)}
    checkpoint.save(manager, 0, params, train, meta)
    manager.wait_until_finished()
    manager.close()


def convert_checkpoint(
    config, source: str, model_path: str, infos_path: str, workdir: str, vocab=""
) -> dict:
    """Converts `model_path` (+ `infos_path`) of `source` into `workdir`.

    Returns the checkpoint's meta (resolved config, vocabulary, origin).
    """
    _check_new_workdir(workdir)
    source_model = get_source(source)(model_path, infos_path, vocab)
    config = _sized_config(config, source_model.model)
    where = f"--model={model_path} (--source={source})"
    params = convert_params(source_model, config.model, where)
    _check_data_vocabulary(config, source_model.ix_to_word, where)
    ix_to_word = source_model.ix_to_word
    meta = {
        "config": json.loads(config.to_json_best_effort()),
        "vocab": [ix_to_word[i] for i in sorted(ix_to_word)],
        "data_fingerprint": "",
        "converted_from": source_model.origin,
    }
    _write_workdir(workdir, config, params, meta)
    logging.info("wrote %s from %s", checkpoint.checkpoint_dir(workdir), where)
    return meta
