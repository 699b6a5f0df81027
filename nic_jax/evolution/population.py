"""Implicit populations and their chunked, vmapped evaluation.

A `Population` of P members is a few (P,) index arrays over at most M stored parents:
member p has parameters

    theta_p = parents[parent[p]] + sign[p] * sigma * scale[parent[p]] * eps_p,
    eps_p = noise.standard_noise(source, noise_key, noise_index[p], N),

so a generation of any size costs M parameter copies plus the members in flight.
NES uses one parent and antithetic pairs (members 2i, 2i + 1 = +eps_i, -eps_i, as
OpenAI ES's mirrored sampling); the GA uses M = mu parents and one noise per child.
`scale` is the safe-mutation factor (1 / sensitivity, or |theta|; None = 1).

`evaluate` runs `fitness_fn(params_pytree, key) -> scalar` over the members with
`lax.map` over chunks of a `vmap` (memory ~ chunk x N). The member axis is plain
index arrays, so a mesh shards it (`axis=`: inside one per-device program,
`parallel.members.spmd`, each device evaluates its own slice with the same
function) and only the (P,) fitness leaves a device.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from nic_jax.evolution import noise as noise_lib
from nic_jax.parallel.members import map_members


@struct.dataclass
class Population:
    """P implicit members over M parents. Per-member arrays are (P,)."""

    parents: jax.Array  # (M, N) flat parameters
    scale: jax.Array | None  # (M, N) safe-mutation factor, or None
    sigma: jax.Array  # () mutation stdev
    noise_key: jax.Array  # the generation's noise key
    parent: jax.Array  # (P,) int32 row of `parents`
    noise_index: jax.Array  # (P,) int32, eps = noise(noise_key, noise_index)
    sign: jax.Array  # (P,) float32, +1 or -1

    @property
    def size(self) -> int:
        return self.parent.shape[0]

    @property
    def num_params(self) -> int:
        return self.parents.shape[1]


def antithetic(
    theta: jax.Array, sigma, key: jax.Array, num_pairs: int, scale=None
) -> Population:
    """2n members around one theta (N,): members 2i, 2i + 1 carry +eps_i, -eps_i."""
    member = jnp.arange(2 * num_pairs, dtype=jnp.int32)
    return Population(
        parents=theta[None],
        scale=None if scale is None else scale.reshape(1, -1),
        sigma=jnp.asarray(sigma, jnp.float32),
        noise_key=key,
        parent=jnp.zeros_like(member),
        noise_index=member // 2,
        sign=jnp.where(member % 2 == 0, 1.0, -1.0).astype(jnp.float32),
    )


def perturbation(population: Population, source, member) -> jax.Array:
    """sign * sigma * scale * eps (N,) of member `member`."""
    eps = noise_lib.standard_noise(
        source,
        population.noise_key,
        population.noise_index[member],
        population.num_params,
    )
    delta = population.sign[member] * population.sigma * eps
    if population.scale is not None:
        delta = delta * population.scale[population.parent[member]]
    return delta


def member_params(population: Population, source, member) -> jax.Array:
    """Flat parameters (N,) of member `member`."""
    base = population.parents[population.parent[member]]
    return base + perturbation(population, source, member)


def member_fitness_key(population: Population, fitness_key: jax.Array, member):
    """Member `member`'s fitness key, shared within an antithetic pair (same batch,
    same sampling noise), so the pair's difference measures the perturbation only."""
    return jax.random.fold_in(fitness_key, population.noise_index[member])


def evaluate(
    fitness_fn: Callable,
    unravel: Callable,
    population: Population,
    source,
    fitness_key: jax.Array,
    chunk_size: int = 32,
    axis: str | None = None,
) -> jax.Array:
    """Fitness (P,) of every member, `chunk_size` members vmapped at a time.

    fitness_fn(params_pytree, key) -> scalar (higher is better); `unravel` maps a
    flat (N,) vector to the params pytree (from `ravel_pytree`). With `axis` (a
    mesh axis, inside `parallel.members.spmd`) each device rebuilds and scores
    its own slice of the members and only the (P,) fitness is gathered.
    """

    def one(member):
        key = member_fitness_key(population, fitness_key, member)
        return fitness_fn(unravel(member_params(population, source, member)), key)

    return map_members(one, population.size, chunk_size, axis)


def evaluate_flat(
    fitness_fn: Callable,
    unravel: Callable,
    flat_params: jax.Array,
    fitness_key: jax.Array,
    chunk_size: int = 32,
    axis: str | None = None,
) -> jax.Array:
    """Fitness (K,) of K explicit parameter rows (K, N): GA elite candidates,
    evosax populations. Row k is scored with key fold_in(fitness_key, k); `axis`
    splits the rows over devices as `evaluate` does."""

    def one(row):
        key = jax.random.fold_in(fitness_key, row)
        return fitness_fn(unravel(flat_params[row]), key)

    return map_members(one, flat_params.shape[0], chunk_size, axis)
