"""Any evosax strategy behind the same ask / evaluate / tell interface (small models).

evosax (Lange 2022, "evosax: JAX-based Evolution Strategies", 0.3 API) materialises
its populations as (P, N) arrays, which is fine for small models, baselines and the
digits sanity task, and gives CMA-ES, SNES, OpenAI-ES, SimpleGA and the rest for free.
The adapter maximises fitness (evosax minimises, so fitness is negated on the way in)
and keeps evosax's algorithm params and its PRNG key inside a pytree state.

    strategy = EvosaxStrategy("SNES", template, population_size=64)
    state = strategy.init(key, params)
    population, state = strategy.ask(key, state)
    fitness = strategy.evaluate(fitness_fn, population, fitness_key)
    state, metrics = strategy.tell(population, fitness, state)
    params = strategy.params(state)  # distribution mean, or best solution
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from evosax.algorithms import algorithms as EVOSAX_ALGORITHMS
from evosax.algorithms.distribution_based import distribution_based_algorithms
from flax import struct
from jax.flatten_util import ravel_pytree

from nic_jax.errors import InputError
from nic_jax.evolution import population as population_lib
from nic_jax.evolution.nes import fitness_metrics


@struct.dataclass
class EvosaxState:
    """evosax's own state and params, our key for its `tell`, the generation."""

    inner: object
    algorithm_params: object
    key: jax.Array
    generation: jax.Array


# Spellings of the papers and of evosax 0.1 for evosax 0.3's registry names.
ALIASES = {"OpenES": "Open_ES", "CMAES": "CMA_ES", "SepCMAES": "Sep_CMA_ES"}


def get_algorithm_class(name: str):
    """The evosax algorithm class registered as `name` (e.g. "SNES", "CMA_ES")."""
    name = ALIASES.get(name, name)
    if name not in EVOSAX_ALGORITHMS:
        raise InputError(
            f"evosax strategy {name!r} is unknown; valid: {sorted(EVOSAX_ALGORITHMS)}"
        )
    return EVOSAX_ALGORITHMS[name]


class EvosaxStrategy:
    """Adapter over evosax algorithm `name` for params shaped like `template`.

    `algorithm_kwargs` go to the evosax constructor (e.g. `optimizer=` for Open_ES);
    `param_overrides` replace fields of its default params (e.g. `std_init=0.05`).
    """

    def __init__(
        self,
        name: str,
        template,
        population_size: int,
        eval_chunk_size: int = 32,
        param_overrides: dict | None = None,
        **algorithm_kwargs,
    ):
        cls = get_algorithm_class(name)
        self.name = name
        self.distribution_based = (
            ALIASES.get(name, name) in distribution_based_algorithms
        )
        self.algorithm = cls(population_size, template, **algorithm_kwargs)
        flat, self.unravel = ravel_pytree(template)
        self.num_params = flat.shape[0]
        self.population_size = population_size
        self.eval_chunk_size = eval_chunk_size
        self.param_overrides = dict(param_overrides or {})

    def init(self, key, params) -> EvosaxState:
        """State around `params` (the mean, or a population of copies of it)."""
        init_key, tell_key = jax.random.split(key)
        algorithm_params = self.algorithm.default_params.replace(**self.param_overrides)
        if self.distribution_based:
            inner = self.algorithm.init(init_key, params, algorithm_params)
        else:
            copies = jax.tree.map(
                lambda x: jnp.broadcast_to(x, (self.population_size, *x.shape)),
                params,
            )
            unknown = jnp.full((self.population_size,), jnp.inf)
            inner = self.algorithm.init(init_key, copies, unknown, algorithm_params)
        return EvosaxState(inner, algorithm_params, tell_key, jnp.asarray(0, jnp.int32))

    def ask(self, key, state: EvosaxState):
        """(population pytree with a leading P axis, state)."""
        population, inner = self.algorithm.ask(key, state.inner, state.algorithm_params)
        return population, state.replace(inner=inner)

    def evaluate(self, fitness_fn: Callable, population, fitness_key, source=None):
        """Fitness (P,) of the explicit members; `source` is unused (no implicit
        noise here) and only keeps the signature of the other strategies."""
        del source
        flat = jax.vmap(lambda p: ravel_pytree(p)[0])(population)
        return population_lib.evaluate_flat(
            fitness_fn, self.unravel, flat, fitness_key, self.eval_chunk_size
        )

    def tell(self, population, fitness: jax.Array, state: EvosaxState, source=None):
        """evosax update on -fitness. Returns (state, metrics)."""
        del source
        key, tell_key = jax.random.split(state.key)
        inner, evosax_metrics = self.algorithm.tell(
            tell_key, population, -fitness, state.inner, state.algorithm_params
        )
        metrics = fitness_metrics(fitness) | {
            "best_fitness": -evosax_metrics["best_fitness"]
        }
        state = state.replace(inner=inner, key=key, generation=state.generation + 1)
        return state, metrics

    def params(self, state: EvosaxState):
        """The distribution mean, or the best solution of a population method."""
        if self.distribution_based:
            return self.algorithm.get_mean(state.inner)
        return self.unravel(state.inner.best_solution)
