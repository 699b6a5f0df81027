"""Greedy and sampled decoding: a step loop's result, rows end at EOS, one compile."""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from nic_jax.decoding import decode
from nic_jax.models.functional import build_decoder, init_params

CONFIG = ConfigDict(
    dict(
        name="fc", fc_feat_size=10, input_encoding_size=8, rnn_size=8, drop_prob_lm=0.5
    )
)
VOCAB = 6


def _setup(bias_eos=0.0):
    decoder = build_decoder(CONFIG, VOCAB)
    params = init_params(CONFIG, VOCAB, jax.random.key(4))
    params["logit"]["bias"] = params["logit"]["bias"].at[0].add(bias_eos)
    fc = 3 * jax.random.normal(jax.random.key(5), (5, 10))
    return decoder, params, {"fc": fc}


def test_greedy_equals_an_argmax_loop_and_zeroes_after_eos():
    decoder, params, feats = _setup(bias_eos=0.3)
    tokens, logprobs = jax.jit(lambda p: decode(decoder, p, feats, max_len=8))(params)
    for b in range(5):
        ctx = decoder.encode(params, {"fc": feats["fc"][b : b + 1]})
        state, token, expected, lps = decoder.init_state(params, ctx), 0, [], []
        for _ in range(8):
            lp, state = decoder.step(params, ctx, state, jnp.array([token]))
            token = int(jnp.argmax(lp[0]))
            expected.append(token)
            lps.append(float(lp[0, token]))
            if token == 0:
                break
        n = len(expected)
        np.testing.assert_array_equal(tokens[b, :n], expected)
        np.testing.assert_array_equal(tokens[b, n:], 0)
        np.testing.assert_allclose(logprobs[b, :n], lps, atol=1e-5)
        np.testing.assert_array_equal(logprobs[b, n:], 0.0)


def test_sampling_is_keyed_and_follows_the_distribution():
    decoder, params, feats = _setup()
    run = jax.jit(
        lambda k: decode(decoder, params, feats, k, method="sample", max_len=4)
    )
    a, _ = run(jax.random.key(0))
    b, _ = run(jax.random.key(0))
    c, _ = run(jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # First-word frequencies over many draws match the model's first-step distribution.
    many = jax.vmap(
        lambda k: decode(decoder, params, feats, k, "sample", max_len=1)[0]
    )(jax.random.split(jax.random.key(2), 4000))
    ctx = decoder.encode(params, feats)
    probs = jnp.exp(
        decoder.step(
            params, ctx, decoder.init_state(params, ctx), jnp.zeros(5, jnp.int32)
        )[0]
    )
    freq = np.stack([(many[:, :, 0] == v).mean(0) for v in range(VOCAB + 1)], -1)
    np.testing.assert_allclose(freq, probs, atol=0.03)


def test_compiles_once_per_shape():
    decoder, params, feats = _setup()
    traces = []

    @jax.jit
    def run(p, f):
        traces.append(1)
        return decode(decoder, p, f)

    for seed in range(3):
        params2 = jax.tree.map(lambda x, s=seed: x + s, params)
        run(params2, {"fc": feats["fc"] + seed})
    assert len(traces) == 1
