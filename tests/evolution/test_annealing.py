"""Annealing by schedule and by patience against a transcription of
es-img-captioning's Iteration (incr_iteration / process_evaluated_elites)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nic_jax.evolution import annealing
from nic_jax.evolution import ga as ga_lib
from nic_jax.evolution import nes as nes_lib


class _UpstreamIteration:
    """The bookkeeping of algorithm/tools/iteration.py, in plain Python."""

    def __init__(self, config, sigma, batch_size):
        self.c, self.sigma, self.batch_size = config, sigma, batch_size
        self.lr_scale, self.bad, self.iteration = 1.0, 0, 0

    def _step(self):
        self.sigma /= self.c.stdev_divisor
        self.batch_size = int(self.batch_size * self.c.bs_multiplier)
        self.lr_scale /= self.c.stepsize_divisor

    def incr_iteration(self):
        self.iteration += 1
        c = self.c
        if (
            c.schedule_limit
            and self.iteration >= c.schedule_start
            and (self.iteration - c.schedule_start) % c.schedule_limit == 0
        ):
            self._step()

    def process_evaluated_elites(self, improved):
        if self.c.patience and not improved:
            self.bad += 1
            if self.bad > self.c.patience:
                self._step()
                self.bad = 0
        else:
            self.bad = 0


CONFIGS = {
    "schedule": annealing.AnnealConfig(
        schedule_start=5,
        schedule_limit=4,
        stdev_divisor=2.0,
        bs_multiplier=1.5,
        stepsize_divisor=3.0,
    ),
    "patience": annealing.AnnealConfig(
        patience=2, stdev_divisor=1.5, bs_multiplier=2.0, stepsize_divisor=2.0
    ),
    "both": annealing.AnnealConfig(
        schedule_start=3,
        schedule_limit=7,
        patience=1,
        stdev_divisor=2.0,
        bs_multiplier=1.3,
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_upstream_bookkeeping(name):
    config = CONFIGS[name]
    improved = np.random.default_rng(0).random(30) < 0.3
    reference = _UpstreamIteration(config, sigma=0.1, batch_size=10)
    nes = nes_lib.NES({"w": jnp.zeros(3)}, 2, optax.sgd(0.1))
    strategy_state = nes.init({"w": jnp.zeros(3)}, sigma=0.1)
    anneal_state = annealing.init(10)
    step = jax.jit(annealing.anneal, static_argnums=0)

    reference.incr_iteration()  # generation 1 starts (never a schedule step)
    steps = 0
    for generation in range(1, 31):
        reference.process_evaluated_elites(improved[generation - 1])
        reference.incr_iteration()  # generation + 1 starts
        anneal_state, strategy_state, stepped = step(
            config,
            anneal_state,
            strategy_state,
            generation,
            jnp.asarray(improved[generation - 1]),
        )
        np.testing.assert_allclose(strategy_state.sigma, reference.sigma, rtol=1e-5)
        np.testing.assert_allclose(
            strategy_state.lr_scale, reference.lr_scale, rtol=1e-5
        )
        assert int(anneal_state.batch_size) == reference.batch_size
        assert int(anneal_state.bad_generations) == reference.bad
        steps += int(stepped)
    assert steps > 0
    assert int(anneal_state.num_steps) >= steps


def test_schedule_fires_first_at_start_then_every_limit():
    config = annealing.AnnealConfig(schedule_start=10, schedule_limit=5)
    due = [int(g) for g in range(1, 31) if annealing.schedule_due(config, g)]
    assert due == [10, 15, 20, 25, 30]
    assert not any(
        annealing.schedule_due(annealing.AnnealConfig(), g) for g in range(9)
    )


def test_ga_state_without_lr_scale_and_skipped_validation():
    config = CONFIGS["patience"]
    ga = ga_lib.GA({"w": jnp.zeros(3)}, 4, 3, 1, 1)
    state = ga.init({"w": jnp.zeros(3)}, sigma=0.2)
    anneal_state = annealing.init(8)
    for generation in range(1, 4):
        anneal_state, state, _ = annealing.anneal(
            config, anneal_state, state, generation, jnp.asarray(False)
        )
    np.testing.assert_allclose(state.sigma, 0.2 / 1.5, rtol=1e-6)
    assert int(anneal_state.batch_size) == 16
    # No validation ran (improved=None): patience does not move.
    anneal_state, state, stepped = annealing.anneal(config, anneal_state, state, 4)
    assert not bool(stepped) and int(anneal_state.bad_generations) == 0
