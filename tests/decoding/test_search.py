"""Greedy and sampled decoding: a step loop's result, rows end at EOS, one compile."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from nic_jax.decoding import (
    HARD_TRIGRAM_PENALTY,
    SOFT_TRIGRAM_PENALTY,
    DecodeOptions,
    constrain_logprobs,
    decode,
)
from nic_jax.decoding.search import block_size, first_argmax
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


def test_sampling_temperature_divides_the_log_probs():
    decoder, params, feats = _setup()
    params["logit"]["kernel"] = params["logit"]["kernel"] * 10
    temperature = 0.5
    many = jax.vmap(
        lambda k: decode(decoder, params, feats, k, "sample", temperature, 1)
    )(jax.random.split(jax.random.key(3), 4000))
    ctx = decoder.encode(params, feats)
    logprobs, _ = decoder.step(
        params, ctx, decoder.init_state(params, ctx), jnp.zeros(5, jnp.int32)
    )
    tempered = jax.nn.softmax(logprobs / temperature, -1)
    freq = np.stack([(many[0][:, :, 0] == v).mean(0) for v in range(VOCAB + 1)], -1)
    np.testing.assert_allclose(freq, tempered, atol=0.03)
    assert np.abs(tempered - jnp.exp(logprobs)).max() > 0.1  # T matters here
    # The returned log-probs are the model's, not the tempered ones.
    picked = np.take_along_axis(np.asarray(logprobs), many[0][0], -1)
    np.testing.assert_allclose(many[1][0], picked, atol=1e-6)


def _reference_constraints(logprobs, history, t, options):
    """Python loops over self-critical.pytorch's rules, one row at a time."""
    out = np.array(logprobs, np.float64)
    for r, words in enumerate(np.asarray(history)[:, :t].tolist()):
        if words and words[-1] in options.bad_endings:
            out[r, 0] = -np.inf
        if options.suppress_unk:
            out[r, -1] = -np.inf
        if len(words) < 2 or not options.trigram_penalty:
            continue
        seen = {}
        for i in range(len(words) - 2):
            key = tuple(words[i : i + 3])
            seen[key] = seen.get(key, 0) + 1
        for word in range(out.shape[1]):
            count = seen.get((words[-2], words[-1], word), 0)
            if count and options.trigram_penalty == HARD_TRIGRAM_PENALTY:
                out[r, word] = -np.inf
            elif count:
                out[r, word] -= options.trigram_penalty * count
    return out


def test_constraints_match_a_python_reference():
    rng = np.random.default_rng(0)
    # Words from {1, 2, 3} make repeated trigrams frequent.
    history = jnp.asarray(rng.integers(1, 4, (64, 9)), jnp.int32)
    logprobs = jnp.asarray(rng.normal(size=(64, VOCAB + 1)), jnp.float32)
    run = jax.jit(constrain_logprobs, static_argnames="options")
    for options in (
        DecodeOptions(bad_endings=(1, 3), suppress_unk=True),
        DecodeOptions(trigram_penalty=SOFT_TRIGRAM_PENALTY),
        DecodeOptions(trigram_penalty=HARD_TRIGRAM_PENALTY, bad_endings=(2,)),
    ):
        for t in (0, 1, 2, 3, 6, 9):
            got = run(logprobs, history, t, options=options)
            expected = _reference_constraints(logprobs, history, t, options)
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
            if t >= 6 and options.trigram_penalty:
                assert np.any(np.asarray(got) != np.asarray(logprobs))


class _CountingSteps:
    """A decoder whose steps are counted (from inside compiled loops)."""

    def __init__(self, decoder):
        self.decoder, self.calls = decoder, []

    def __getattr__(self, name):
        return getattr(self.decoder, name)

    def step(self, params, ctx, state, token):
        jax.debug.callback(lambda: self.calls.append(1))
        return self.decoder.step(params, ctx, state, token)


def test_early_stop_decodes_the_same_and_stops_when_every_row_has_ended():
    decoder, params, feats = _setup(bias_eos=2.0)  # captions end within a few words
    for method, key in (("greedy", None), ("sample", jax.random.key(3))):
        full = decode(decoder, params, feats, key, method, max_len=12, early_stop=False)
        early = decode(decoder, params, feats, key, method, max_len=12)
        np.testing.assert_array_equal(early[0], full[0])
        np.testing.assert_allclose(early[1], full[1], atol=1e-6)
    lengths = (np.asarray(full[0]) > 0).sum(1) + 1  # words and the EOS
    assert lengths.max() < 12
    counting = _CountingSteps(decoder)
    jax.block_until_ready(decode(counting, params, feats, key, "sample", max_len=12))
    jax.effects_barrier()
    assert len(counting.calls) == lengths.max()  # the loop ended with the last row


def test_early_stop_under_vmap_equals_the_full_loop():
    decoder, params, feats = _setup(bias_eos=1.0)
    scales = jnp.array([0.5, 1.0, 2.0])
    members = jax.vmap(lambda s: jax.tree.map(lambda x: x * s, params))(scales)
    run = lambda stop: jax.vmap(
        lambda p: decode(decoder, p, feats, max_len=10, early_stop=stop)[0]
    )(members)
    np.testing.assert_array_equal(run(True), run(False))


