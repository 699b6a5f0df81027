"""Caption losses over per-token log-probs with masks up to and including the EOS."""

import jax
import jax.numpy as jnp

from nic_jax.decoding import caption_lengths


def token_mask(labels: jax.Array, num_positions: int) -> jax.Array:
    """(..., num_positions) True for the words and the first EOS of each caption."""
    return jnp.arange(num_positions) <= caption_lengths(labels)[..., None]


def masked_xe(logprobs: jax.Array, labels: jax.Array):
    """Mean negative log-likelihood over words and the first EOS (self-critical's
    LanguageModelCriterion). logprobs (..., T + 1) of targets; labels (..., T).

    Returns (loss, number of counted tokens).
    """
    mask = token_mask(labels, logprobs.shape[-1])
    tokens = jnp.sum(mask)
    return -jnp.sum(jnp.where(mask, logprobs, 0.0)) / tokens, tokens
