"""Greedy and sampled caption decoding with `lax.scan`, one row per image.

Matches self-critical.pytorch's `_sample`: BOS (0) first, then up to `max_len` words;
once a row emits EOS (0) it stays 0 and its later log-probs are 0, so a caption's
log-prob sums over its words and its EOS.
"""

import jax
import jax.numpy as jnp
from jax import lax


def _select(logprobs, key, method: str, temperature: float):
    if method == "greedy":
        return jnp.argmax(logprobs, axis=-1)
    if method == "sample":
        return jax.random.categorical(key, logprobs / temperature, axis=-1)
    raise ValueError(f"decoding method {method!r} is unknown; valid: greedy, sample")


def decode(
    decoder,
    params,
    feats: dict,
    key=None,
    method: str = "greedy",
    temperature: float = 1.0,
    max_len: int = 16,
):
    """Decodes one caption per image.

    Args:
      decoder: a `models.functional.Decoder`; params: its params.
      feats: per-image features, leading dim B.
      key: PRNG key for `method="sample"`.
      method: "greedy" or "sample".

    Returns:
      tokens (B, max_len) int32, 0 after the end; logprobs (B, max_len) of the
      chosen tokens (EOS included, 0 after it).
    """
    ctx = decoder.encode(params, feats)
    state = decoder.init_state(params, ctx)
    batch = jax.tree.leaves(state)[0].shape[0]
    keys = jax.random.split(key if key is not None else jax.random.key(0), max_len)

    def body(carry, step_key):
        state, token, done = carry
        logprobs, state = decoder.step(params, ctx, state, token)
        token = _select(logprobs, step_key, method, temperature).astype(jnp.int32)
        token_logprob = jnp.take_along_axis(logprobs, token[:, None], -1)[:, 0]
        token = jnp.where(done, 0, token)
        token_logprob = jnp.where(done, 0.0, token_logprob)
        return (state, token, done | (token == 0)), (token, token_logprob)

    init = (state, jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), bool))
    _, (tokens, logprobs) = lax.scan(body, init, keys)
    return tokens.T, logprobs.T
