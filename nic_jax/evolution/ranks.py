"""Fitness shaping by centered ranks (Salimans et al. 2017, OpenAI ES).

`compute_centered_ranks` of evolution-strategies-starter, used unchanged by
es-img-captioning's NIC-NES: the ranks 0..n-1 of all n fitnesses (the 2 per mirrored
pair together), divided by n - 1 and shifted by -0.5, so the worst member gets -0.5
and the best +0.5 whatever the fitness scale (CIDEr-D, log-probabilities, -loss).
"""

import jax
import jax.numpy as jnp


def ranks(fitness: jax.Array) -> jax.Array:
    """Ranks in [0, n) of the flattened fitness, reshaped like it; ties keep their
    order of appearance (a stable argsort). NaN ranks lowest (a failed member)."""
    flat = fitness.reshape(-1)
    flat = jnp.where(jnp.isnan(flat), -jnp.inf, flat)
    order = jnp.argsort(flat, stable=True)
    out = (
        jnp.zeros(flat.shape, jnp.int32)
        .at[order]
        .set(jnp.arange(flat.size, dtype=jnp.int32))
    )
    return out.reshape(fitness.shape)


def centered_ranks(fitness: jax.Array) -> jax.Array:
    """ranks / (n - 1) - 0.5, in [-0.5, 0.5], same shape as `fitness` (n >= 2)."""
    n = fitness.size
    return ranks(fitness).astype(jnp.float32) / (n - 1) - 0.5
