"""Grows a trained workdir into a new one: the library behind `nic_jax.grow`.

Reads one checkpoint of W (default: the latest, the one training resumes from),
widens its params (`growth.widen`), carries the rest of the trainer state over and
writes W2 with one checkpoint at the same step, so that W2 works with
`nic_jax.evaluate`, as `ckpt.init_from`, and resumes training where W stopped:

* optimizer moments (Adam's mu and nu, NES's flat moments) keep their entries and
  get zeros for the new ones; counts, keys, data position and scores are copied;
* evolution states hold flat params vectors: NES's `theta` and the GA's `parents`
  rows are unravelled, widened like the params and ravelled again;
* the config gets `model.hidden_sizes`; with `rescale_lr` the learning rates
  (`optim.learning_rate`, `es.learning_rate`) are multiplied by old / new
  parameter count.
"""

import json
import os

import jax
import numpy as np
from absl import logging
from jax.flatten_util import ravel_pytree

from nic_jax import config_fields
from nic_jax.errors import InputError
from nic_jax.evaluation.restore import choose_step, read_config
from nic_jax.growth import transforms
from nic_jax.growth.widen import lr_ratio, num_params, plan, widen_optimizer_state
from nic_jax.train import checkpoint

FLAT_PARAMS_FIELDS = ("theta", "parents")  # flat params rows of NES / the GA


def _widen_rows(rows, params, widening, fill: str, seed: int):
    """Flat params rows (..., N) -> (..., N'): unravel, widen, ravel each row (r2r
    draws new weights per row)."""
    _, unravel = ravel_pytree(params)
    flat = np.asarray(rows).reshape(-1, rows.shape[-1])
    grown = [
        ravel_pytree(transforms.apply(unravel(row), widening, fill, seed + i))[0]
        for i, row in enumerate(flat)
    ]
    return np.stack(grown).reshape(rows.shape[:-1] + (-1,))


def widen_train_state(train, params, widening, method: str, seed: int = 0):
    """The saved trainer state (plain containers) for the grown params."""
    train = widen_optimizer_state(train, params, widening)
    size = num_params(params)

    def visit(tree, name=""):
        if isinstance(tree, dict):
            return {k: visit(v, k) for k, v in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(visit(v, name) for v in tree)
        if getattr(tree, "ndim", 0) >= 1 and tree.shape[-1] == size:
            fill = method if name in FLAT_PARAMS_FIELDS else "zeros"
            return _widen_rows(tree, params, widening, fill, seed)
        return tree

    return visit(train)


_LEARNING_RATES = ("optim.learning_rate", "es.learning_rate")


def _grown_run_config(config, model_config, ratio: float, rescale_lr: bool):
    config = config_fields.scaled(config, _LEARNING_RATES, ratio if rescale_lr else 1)
    config.model = model_config
    return config


def _overrides(config, rescale_lr: bool) -> str:
    """The command-line overrides that resume the grown run with `nic_jax.main`."""
    sizes = ",".join(str(size) for size in config.model.hidden_sizes)
    flags = [f"--config.model.hidden_sizes={sizes}"]
    rates = config_fields.present(config, _LEARNING_RATES) if rescale_lr else []
    flags += [f"--config.{f}={config_fields.value(config, f)}" for f in rates]
    return " ".join(flags)


def _write_config(config, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def _open_source(workdir: str, step):
    """(config, read-only manager, step: `step` or the latest, best metric name)."""
    config = read_config(workdir)
    metric = f"{config.evals.split}/{config.evals.best_metric}"
    source = checkpoint.make_manager(workdir, config.ckpt, metric, read_only=True)
    where = checkpoint.checkpoint_dir(workdir)
    chosen = source.latest_step() if step is None else step
    chosen = choose_step(source, metric, chosen, where)
    return config, source, chosen, metric


def grow_workdir(
    workdir, out, layer, extra, method="r2r", seed=0, step=None, rescale_lr=False
) -> dict:
    """Writes `out`: `workdir`'s checkpoint `step` (default latest) with `extra`
    units added to recurrent layer `layer`. Returns a summary dict."""
    if os.path.abspath(out) == os.path.abspath(workdir):
        raise InputError(f"--out={out} is --workdir; grow into a new directory")
    if os.path.isdir(checkpoint.checkpoint_dir(out)):
        raise InputError(f"--out={out} already holds checkpoints; use a new directory")
    config, source, chosen, metric = _open_source(workdir, step)
    # on the host: restored arrays keep the saving run's device placement
    params, train, meta = jax.device_get(checkpoint.restore(source, chosen))
    widening, model_config = plan(params, config.model, layer, extra)
    grown = transforms.apply(params, widening, method, seed)
    train = jax.device_get(widen_train_state(train, params, widening, method, seed))
    grown = jax.device_get(grown)
    ratio = lr_ratio(params, grown)
    config = _grown_run_config(config, model_config, ratio, rescale_lr)
    meta = dict(meta, config=json.loads(config.to_json_best_effort()))
    _write_config(config, out)
    target = checkpoint.make_manager(out, config.ckpt, metric)
    checkpoint.save(target, chosen, grown, train, meta, source.metrics(chosen))
    target.wait_until_finished()
    target.close()
    source.close()
    summary = {
        "step": chosen,
        "layer": layer,
        "method": method,
        "hidden_sizes": list(model_config.hidden_sizes),
        "num_params": [num_params(params), num_params(grown)],
        "lr_ratio": ratio if rescale_lr else 1.0,
        "resume_overrides": _overrides(config, rescale_lr),
    }
    logging.info("grew %s into %s: %s", workdir, out, summary)
    return summary
