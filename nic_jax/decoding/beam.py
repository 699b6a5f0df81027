"""Beam search on device over the pure decoder step, as self-critical.pytorch's.

Follows `CaptionModel.beam_search` / `beam_step` of ruotianluo/self-critical.pytorch
(one group, no diversity): each step extends every live beam by every word, keeps
the `beam_size` best (summed, constrained) log-probs; a beam that picks EOS, or
reaches `max_len` words, is finished: it joins the finished pool with its score
(length-penalised by `avg` or Wu et al. 2016 `wu`, as `misc/utils.penalty_builder`)
and is extended no further. The answer is the best of the finished pool.

Everything is fixed-shape under jit: a `lax.while_loop` over steps, beams on an
axis (B, K) beside the image axis, the decoder step vmapped over beams with the
image context shared (one row per image, never K copies of the regions). The loop
stops early once no live beam can still enter the pool (without a length penalty
scores only fall, so the pool is final).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from nic_jax.decoding.search import (
    DecodeOptions,
    constrain_logprobs,
    parse_length_penalty,
)
from nic_jax.models.layers import kernels_for_steps


class Beams(NamedTuple):
    """Captions per image, best first: tokens and logprobs (B, K, L), scores (B, K).

    logprobs are the model's per-token log-probs (EOS included, 0 after it);
    scores rank the beams: the constrained sum, length-penalised.
    """

    tokens: jax.Array
    logprobs: jax.Array
    scores: jax.Array


class _Carry(NamedTuple):
    t: jax.Array  # step index: the word position being chosen
    state: object  # decoder state pytree, leaves (B, K, ...)
    live: Beams  # beams in progress; scores = summed constrained log-probs
    done: Beams  # finished pool; scores = length-penalised


def apply_length_penalty(scores, length, spec: str):
    """self-critical.pytorch's `penalty_builder(spec)(length, scores)`.

    'avg_a': scores / length (a unused, as upstream); 'wu_a': scores divided by
    ((5 + length) / 6) ** a (Wu et al. 2016, GNMT); '': unchanged.
    """
    kind, alpha = parse_length_penalty(spec)
    if kind == "avg":
        return scores / length
    if kind == "wu":
        return scores / (((5.0 + length) ** alpha) / (6.0**alpha))
    return scores


def _take_beams(x, index):
    """x (B, K', ...) gathered along axis 1 by index (B, K) -> (B, K, ...)."""
    return jax.vmap(lambda rows, i: rows[i])(x, index)


def _extend(live: Beams, logprobs, allowed, t):
    """One `beam_step`: the K best one-word extensions of the live beams.

    logprobs/allowed (B, K, V + 1): the model's and the constrained log-probs.
    Returns (extended beams, parent beam index (B, K), chosen words (B, K)).
    """
    batch, beam_size, num_outputs = logprobs.shape
    candidates = live.scores[..., None] + allowed
    scores, flat = lax.top_k(candidates.reshape(batch, -1), beam_size)
    parent, word = flat // num_outputs, (flat % num_outputs).astype(jnp.int32)
    word_logprob = jnp.take_along_axis(logprobs.reshape(batch, -1), flat, 1)
    tokens = _take_beams(live.tokens, parent).at[:, :, t].set(word)
    token_lps = _take_beams(live.logprobs, parent).at[:, :, t].set(word_logprob)
    return Beams(tokens, token_lps, scores), parent, word


def _merge_finished(done: Beams, extended: Beams, is_end, t, spec: str) -> Beams:
    """Adds the beams that ended at step t to the pool, keeping the best K."""
    beam_size = done.scores.shape[1]
    ended = jnp.where(
        is_end,
        apply_length_penalty(extended.scores, (t + 1).astype(jnp.float32), spec),
        -jnp.inf,
    )
    scores = jnp.concatenate([done.scores, ended], 1)
    best, order = lax.top_k(scores, beam_size)
    tokens = jnp.concatenate([done.tokens, extended.tokens], 1)
    token_lps = jnp.concatenate([done.logprobs, extended.logprobs], 1)
    return Beams(_take_beams(tokens, order), _take_beams(token_lps, order), best)


def _initial(state, batch: int, beam_size: int, max_len: int) -> _Carry:
    """K copies of each image's state; only beam 0 is live, so step 0 expands
    one beam per image (upstream's t == 0 case)."""
    tiled = jax.tree.map(
        lambda x: jnp.broadcast_to(x[:, None], (batch, beam_size) + x.shape[1:]),
        state,
    )
    tokens = jnp.zeros((batch, beam_size, max_len), jnp.int32)
    token_lps = jnp.zeros((batch, beam_size, max_len), jnp.float32)
    first = jnp.full((batch, beam_size), -jnp.inf).at[:, 0].set(0.0)
    live = Beams(tokens, token_lps, first)
    done = Beams(tokens, token_lps, jnp.full((batch, beam_size), -jnp.inf))
    return _Carry(jnp.zeros((), jnp.int32), tiled, live, done)


def _can_improve(carry: _Carry, max_len: int, spec: str):
    """True while a live beam might still enter the finished pool."""
    alive = carry.live.scores > -jnp.inf
    if spec == "":
        worst_done = carry.done.scores[:, -1:]
        alive = alive & (carry.live.scores >= worst_done)
    return (carry.t < max_len) & jnp.any(alive)


def beam_search(
    decoder,
    params,
    feats: dict,
    beam_size: int,
    max_len: int = 16,
    options: DecodeOptions | None = None,
    return_beams: bool = False,
):
    """Beam search for each image.

    Args:
      decoder: a `models.functional.Decoder`; params: its params.
      feats: per-image features, leading dim B.
      beam_size: K beams per image (1 is greedy decoding).
      max_len: L, the most words; a caption of L words has no EOS.
      options: step constraints and length penalty (`DecodeOptions`).
      return_beams: also return all K finished beams as `Beams`.

    Returns:
      tokens (B, L) int32 of the best beam, 0 after its EOS; logprobs (B, L) its
      per-token model log-probs (sum: the sequence log-prob); and `Beams` if asked.
    """
    options = options or DecodeOptions()
    spec = options.length_penalty
    ctx = decoder.encode(params, feats)
    state = decoder.init_state(params, ctx)
    batch = jax.tree.leaves(state)[0].shape[0]
    step_params = kernels_for_steps(params)  # cast once, not in every step
    step = jax.vmap(
        lambda s, token: decoder.step(step_params, ctx, s, token),
        in_axes=1,
        out_axes=1,
    )

    def body(carry: _Carry) -> _Carry:
        t, live = carry.t, carry.live
        prev = jnp.take(live.tokens, jnp.maximum(t - 1, 0), axis=2)
        logprobs, state = step(carry.state, jnp.where(t > 0, prev, 0))
        flat_history = live.tokens.reshape(batch * beam_size, max_len)
        allowed = constrain_logprobs(
            logprobs.reshape(batch * beam_size, -1), flat_history, t, options
        ).reshape(logprobs.shape)
        extended, parent, word = _extend(live, logprobs, allowed, t)
        is_end = ((word == 0) | (t == max_len - 1)) & (extended.scores > -jnp.inf)
        done = _merge_finished(carry.done, extended, is_end, t, spec)
        live = extended._replace(scores=jnp.where(is_end, -jnp.inf, extended.scores))
        state = jax.tree.map(lambda x: _take_beams(x, parent), state)
        return _Carry(t + 1, state, live, done)

    init = _initial(state, batch, beam_size, max_len)
    final = lax.while_loop(lambda c: _can_improve(c, max_len, spec), body, init)
    best = (final.done.tokens[:, 0], final.done.logprobs[:, 0])
    return (*best, final.done) if return_beams else best
