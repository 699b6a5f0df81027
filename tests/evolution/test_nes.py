"""NIC-NES: the rank-weighted estimate, its agreement with the true gradient on a
quadratic, the optimizer step on -g + l2 * theta, lr_scale and the update ratio."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from nic_jax.evolution import nes as nes_lib
from nic_jax.evolution import noise as noise_lib
from nic_jax.evolution.ranks import centered_ranks

TARGET = jnp.linspace(-1.0, 1.0, 20)


def _template():
    return {"a": jnp.zeros((4, 3)), "b": jnp.zeros((8,))}


def _quadratic(params, key):
    del key
    return -jnp.sum((ravel_pytree(params)[0] - TARGET) ** 2)


def _generation(strategy, state, key, source):
    population, state = strategy.ask(key, state)
    fitness = strategy.evaluate(_quadratic, population, key, source)
    return population, fitness


@pytest.mark.parametrize("divide_by_sigma", [False, True])
def test_estimate_agrees_with_true_gradient_on_quadratic(divide_by_sigma):
    strategy = nes_lib.NES(
        _template(), 1000, optax.sgd(0.1), divide_by_sigma=divide_by_sigma
    )
    theta = jax.random.normal(jax.random.key(0), (20,))
    state = strategy.init(strategy.unravel(theta), sigma=0.01)
    source = noise_lib.generated()

    @jax.jit
    def estimate(state, key):
        population, fitness = _generation(strategy, state, key, source)
        return strategy.gradient(population, fitness, source)

    g = estimate(state, jax.random.key(1))
    true = -2 * (theta - TARGET)
    cosine = jnp.dot(g, true) / (jnp.linalg.norm(g) * jnp.linalg.norm(true))
    assert cosine >= 0.9, cosine


def test_gradient_is_rank_weighted_sum_of_pair_noise():
    strategy = nes_lib.NES(_template(), 6, optax.sgd(0.1), noise_chunk_size=4)
    state = strategy.init(strategy.unravel(jnp.ones(20)), sigma=0.2)
    source = noise_lib.shared_table(seed=0, size=300)
    key = jax.random.key(3)
    population, fitness = _generation(strategy, state, key, source)
    g = strategy.gradient(population, fitness, source)

    shaped = np.asarray(centered_ranks(fitness))
    z = np.stack([noise_lib.standard_noise(source, key, i, 20) for i in range(6)])
    expected = 0.2 * ((shaped[0::2] - shaped[1::2]) @ z) / 12
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)

    textbook = nes_lib.NES(_template(), 6, optax.sgd(0.1), divide_by_sigma=True)
    g_textbook = textbook.gradient(population, fitness, source)
    np.testing.assert_allclose(g_textbook, expected / 0.2**2, rtol=1e-5, atol=1e-6)


def test_tell_steps_the_optimizer_on_the_loss_gradient():
    lr, l2 = 0.05, 0.01
    strategy = nes_lib.NES(_template(), 8, optax.sgd(lr), l2coeff=l2)
    theta = jax.random.normal(jax.random.key(0), (20,))
    state = strategy.init(strategy.unravel(theta), sigma=0.1)
    state = state.replace(lr_scale=jnp.asarray(0.5))
    source = noise_lib.generated()
    population, fitness = _generation(strategy, state, jax.random.key(1), source)
    g = strategy.gradient(population, fitness, source)

    new_state, metrics = jax.jit(strategy.tell)(population, fitness, state, source)
    step = -lr * 0.5 * (-g + l2 * theta)
    np.testing.assert_allclose(new_state.theta, theta + step, rtol=1e-5, atol=1e-6)
    ratio = np.linalg.norm(step) / np.linalg.norm(theta)
    np.testing.assert_allclose(metrics["update_ratio"], ratio, rtol=1e-4)
    np.testing.assert_allclose(metrics["fitness_max"], np.max(fitness))
    assert int(new_state.generation) == 1


def test_nes_with_adam_minimises_a_quadratic():
    strategy = nes_lib.NES(_template(), 16, optax.adam(0.05))
    state = strategy.init(_template(), sigma=0.05)
    source = noise_lib.generated()

    @jax.jit
    def run(state):
        def body(state, key):
            population, fitness = _generation(strategy, state, key, source)
            state, metrics = strategy.tell(population, fitness, state, source)
            return state, metrics["fitness_mean"]

        keys = jax.random.split(jax.random.key(0), 150)
        return jax.lax.scan(body, state, keys)

    state, curve = run(state)
    start = float(_quadratic(_template(), None))
    end = float(_quadratic(strategy.params(state), None))
    assert end > 0.05 * start  # from -7.4 to above -0.37
    assert curve[-1] > curve[0]
