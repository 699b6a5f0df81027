"""The FC decoder: self-critical LSTMCore equations, shapes, and the pure boundary."""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from nic_jax.models.functional import build_decoder, init_params

CONFIG = ConfigDict(
    dict(
        name="fc", fc_feat_size=12, input_encoding_size=8, rnn_size=6, drop_prob_lm=0.5
    )
)
VOCAB = 9


def _numpy_lstm_core(p, x, h, c):
    """self-critical.pytorch LSTMCore in numpy (gate order i, f, o, max-out)."""
    sums = (
        x @ p["i2h"]["kernel"]
        + p["i2h"]["bias"]
        + h @ p["h2h"]["kernel"]
        + p["h2h"]["bias"]
    )
    sig = lambda z: 1 / (1 + np.exp(-z))
    n = h.shape[-1]
    i, f, o = sig(sums[:, :n]), sig(sums[:, n : 2 * n]), sig(sums[:, 2 * n : 3 * n])
    g = np.maximum(sums[:, 3 * n : 4 * n], sums[:, 4 * n :])
    c = f * c + i * g
    return o * np.tanh(c), c


def test_step_matches_numpy_reference():
    decoder = build_decoder(CONFIG, VOCAB)
    params = init_params(CONFIG, VOCAB, jax.random.key(0))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    fc = np.random.default_rng(0).normal(size=(3, 12))
    tokens = np.array([0, 4, 9])
    ctx = decoder.encode(params, {"fc": jnp.asarray(fc, jnp.float32)})
    state = decoder.init_state(params, ctx)
    logprobs, _ = decoder.step(params, ctx, state, jnp.asarray(tokens))

    img = fc @ p["img_embed"]["kernel"] + p["img_embed"]["bias"]
    zeros = np.zeros((3, 6))
    h, c = _numpy_lstm_core(p["core"], img, zeros, zeros)
    h, c = _numpy_lstm_core(p["core"], p["embed"]["embedding"][tokens], h, c)
    logits = h @ p["logit"]["kernel"] + p["logit"]["bias"]
    expected = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(np.asarray(logprobs), expected, atol=1e-5)
    assert logprobs.shape == (3, VOCAB + 1)


def test_params_are_plain_dicts_with_torch_layout():
    params = init_params(CONFIG, VOCAB, jax.random.key(0))
    assert isinstance(params, dict)
    assert params["core"]["i2h"]["kernel"].shape == (8, 30)
    assert params["embed"]["embedding"].shape == (VOCAB + 1, 8)
    assert params["logit"]["kernel"].shape == (6, VOCAB + 1)
    np.testing.assert_array_equal(params["logit"]["bias"], 0.0)
    assert np.abs(params["embed"]["embedding"]).max() <= 0.1


def test_decoder_vmaps_over_a_population_of_params():
    decoder = build_decoder(CONFIG, VOCAB)
    members = [init_params(CONFIG, VOCAB, jax.random.key(i)) for i in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
    fc = jnp.ones((2, 12))

    def first_logprobs(params):
        ctx = decoder.encode(params, {"fc": fc})
        state = decoder.init_state(params, ctx)
        return decoder.step(params, ctx, state, jnp.zeros(2, jnp.int32))[0]

    batched = jax.jit(jax.vmap(first_logprobs))(stacked)
    for i, member in enumerate(members):
        np.testing.assert_allclose(batched[i], first_logprobs(member), atol=1e-6)
