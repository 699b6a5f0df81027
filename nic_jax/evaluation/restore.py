"""Restores a trained decoder from a workdir: config, vocabulary, params of one step.

Shared by `nic_jax.evaluate` (a split of the data) and `nic_jax.caption` (a folder of
images). Only params and metadata are read; the vocabulary comes from the
checkpoint's metadata, so no training data is needed to decode.
"""

import dataclasses
import json
import os

import jax
from ml_collections import ConfigDict

from nic_jax.config_check import check_config
from nic_jax.errors import InputError
from nic_jax.models.functional import Decoder, build_decoder, init_params
from nic_jax.train import checkpoint


@dataclasses.dataclass(frozen=True)
class WorkdirModel:
    """A restored decoder. ix_to_word: {1..V: word}; 0 is BOS = EOS = pad."""

    config: ConfigDict
    decoder: Decoder
    params: dict
    ix_to_word: dict
    step: int
    meta: dict  # the checkpoint's JSON metadata (config, vocab, data fingerprint)
    where: str  # the checkpoint directory, for messages


def read_config(workdir: str) -> ConfigDict:
    """The resolved config the run saved as `workdir/config.json`."""
    path = os.path.join(workdir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = ConfigDict(json.load(f))
    except (OSError, ValueError, TypeError) as error:  # bad JSON, UTF-8, not a dict
        raise InputError(f"{path}: cannot read the run's config ({error})") from error
    missing = [g for g in ("data", "model", "evals", "ckpt") if g not in config]
    if missing:
        raise InputError(f"{path}: lacks the config groups {missing}")
    check_config(config)  # an edited file: values the model cannot be built with
    return config


def choose_step(manager, metric: str, step, where: str) -> int:
    """`step` if saved; by default the best by `metric`, else the latest."""
    steps = manager.all_steps()
    if not steps:
        raise InputError(f"no checkpoint in {where}; train first with nic_jax.main")
    if step is None:
        best = checkpoint.best_step(manager, metric)
        return best if best is not None else manager.latest_step()
    if step not in steps:
        raise InputError(f"--step={step}: no such checkpoint in {where}; found {steps}")
    return step


def _vocabulary(meta: dict, where: str) -> dict:
    words = meta.get("vocab")
    if not isinstance(words, list) or not words:
        raise InputError(f"checkpoint {where} records no vocabulary ('vocab' in meta)")
    return {i + 1: word for i, word in enumerate(words)}


def load_workdir_model(workdir: str, step: int | None = None) -> WorkdirModel:
    """The decoder and params of `step` (default: best validation, else latest)."""
    where = checkpoint.checkpoint_dir(workdir)
    if not os.path.isdir(where):
        raise InputError(f"{where} does not exist; is --workdir a training workdir?")
    config = read_config(workdir)
    metric = f"{config.evals.split}/{config.evals.best_metric}"
    manager = checkpoint.make_manager(workdir, config.ckpt, metric, read_only=True)
    chosen = choose_step(manager, metric, step, where)
    ix_to_word = _vocabulary(checkpoint.restore_meta(manager, chosen), where)
    abstract = jax.eval_shape(
        lambda: init_params(config.model, len(ix_to_word), jax.random.key(0))
    )
    params, meta = checkpoint.restore_params(manager, chosen, abstract)
    manager.close()
    decoder = build_decoder(config.model, len(ix_to_word))
    return WorkdirModel(config, decoder, params, ix_to_word, chosen, meta, where)