@pytest.mark.parametrize("width", [37, 64 * 5, 593 * 2])  # whole rows; blocks
def test_first_argmax_is_argmax_with_ties_and_infinities(width):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(200, width)).astype(np.float32)  # many ties
    x[:5] = -np.inf
    x[5:10, 3] = np.inf
    x[7:10, width - 1] = np.inf  # a later block holds +inf too
    x[10, :] = np.nan
    x[12, 6] = np.nan
    x[13:20] = 0.0
    x[13:20, width - 2] = 1.0  # the maximum in the last block
    got = np.asarray(first_argmax(jnp.asarray(x)))
    np.testing.assert_array_equal(got[:10], np.argmax(x[:10], -1))
    np.testing.assert_array_equal(got[13:], np.argmax(x[13:], -1))
    assert 0 <= got[10] < width and 0 <= got[12] < width  # NaN: a valid index


@pytest.mark.parametrize("width", [41, 64 * 3])
@pytest.mark.parametrize("magnitude", [0.0, 1e-44, 1e-38, 1e-30, 1e-16, 1.0, 1e30])
def test_first_argmax_is_argmax_at_every_magnitude(magnitude, width):
    """Near-ties one unit in the last place apart, at the magnitudes where the
    gap to the maximum would be a denormal (flushed to zero on XLA:CPU), both
    signs, and signed zeros; denormal entries are read as XLA's own compares
    read them (its `argmax` is the reference)."""
    rng = np.random.default_rng(7)
    base = (rng.integers(-2, 3, size=(300, width)) * magnitude).astype(np.float32)
    nudge = rng.integers(-1, 2, size=base.shape)
    x = np.where(nudge > 0, np.nextafter(base, np.float32(np.inf)), base)
    x = np.where(nudge < 0, np.nextafter(x, np.float32(-np.inf)), x)
    x[::7] = np.where(rng.random((len(x[::7]), width)) < 0.5, -0.0, 0.0)
    got = np.asarray(jax.jit(first_argmax)(jnp.asarray(x)))
    want = np.asarray(jax.jit(lambda v: jnp.argmax(v, -1))(jnp.asarray(x)))
    np.testing.assert_array_equal(got, want)


def test_first_argmax_keeps_leading_axes_and_vmaps():
    x = np.random.default_rng(2).integers(0, 9, size=(3, 4, 5, 128))
    values = jnp.asarray(x, jnp.float32)
    np.testing.assert_array_equal(first_argmax(values), np.argmax(x, -1))
    np.testing.assert_array_equal(jax.vmap(first_argmax)(values), np.argmax(x, -1))


def test_first_argmax_of_integers_is_argmax():
    x = np.random.default_rng(4).integers(-9, 9, size=(6, 128))
    np.testing.assert_array_equal(first_argmax(jnp.asarray(x)), np.argmax(x, -1))


def test_block_sizes_divide_the_rows():
    assert [block_size(n) for n in (9488, 9487, 37, 64, 1000, 7919)] == [
        593,
        179,
        37,
        64,
        100,
        7919,
    ]


def test_first_argmax_of_bfloat16_is_argmax():
    x = np.random.default_rng(3).integers(-3, 4, size=(64, 50))
    values = jnp.asarray(x * 0.125, jnp.bfloat16)
    np.testing.assert_array_equal(first_argmax(values), np.argmax(x, -1))


def test_first_argmax_beyond_exact_float_indices_is_argmax(monkeypatch):
    from nic_jax.decoding import search

    x = np.random.default_rng(1).normal(size=(7, 37)).astype(np.float32)
    traced = lambda: str(jax.make_jaxpr(lambda v: first_argmax(v))(x))  # uncached
    assert "argmax" not in traced()  # plain float reductions
    monkeypatch.setattr(search, "_EXACT_FLOAT_INDEX", 16)
    assert "argmax" in traced()  # the fallback
    np.testing.assert_array_equal(first_argmax(jnp.asarray(x)), np.argmax(x, -1))


def test_decoding_from_logits_picks_the_tokens_of_the_log_probs():
    """Greedy and sampled (same key) tokens without the log-softmax, with early
    stop and the full loop, also under a constraint; no log-probs returned."""
    decoder, params, feats = _setup(bias_eos=0.5)
    options = DecodeOptions(bad_endings=(2,), suppress_unk=True)
    for method, key in (("greedy", None), ("sample", jax.random.key(3))):
        for early_stop in (True, False):
            run = functools.partial(
                decode,
                decoder,
                params,
                feats,
                key,
                method,
                max_len=9,
                options=options,
                early_stop=early_stop,
            )
            tokens, logprobs = run(with_logprobs=True)
            from_logits, nothing = run(with_logprobs=False)
            np.testing.assert_array_equal(from_logits, tokens)
            assert nothing is None and logprobs.shape == tokens.shape
    ctx = decoder.encode(params, feats)
    state = decoder.init_state(params, ctx)
    bos = jnp.zeros(5, jnp.int32)
    logits, _ = decoder.step_logits(params, ctx, state, bos)
    logprobs, _ = decoder.step(params, ctx, state, bos)
    np.testing.assert_allclose(jax.nn.log_softmax(logits), logprobs, atol=1e-6)
