"""Implicit populations: vmapped chunks == a Python loop over explicit copies,
antithetic noise, memory independent of P, sharding of the member axis."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, PartitionSpec

from nic_jax.evolution import nes as nes_lib
from nic_jax.evolution import noise as noise_lib
from nic_jax.evolution import population as population_lib


def _mlp(key, sizes=(6, 5, 3)):
    keys = jax.random.split(key, len(sizes))
    return {
        f"layer{i}": {
            "w": jax.random.normal(keys[i], (sizes[i], sizes[i + 1])),
            "b": jax.random.normal(keys[i + 1], (sizes[i + 1],)) * 0.1,
        }
        for i in range(len(sizes) - 1)
    }


def _fitness(params, key, x):
    """A nonlinear fitness that also uses its key (as sampling decoders do)."""
    h = jnp.tanh(x @ params["layer0"]["w"] + params["layer0"]["b"])
    out = h @ params["layer1"]["w"] + params["layer1"]["b"]
    return jnp.mean(out**2) + 0.01 * jax.random.normal(key)


SOURCES = {
    "generated": noise_lib.generated(),
    "chunked": noise_lib.generated(chunk_size=7),
    "table": noise_lib.shared_table(seed=3, size=500),
}


@pytest.mark.parametrize("source_name", sorted(SOURCES))
def test_vmapped_fitness_equals_loop_over_explicit_copies(source_name):
    source = SOURCES[source_name]
    params = _mlp(jax.random.key(0))
    theta, unravel = ravel_pytree(params)
    x = jax.random.normal(jax.random.key(1), (4, 6))
    fitness_fn = functools.partial(_fitness, x=x)
    scale = jax.random.uniform(jax.random.key(2), theta.shape, minval=0.5, maxval=2)
    key, fitness_key = jax.random.key(5), jax.random.key(6)
    population = population_lib.antithetic(theta, 0.1, key, 5, scale)

    evaluate = jax.jit(population_lib.evaluate, static_argnums=(0, 1, 5))
    got = evaluate(fitness_fn, unravel, population, source, fitness_key, 3)

    @jax.jit
    def explicit_copy_fitness(pair, sign):
        eps = noise_lib.standard_noise(source, key, pair, theta.shape[0])
        copy = unravel(theta + sign * 0.1 * scale * eps)
        return fitness_fn(copy, jax.random.fold_in(fitness_key, pair))

    expected = [
        explicit_copy_fitness(member // 2, 1.0 if member % 2 == 0 else -1.0)
        for member in range(10)
    ]
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-5, atol=1e-5)


def test_antithetic_members_carry_opposite_noise():
    theta = jnp.linspace(-1, 1, 40)
    population = population_lib.antithetic(theta, 0.3, jax.random.key(0), 4)
    source = noise_lib.generated()
    deltas = jax.jit(
        jax.vmap(lambda m: population_lib.perturbation(population, source, m))
    )(jnp.arange(8))
    np.testing.assert_array_equal(deltas[0::2], -deltas[1::2])
    # Different pairs draw different noise.
    assert not np.allclose(deltas[0], deltas[2])
    np.testing.assert_array_equal(population.noise_index, [0, 0, 1, 1, 2, 2, 3, 3])
    first_pair = jax.vmap(
        lambda m: population_lib.member_params(population, source, m)
    )(jnp.arange(2))
    np.testing.assert_allclose(first_pair.sum(0), 2 * theta, atol=1e-6)


def test_chunk_size_does_not_change_fitness():
    params = _mlp(jax.random.key(0))
    theta, unravel = ravel_pytree(params)
    fitness_fn = functools.partial(_fitness, x=jnp.ones((2, 6)))
    population = population_lib.antithetic(theta, 0.05, jax.random.key(1), 7)
    source = noise_lib.generated()
    evaluate = jax.jit(population_lib.evaluate, static_argnums=(0, 1, 5))
    results = [
        evaluate(fitness_fn, unravel, population, source, jax.random.key(2), chunk)
        for chunk in (1, 4, 14)
    ]
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], rtol=1e-6, atol=1e-6)


def _all_avals(jaxpr):
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield var.aval
        for param in eqn.params.values():
            subs = param if isinstance(param, (list, tuple)) else [param]
            for sub in subs:
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _all_avals(getattr(inner, "jaxpr", inner))


def test_nes_generation_of_1024_allocates_no_population_by_params_buffer():
    num_params, pop, chunk = 20_000, 1024, 16
    template = {"w": jnp.zeros((num_params,))}
    strategy = nes_lib.NES(
        template,
        pop // 2,
        optax.adam(1e-3),
        eval_chunk_size=chunk,
        noise_chunk_size=chunk,
    )

    def fitness_fn(params, key):
        del key
        return jnp.sum(jnp.sin(params["w"]))

    def generation(state, key):
        population, state = strategy.ask(key, state)
        fitness = strategy.evaluate(fitness_fn, population, key)
        return strategy.tell(population, fitness, state)

    state = strategy.init(template, sigma=0.1)
    closed = jax.make_jaxpr(generation)(state, jax.random.key(0))
    shapes = [a.shape for a in _all_avals(closed.jaxpr) if a.shape]
    assert max(int(np.prod(s)) for s in shapes) <= chunk * num_params
    assert not any(pop in s and num_params in s for s in shapes)

    compiled = jax.jit(generation).lower(state, jax.random.key(0)).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    population_bytes = pop * num_params * 4
    assert temp < population_bytes / 8, (temp, population_bytes)


def test_sharded_member_axis_matches_unsharded():
    devices = np.array(jax.devices()[:4])
    assert devices.size == 4
    mesh = Mesh(devices, ("pop",))
    params = _mlp(jax.random.key(0))
    theta, unravel = ravel_pytree(params)
    fitness_fn = functools.partial(_fitness, x=jnp.ones((3, 6)))
    population = population_lib.antithetic(theta, 0.1, jax.random.key(4), 8)
    source = noise_lib.generated()
    fitness_key = jax.random.key(9)
    expected = population_lib.evaluate(
        fitness_fn, unravel, population, source, fitness_key, 4
    )

    members = PartitionSpec("pop")
    specs = population_lib.Population(
        parents=PartitionSpec(),
        scale=None,
        sigma=PartitionSpec(),
        noise_key=PartitionSpec(),
        parent=members,
        noise_index=members,
        sign=members,
    )

    @functools.partial(jax.shard_map, mesh=mesh, in_specs=(specs,), out_specs=members)
    def sharded(local):
        return population_lib.evaluate(
            fitness_fn, unravel, local, source, fitness_key, 2
        )

    np.testing.assert_allclose(jax.jit(sharded)(population), expected, rtol=1e-6)


def test_evaluate_flat_uses_row_keys():
    rows = jax.random.normal(jax.random.key(0), (5, 3))
    fitness_fn = lambda flat, key: flat.sum() + jax.random.uniform(key)
    key = jax.random.key(1)
    got = population_lib.evaluate_flat(fitness_fn, lambda f: f, rows, key, 2)
    uniforms = np.array(
        [jax.random.uniform(jax.random.fold_in(key, k)) for k in range(5)]
    )
    expected = np.asarray(rows).sum(1) + uniforms
    np.testing.assert_allclose(got, expected, rtol=1e-6)
