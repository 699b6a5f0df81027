"""evosax strategies through the engine's ask / evaluate / tell interface."""

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.flatten_util import ravel_pytree

from nic_jax.errors import InputError
from nic_jax.evolution.evosax_adapter import EvosaxStrategy

TARGET = jnp.linspace(-0.5, 0.5, 6)
TEMPLATE = {"w": jnp.zeros((5,)), "b": jnp.zeros(())}


def _fitness(params, key):
    del key
    return -jnp.sum((ravel_pytree(params)[0] - TARGET) ** 2)


STRATEGIES = {
    "SNES": dict(param_overrides=dict(std_init=0.3)),
    "CMA_ES": dict(param_overrides=dict(std_init=0.3)),
    "Open_ES": dict(
        optimizer=optax.adam(0.05), std_schedule=optax.constant_schedule(0.1)
    ),
    "SimpleGA": dict(std_schedule=optax.constant_schedule(0.05)),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_maximises_fitness(name):
    strategy = EvosaxStrategy(name, TEMPLATE, population_size=16, **STRATEGIES[name])

    @jax.jit
    def run(state):
        def body(state, key):
            population, state = strategy.ask(key, state)
            fitness = strategy.evaluate(_fitness, population, key)
            state, metrics = strategy.tell(population, fitness, state)
            return state, metrics["fitness_max"]

        return jax.lax.scan(body, state, jax.random.split(jax.random.key(1), 60))

    state, best_per_generation = run(strategy.init(jax.random.key(0), TEMPLATE))
    start = float(_fitness(TEMPLATE, None))  # -0.7
    final = float(_fitness(strategy.params(state), None))
    assert final > 0.2 * start, (name, final)
    assert float(best_per_generation[-1]) > start
    assert int(state.generation) == 60


def test_evaluate_matches_direct_calls():
    strategy = EvosaxStrategy("SNES", TEMPLATE, population_size=4)
    state = strategy.init(jax.random.key(0), TEMPLATE)
    population, _ = strategy.ask(jax.random.key(1), state)
    fitness = strategy.evaluate(_fitness, population, jax.random.key(2))
    rows = [jax.tree.map(lambda x, i=i: x[i], population) for i in range(4)]
    expected = jnp.stack([_fitness(row, None) for row in rows])
    assert jnp.allclose(fitness, expected, atol=1e-6)


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(InputError, match="'OpenAIES' is unknown; valid: .*Open_ES"):
        EvosaxStrategy("OpenAIES", TEMPLATE, population_size=4)
    assert (
        EvosaxStrategy("OpenES", TEMPLATE, 4).algorithm.__class__.__name__ == "Open_ES"
    )
