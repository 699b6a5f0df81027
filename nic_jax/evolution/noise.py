"""Implicit mutation noise: a member's N(0, I) vector is regenerated from its key.

A population member never stores its noise. Member `index` of a generation with key
`key` owns the standard-normal vector eps = noise(key, index) over the flat parameter
vector (`jax.flatten_util.ravel_pytree` order); it is rebuilt wherever it is needed
(the perturbed forward pass, the NES update, the GA's surviving children), so memory
does not grow with the population size P and only keys and fitness scalars ever need
to cross devices.

Two sources, chosen by `NoiseSource`:
* generated (default): `jax.random.normal(fold_in(key, index), (N,))`, optionally in
  chunks of `chunk_size` floats, each drawn from `fold_in(member_key, chunk)`;
* a shared table (OpenAI ES, Salimans et al. 2017, `SharedNoiseTable` of
  evolution-strategies-starter): S >= N N(0, 1) floats drawn once from a seed; a
  member reads the slice `table[o : o + N]` at offset o ~ U{0, S - N} drawn from its
  key. Slices of i.i.d. normals at different offsets are (nearly) independent.

Measured on this 2-core CPU (shared with other jobs, load ~8, so absolute numbers
are pessimistic), threefry keys. Noise alone, N = 1M floats, 8 members vmapped: one
normal draw 0.025-0.07 G floats/s; chunks of 4K / 32K / 256K floats 0.043 / 0.028 /
0.025 G/s (no gain with threefry, so the default is one draw; with `rbg` keys chunks
do help, 0.014 -> 0.039 G/s); table slices 0.23-0.67 G/s, ~10x faster than drawing.
A whole NES generation (P = 64, N = 1M, chunks of 16, evaluate + tell): generated
5.2 s, table 0.8 s (6.5x); compiled temporary memory 244 MB generated / 61 MB
table, the same at P = 1024. A table costs 4 S bytes once; prefer it whenever noise
generation rather than the fitness dominates a generation.
"""

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from nic_jax.errors import InputError


@struct.dataclass
class NoiseSource:
    """Where member noise comes from: `table` (S,) floats, or None to draw from keys.

    `chunk_size` (static) > 0 draws generated noise in chunks of that many floats.
    """

    table: jax.Array | None = None
    chunk_size: int = struct.field(pytree_node=False, default=0)


def generated(chunk_size: int = 0) -> NoiseSource:
    """Noise drawn from each member's key (no memory beyond the members in flight)."""
    return NoiseSource(table=None, chunk_size=int(chunk_size))


def shared_table(seed: int, size: int, dtype=jnp.float32) -> NoiseSource:
    """A table of `size` N(0, 1) floats built once from `seed` (OpenAI ES)."""
    if size <= 0:
        raise InputError(f"noise table size={size} must be positive")
    table = jax.random.normal(jax.random.key(seed), (size,), dtype)
    return NoiseSource(table=table)


def member_key(key: jax.Array, index) -> jax.Array:
    """The key that owns member `index`'s noise in the generation keyed `key`."""
    return jax.random.fold_in(key, index)


def _draw(key: jax.Array, num_params: int, chunk_size: int) -> jax.Array:
    if chunk_size <= 0 or chunk_size >= num_params:
        return jax.random.normal(key, (num_params,))
    num_chunks = -(-num_params // chunk_size)
    keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(num_chunks))
    chunks = jax.vmap(lambda k: jax.random.normal(k, (chunk_size,)))(keys)
    return chunks.reshape(-1)[:num_params]


def _slice(table: jax.Array, key: jax.Array, num_params: int) -> jax.Array:
    size = table.shape[0]
    if size < num_params:
        raise InputError(
            f"noise table has {size} floats but the model has {num_params} "
            "parameters; use a table at least as large as the parameter vector"
        )
    offset = jax.random.randint(key, (), 0, size - num_params + 1)
    return lax.dynamic_slice(table, (offset,), (num_params,)).astype(jnp.float32)


def standard_noise(
    source: NoiseSource, key: jax.Array, index, num_params: int
) -> jax.Array:
    """eps (N,) ~ N(0, I) of member `index` in the generation keyed `key`."""
    mkey = member_key(key, index)
    if source.table is None:
        return _draw(mkey, num_params, source.chunk_size)
    return _slice(source.table, mkey, num_params)


def weighted_chunks(indices: jax.Array, weights: jax.Array, chunk_size: int):
    """(indices, weights) as (chunks, chunk) arrays for a `lax.scan` over member
    chunks; padded members repeat the last index with weight 0, so they add
    nothing but keep the chunks equal."""
    count = indices.shape[0]
    chunk = max(1, min(chunk_size, count))
    pad = (-count) % chunk
    indices = jnp.pad(indices, (0, pad), mode="edge").reshape(-1, chunk)
    weights = jnp.pad(weights.astype(jnp.float32), (0, pad)).reshape(-1, chunk)
    return indices, weights


def weighted_noise_sum(
    source: NoiseSource,
    key: jax.Array,
    indices: jax.Array,
    weights: jax.Array,
    num_params: int,
    chunk_size: int = 32,
) -> jax.Array:
    """sum_i weights[i] * eps(key, indices[i]) -> (N,), never holding (n, N).

    Noise is regenerated `chunk_size` members at a time (a (chunk, N) buffer) and
    contracted with its weights, as OpenAI ES's `batched_weighted_sum` does with
    stored noise. Works on any slice of the indices, so a sharded population sums
    its local members and adds the partial sums.
    """
    indices, weights = weighted_chunks(indices, weights, chunk_size)

    def body(total, chunk_args):
        idx, w = chunk_args
        eps = jax.vmap(lambda i: standard_noise(source, key, i, num_params))(idx)
        return total + w @ eps, None

    total, _ = lax.scan(body, jnp.zeros((num_params,), jnp.float32), (indices, weights))
    return total
