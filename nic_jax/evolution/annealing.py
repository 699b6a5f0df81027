"""Annealing of sigma, batch size and learning rate (es-img-captioning's curriculum).

es-img-captioning (`algorithm/tools/iteration.py`, `next_curriculum_step`) anneals
by a schedule, first at generation `schedule_start` and then every `schedule_limit`
generations (1-based, checked as a generation starts), or by patience: after more
than `patience` consecutive generations without a new podium entry. Each step
divides sigma by `stdev_divisor`, multiplies the batch size by `bs_multiplier`
(truncated to an int, as upstream), and for NES divides the learning rate by
`stepsize_divisor` (through the strategy state's `lr_scale`). A zero
`schedule_limit` or `patience` disables that trigger.

`AnnealState` is a pytree (saved in checkpoints); `anneal` is pure and jit-able.
Call it between generations: after generation g (1-based, validation included),
with `improved` = whether that generation added a podium entry (None when no
validation ran), before generation g + 1 starts.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct


@dataclasses.dataclass(frozen=True)
class AnnealConfig:
    """Static annealing settings; zero `schedule_limit` / `patience` disable them."""

    schedule_start: int = 0
    schedule_limit: int = 0
    patience: int = 0
    stdev_divisor: float = 1.0
    bs_multiplier: float = 1.0
    stepsize_divisor: float = 1.0


@struct.dataclass
class AnnealState:
    """Current batch size, the patience counter and the number of steps taken."""

    batch_size: jax.Array  # () int32
    bad_generations: jax.Array  # () int32
    num_steps: jax.Array  # () int32


def init(batch_size: int) -> AnnealState:
    """Annealing state before the first generation."""
    return AnnealState(
        batch_size=jnp.asarray(batch_size, jnp.int32),
        bad_generations=jnp.asarray(0, jnp.int32),
        num_steps=jnp.asarray(0, jnp.int32),
    )


def schedule_due(config: AnnealConfig, generation) -> jax.Array:
    """Whether the schedule steps as 1-based generation `generation` starts."""
    if config.schedule_limit <= 0:
        return jnp.asarray(False)
    generation = jnp.asarray(generation)
    return (generation >= config.schedule_start) & (
        (generation - config.schedule_start) % config.schedule_limit == 0
    )


def _patience(config: AnnealConfig, bad, improved):
    """(new counter, fired): upstream resets on a good generation."""
    if improved is None:
        return bad, jnp.asarray(False)
    if config.patience <= 0:
        return jnp.where(improved, 0, bad), jnp.asarray(False)
    bad = jnp.where(improved, 0, bad + 1)
    fired = bad > config.patience
    return jnp.where(fired, 0, bad), fired


def _step(config: AnnealConfig, fire, anneal_state, strategy_state):
    """Applies one curriculum step where `fire` is true."""
    grown = (anneal_state.batch_size * config.bs_multiplier).astype(jnp.int32)
    anneal_state = anneal_state.replace(
        batch_size=jnp.where(fire, grown, anneal_state.batch_size),
        num_steps=anneal_state.num_steps + fire.astype(jnp.int32),
    )
    sigma = strategy_state.sigma / jnp.where(fire, config.stdev_divisor, 1.0)
    strategy_state = strategy_state.replace(sigma=sigma)
    if hasattr(strategy_state, "lr_scale"):
        divisor = jnp.where(fire, config.stepsize_divisor, 1.0)
        strategy_state = strategy_state.replace(
            lr_scale=strategy_state.lr_scale / divisor
        )
    return anneal_state, strategy_state


def anneal(
    config: AnnealConfig,
    anneal_state: AnnealState,
    strategy_state,
    completed_generation,
    improved=None,
):
    """Between generations: patience on `improved`, then the schedule of the next
    generation. Returns (anneal_state, strategy_state, stepped) where the strategy
    state (NES or GA, anything with `sigma` and maybe `lr_scale`) carries the
    annealed sigma and lr_scale, and `stepped` says whether any step fired."""
    bad, patience_fired = _patience(config, anneal_state.bad_generations, improved)
    anneal_state = anneal_state.replace(bad_generations=jnp.asarray(bad, jnp.int32))
    anneal_state, strategy_state = _step(
        config, patience_fired, anneal_state, strategy_state
    )
    schedule_fired = schedule_due(config, jnp.asarray(completed_generation) + 1)
    anneal_state, strategy_state = _step(
        config, schedule_fired, anneal_state, strategy_state
    )
    return anneal_state, strategy_state, patience_fired | schedule_fired
