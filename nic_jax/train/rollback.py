"""Optional rollback after a non-finite loss, reward, fitness or parameter.

By default a NaN or Inf stops the run (`numerics`). With
`config.numerics.max_rollbacks = R > 0` the trainer is restarted instead from its
last checkpoint (from step 0 when it has none) with every step size multiplied by
`numerics.rollback_factor`, at most R times per workdir: `optim.learning_rate`
(XE, SCST), `es.learning_rate` (NES) and sigma (NES, NIC-ES).

Each rollback is appended to `<workdir>/rollbacks.json` (atomically) before the
restart, so a killed run resumes with the same smaller step sizes and ends where
the uninterrupted one ends: the learning rates are the config's times every
recorded factor (they only act on steps after the restart); sigma lives in the
checkpoint, so a checkpoint written before a rollback (its step <= the rollback's
`restart_step`) gets that rollback's factor when restored. The trainer reads the
records from its config (`numerics.rollbacks`, set by `scaled_config` from the
records this process holds), never from the file another process writes. The
steps between the restart and the failure are discarded with their metric lines
(the metric writer rewinds to the restored step), as after any resume.
"""

import json
import math
import os

import jax
import numpy as np
from absl import logging

from nic_jax import config_fields, parallel
from nic_jax.train import checkpoint, numerics

FILE = "rollbacks.json"
NO_CHECKPOINT = -1  # restart_step of a rollback to step 0 (nothing was saved)
_SCALED = ("optim.learning_rate", "es.learning_rate", "es.sigma")


def load(workdir: str) -> list:
    """The rollbacks recorded in `workdir` (oldest first); [] when none."""
    path = os.path.join(workdir, FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)["rollbacks"]


def _write(workdir: str, records: list) -> None:
    if not parallel.is_main_process():
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"rollbacks": records}, f, indent=2)
    os.replace(path + ".tmp", path)


def _settings(config):
    """(max_rollbacks, factor) of `config.numerics` ((0, 0.5) when it has none)."""
    group = config.get("numerics") or {}
    return group.get("max_rollbacks", 0), group.get("rollback_factor", 0.5)


def scaled_config(config, records: list):
    """`config` with its step sizes (those it has) times every recorded factor,
    and the records as `numerics.rollbacks` ((restart_step, factor) pairs, for
    `scale_restored_sigma`)."""
    if not records:
        return config
    factor = math.prod(r["factor"] for r in records)
    config = config_fields.scaled(config, _SCALED, factor)
    with config.unlocked():
        if "numerics" not in config:
            config.numerics = {}
        config.numerics.rollbacks = [[r["restart_step"], r["factor"]] for r in records]
    return config


def restored_sigma_factor(rollbacks, restored_step: int) -> float:
    """The factor for sigma in a checkpoint of `restored_step`: the product of the
    rollbacks ((restart_step, factor) pairs) that restarted from it or from an
    earlier step (the checkpoint was written before them, so its sigma lacks
    their factor)."""
    return math.prod(f for restart, f in rollbacks if restart >= restored_step)


def scale_restored_sigma(state, config, restored_step):
    """An evolution state restored from `restored_step` (None: made afresh, from
    the scaled config) with the sigma of `restored_sigma_factor` of the config's
    `numerics.rollbacks`."""
    if restored_step is None:
        return state
    rollbacks = (config.get("numerics") or {}).get("rollbacks", [])
    factor = restored_sigma_factor(rollbacks, restored_step)
    if factor == 1.0:
        return state
    logging.info("sigma x %g: rollbacks after step %d", factor, restored_step)
    sigma = state.strategy.sigma  # scaled in float64: factors may be tiny
    scaled = np.asarray(float(sigma) * factor, sigma.dtype)
    sigma = jax.device_put(scaled, sigma.sharding)
    return state.replace(strategy=state.strategy.replace(sigma=sigma))


def _record(config, workdir: str, records: list, error) -> list:
    """`records` + this rollback (written to the workdir), or raises `error` when
    the config allows no further rollback."""
    max_rollbacks, factor = _settings(config)
    if len(records) >= max_rollbacks:
        if records:
            total = math.prod(r["factor"] for r in records)
            raise numerics.NonFiniteError(
                f"{error} (after {len(records)} rollback(s), step sizes x {total:g}: "
                f"numerics.max_rollbacks={max_rollbacks})",
                error.step,
            ) from error
        raise error
    steps = checkpoint.complete_steps(checkpoint.checkpoint_dir(workdir))
    restart = _same_on_every_process(steps[-1] if steps else NO_CHECKPOINT)
    record = dict(
        step=error.step, restart_step=restart, factor=factor, error=str(error)
    )
    logging.warning(
        "rollback %d of %d: %s; restarting from %s with step sizes x %g",
        len(records) + 1,
        max_rollbacks,
        error,
        f"step {restart}" if steps else "step 0 (no checkpoint)",
        factor,
    )
    records = [*records, record]
    _write(workdir, records)
    return records


def _same_on_every_process(step: int) -> int:
    """Process 0's value (each process lists the checkpoints itself)."""
    if jax.process_count() == 1:
        return step
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(step)))


def with_rollbacks(trainer):
    """`trainer(config, workdir) -> scores`, restarted after a non-finite value as
    the config's `numerics` group allows."""

    def train(config, workdir: str) -> dict:
        records = load(workdir)
        while True:
            try:
                return trainer(scaled_config(config, records), workdir)
            except numerics.NonFiniteError as error:
                records = _record(config, workdir, records, error)

    return train
