"""Stops a run at the first non-finite loss, reward, fitness or parameter.

`fit` checks the per-step metrics (loss, reward, fitness, ... of every trainer)
whenever it logs and before every checkpoint, and the params before every
checkpoint, so a NaN is named with its exact step and never saved: the last
checkpoint holds finite values and a rerun with a smaller step size resumes from
it. As big_vision's trainers, which raise on a NaN loss; `rollback` restarts
from the last checkpoint with smaller step sizes instead, when configured.
"""

import jax
import jax.numpy as jnp
import numpy as np

from nic_jax import parallel

_HINT = (
    "stopping; the checkpoints saved before it hold finite values: lower the "
    "step size (optim.learning_rate, es.learning_rate or es.sigma) and rerun "
    "to resume from the last one (numerics.max_rollbacks > 0 does that itself)"
)


class NonFiniteError(FloatingPointError):
    """A loss, reward, fitness or parameter became NaN or infinite at `step`."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


def _first_bad_step(history: list):
    """(index, {name: value}) of the first step dict holding a non-finite value."""
    for index, metrics in enumerate(history):
        bad = {
            k: float(np.mean(v))
            for k, v in metrics.items()
            if not np.all(np.isfinite(np.asarray(v, np.float64)))
        }
        if bad:
            return index, bad
    return None, {}


def check_metrics(history: list, last_step: int, loss_key: str) -> None:
    """Raises `NonFiniteError` naming the first step of `history` (metric dicts of
    steps last_step - len + 1 .. last_step) with a non-finite value, and the names.
    """
    index, bad = _first_bad_step(jax.device_get(history))
    if index is None:
        return
    step = int(last_step - len(history) + 1 + index)
    names = sorted(bad, key=lambda k: (k != loss_key, k))
    values = ", ".join(f"{k}={bad[k]}" for k in names)
    raise NonFiniteError(f"non-finite {values} at step {step}; {_HINT}", step)


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def check_params(params, step: int) -> None:
    """Raises `NonFiniteError` if any parameter is NaN or infinite after `step`."""
    params = parallel.local_copy(params)  # this process's copy: no collective
    if bool(_all_finite(params)):
        return
    names = [
        jax.tree_util.keystr(path)
        for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(params))
        if not np.all(np.isfinite(x))
    ]
    raise NonFiniteError(
        f"non-finite parameters after step {step} (in {', '.join(names[:3])}"
        f"{', ...' if len(names) > 3 else ''}); {_HINT}",
        step,
    )
