"""Teacher-forced log-probabilities with optional scheduled sampling.

Several captions per image never duplicate image rows: the image context and the
state before BOS are computed once per image (B rows) and broadcast over the R
captions; the step is vmapped over R with the context shared.
"""

import jax
import jax.numpy as jnp
from jax import lax


def caption_lengths(labels: jax.Array) -> jax.Array:
    """Number of words before the first 0 (EOS/pad) along the last axis."""
    return jnp.argmin(
        jnp.concatenate([labels, jnp.zeros_like(labels[..., :1])], -1) > 0, -1
    )


def _broadcast_over_refs(tree, num_refs: int):
    return jax.tree.map(
        lambda x: jnp.broadcast_to(x[:, None], (x.shape[0], num_refs) + x.shape[1:]),
        tree,
    )


def _sample_inputs(key, logprobs, ground_truth, ss_prob):
    """Replaces each ground-truth input by a model sample with probability ss_prob."""
    use_key, sample_key = jax.random.split(key)
    use_sample = jax.random.bernoulli(use_key, ss_prob, ground_truth.shape)
    sampled = jax.random.categorical(sample_key, lax.stop_gradient(logprobs))
    return jnp.where(use_sample, sampled, ground_truth)


def teacher_forced_logprobs(decoder, params, feats, labels, key=None, ss_prob=0.0):
    """log p(target) for every position of every reference caption.

    Args:
      decoder: a `models.functional.Decoder`.
      params: its params dict.
      feats: dict of per-image features, leading dim B.
      labels: (B, R, T) int word ids, 0-padded (no BOS).
      key: dropout/sampling key; None means evaluation mode (no dropout).
      ss_prob: scheduled-sampling probability (Bengio et al. 2015), used from the
        second word on, as self-critical.pytorch does.

    Returns:
      (B, R, T + 1) log-probs of the targets [w1..wT, EOS]; mask with
      `arange(T + 1) <= caption_lengths(labels)`.
    """
    batch, num_refs, length = labels.shape
    train = key is not None
    encode_key, key = jax.random.split(key) if train else (None, jax.random.key(0))
    ctx = decoder.encode(params, feats, encode_key)
    state = _broadcast_over_refs(decoder.init_state(params, ctx), num_refs)
    inputs = jnp.concatenate([jnp.zeros_like(labels[..., :1]), labels], -1)
    targets = jnp.concatenate([labels, jnp.zeros_like(labels[..., :1])], -1)
    keys = jax.random.split(key, length + 1)

    def step_refs(state, tokens, step_key):
        ref_keys = jax.random.split(step_key, num_refs) if train else None
        step = lambda s, t, k: decoder.step(params, ctx, s, t, k)
        return jax.vmap(step, in_axes=(1, 1, 0 if train else None), out_axes=1)(
            state, tokens, ref_keys
        )

    def body(carry, xs):
        state, prev_logprobs = carry
        t, tokens, target, step_key = xs
        if train:
            ss_key, step_key = jax.random.split(step_key)
            tokens = lax.cond(
                (t >= 1) & (ss_prob > 0),
                lambda: _sample_inputs(ss_key, prev_logprobs, tokens, ss_prob),
                lambda: tokens,
            )
        logprobs, state = step_refs(state, tokens, step_key)
        picked = jnp.take_along_axis(logprobs, target[..., None], -1)[..., 0]
        return (state, logprobs), picked

    prev = jnp.zeros((batch, num_refs, decoder.vocab_size + 1), jnp.float32)
    xs = (
        jnp.arange(length + 1),
        jnp.moveaxis(inputs, -1, 0),
        jnp.moveaxis(targets, -1, 0),
        keys,
    )
    _, picked = lax.scan(body, (state, prev), xs)
    return jnp.moveaxis(picked, 0, -1)
