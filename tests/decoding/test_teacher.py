"""Teacher forcing: equals a step-by-step loop, shares image rows, masks correctly."""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from nic_jax.decoding import caption_lengths, teacher_forced_logprobs
from nic_jax.losses import masked_xe
from nic_jax.models.functional import build_decoder, init_params

CONFIG = ConfigDict(
    dict(
        name="fc", fc_feat_size=10, input_encoding_size=8, rnn_size=8, drop_prob_lm=0.5
    )
)
VOCAB = 7


def _setup():
    decoder = build_decoder(CONFIG, VOCAB)
    params = init_params(CONFIG, VOCAB, jax.random.key(1))
    fc = jax.random.normal(jax.random.key(2), (2, 10))
    labels = jnp.array(
        [[[3, 1, 4, 0, 0], [2, 7, 0, 0, 0]], [[5, 5, 5, 5, 5], [6, 0, 0, 0, 0]]]
    )
    return decoder, params, {"fc": fc}, labels


def test_matches_a_python_loop_over_each_caption():
    decoder, params, feats, labels = _setup()
    got = jax.jit(lambda p: teacher_forced_logprobs(decoder, p, feats, labels))(params)
    assert got.shape == (2, 2, 6)
    for b in range(2):
        for r in range(2):
            ctx = decoder.encode(params, {"fc": feats["fc"][b : b + 1]})
            state = decoder.init_state(params, ctx)
            inputs = [0] + list(np.asarray(labels[b, r]))
            targets = list(np.asarray(labels[b, r])) + [0]
            for t, (x, y) in enumerate(zip(inputs, targets)):
                logprobs, state = decoder.step(params, ctx, state, jnp.array([x]))
                np.testing.assert_allclose(got[b, r, t], logprobs[0, y], atol=1e-5)


def test_caption_lengths_and_masked_loss_equals_subset_mean():
    decoder, params, feats, labels = _setup()
    np.testing.assert_array_equal(caption_lengths(labels), [[3, 2], [5, 1]])
    logprobs = teacher_forced_logprobs(decoder, params, feats, labels)
    loss, tokens = masked_xe(logprobs, labels)
    kept = [
        logprobs[0, 0, :4],
        logprobs[0, 1, :3],
        logprobs[1, 0, :6],
        logprobs[1, 1, :2],
    ]
    kept = jnp.concatenate(kept)
    assert int(tokens) == kept.size == 15
    np.testing.assert_allclose(loss, -kept.mean(), rtol=1e-6)


def test_dropout_only_with_a_key_and_independent_per_reference():
    decoder, params, feats, labels = _setup()
    same = jnp.broadcast_to(labels[:, :1], labels.shape)
    evaluation = teacher_forced_logprobs(decoder, params, feats, same)
    np.testing.assert_allclose(evaluation[:, 0], evaluation[:, 1], atol=1e-6)
    train = teacher_forced_logprobs(decoder, params, feats, same, jax.random.key(0))
    assert not np.allclose(train[:, 0], train[:, 1])


def test_scheduled_sampling_never_replaces_bos():
    decoder, params, feats, labels = _setup()
    key = jax.random.key(3)
    base = teacher_forced_logprobs(decoder, params, feats, labels, key, 0.0)
    sampled = teacher_forced_logprobs(decoder, params, feats, labels, key, 1.0)
    np.testing.assert_allclose(base[..., :1], sampled[..., :1], atol=1e-6)
    assert not np.allclose(base[..., 1:], sampled[..., 1:])


def test_gradient_matches_finite_differences():
    decoder, params, feats, labels = _setup()
    loss = lambda p: masked_xe(
        teacher_forced_logprobs(decoder, p, feats, labels), labels
    )[0]
    grad = jax.grad(loss)(params)["logit"]["bias"]
    eps = 1e-3
    for i in (0, 3):

        def bump(s, i=i):
            bias = params["logit"]["bias"].at[i].add(s)
            return {**params, "logit": {**params["logit"], "bias": bias}}

        numeric = (loss(bump(eps)) - loss(bump(-eps))) / (2 * eps)
        np.testing.assert_allclose(grad[i], numeric, rtol=2e-2, atol=1e-4)
