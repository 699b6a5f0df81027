"""Beam search against brute-force enumeration, greedy decoding and its constraints.

The reference here is independent of `beam.py`: every caption of a tiny vocabulary
is enumerated and scored with the decoder's own step function, constraints and
length penalties written out in Python from self-critical.pytorch's definitions.
"""

import functools
import itertools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from nic_jax.decoding import (
    HARD_TRIGRAM_PENALTY,
    SOFT_TRIGRAM_PENALTY,
    DecodeOptions,
    bad_ending_ids,
    beam_search,
    decode,
)
from nic_jax.errors import InputError
from nic_jax.evaluation.captioning import decode_options, decode_split, tokens_to_text
from nic_jax.models.functional import build_decoder, init_params

FEAT = 10
STATIC = ("decoder", "beam_size", "max_len", "options", "return_beams")
# One compilation per (model shape, beam, options) for the whole file.
beam_jit = jax.jit(beam_search, static_argnames=STATIC)
DECODE_STATIC = ("decoder", "method", "max_len", "options")
decode_jit = jax.jit(decode, static_argnames=DECODE_STATIC)


FC_CONFIG = ConfigDict(
    dict(
        name="fc",
        fc_feat_size=FEAT,
        input_encoding_size=8,
        rnn_size=8,
        drop_prob_lm=0.5,
    )
)


def _random_params(config, vocab, seed, sharpness=1.0, bias=None):
    """Params of the model's shapes drawn with numpy (no XLA compile); the output
    kernel is scaled by `sharpness`; `bias` {word: value} shifts output logits."""
    shapes = jax.eval_shape(lambda: init_params(config, vocab, jax.random.key(0)))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: rng.uniform(-0.35, 0.35, s.shape), shapes)
    params["logit"]["kernel"] *= sharpness
    for word, value in (bias or {}).items():
        params["logit"]["bias"][word] += value
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


def _model(vocab, seed=0, sharpness=25.0, bias=None):
    """A small random FC decoder whose log-probs depend on the prefix."""
    params = _random_params(FC_CONFIG, vocab, seed, sharpness, bias)
    return build_decoder(FC_CONFIG, vocab), params


def _feats(batch, seed=1):
    rng = np.random.default_rng(seed)
    return {"fc": jnp.asarray(3 * rng.normal(size=(batch, FEAT)), jnp.float32)}


@functools.partial(jax.jit, static_argnums=0)
def _start(decoder, params, feats):
    ctx = decoder.encode(params, feats)
    return ctx, decoder.init_state(params, ctx)


@functools.partial(jax.jit, static_argnums=0)
def _step(decoder, params, ctx, state, token):
    return decoder.step(params, ctx, state, token)


def _step_fn(decoder, params, feats):
    """Python-callable step over a batch of prefixes of every image: (B, V + 1)."""
    ctx, state = _start(decoder, params, feats)
    return state, lambda state, token: _step(decoder, params, ctx, state, token)


def _constraint_cost(words, candidate, options, unk):
    """Python constraint cost of choosing `candidate` after `words` (0 or -inf or
    the trigram price), from self-critical.pytorch's definitions."""
    if candidate == 0 and words and words[-1] in options.bad_endings:
        return -math.inf
    if options.suppress_unk and candidate == unk:
        return -math.inf
    if options.trigram_penalty and len(words) >= 2:
        trigram = (*words[-2:], candidate)
        seen = sum(tuple(words[i : i + 3]) == trigram for i in range(len(words) - 2))
        return -options.trigram_penalty * seen if seen else 0.0
    return 0.0


def _penalised(score, length, spec):
    if spec.startswith("avg"):
        return score / length
    if spec.startswith("wu"):
        alpha = float(spec.split("_")[1])
        return score / ((5 + length) ** alpha / 6**alpha)
    return score


def _enumerate(decoder, params, feats, max_len, options):
    """Every finished caption of every image: [(score, tokens, logprob)] per image.

    A caption is n < max_len words then EOS, or max_len words without EOS.
    """
    state, step = _step_fn(decoder, params, feats)
    batch, vocab = feats["fc"].shape[0], decoder.vocab_size
    results = [[] for _ in range(batch)]

    def visit(words, state, token, scores, logps):
        logprobs, state = step(state, np.full((batch,), token, np.int32))
        logprobs = np.asarray(logprobs, np.float64)
        for b in range(batch):
            cost = _constraint_cost(words, 0, options, vocab)
            if cost > -math.inf:
                total = scores[b] + logprobs[b, 0] + cost
                padded = words + [0] * (max_len - len(words))
                length = len(words) + 1
                results[b].append(
                    (
                        _penalised(total, length, options.length_penalty),
                        padded,
                        logps[b] + logprobs[b, 0],
                    )
                )
        for word in range(1, vocab + 1):
            cost = _constraint_cost(words, word, options, vocab)
            if cost == -math.inf:
                continue
            new_scores = [scores[b] + logprobs[b, word] + cost for b in range(batch)]
            new_logps = [logps[b] + logprobs[b, word] for b in range(batch)]
            if len(words) + 1 == max_len:
                for b in range(batch):
                    results[b].append(
                        (
                            _penalised(new_scores[b], max_len, options.length_penalty),
                            words + [word],
                            new_logps[b],
                        )
                    )
            else:
                visit(words + [word], state, word, new_scores, new_logps)

    visit([], state, 0, [0.0] * batch, [0.0] * batch)
    return [sorted(r, key=lambda x: -x[0]) for r in results]


@pytest.mark.parametrize(
    "options",
    [
        DecodeOptions(),
        DecodeOptions(
            length_penalty="wu_0.7",
            bad_endings=(1,),
            trigram_penalty=HARD_TRIGRAM_PENALTY,
        ),
        DecodeOptions(
            length_penalty="avg_1",
            trigram_penalty=SOFT_TRIGRAM_PENALTY,
            suppress_unk=True,
        ),
    ],
    ids=["plain", "wu+bad_endings+hard_trigrams", "avg+soft_trigrams+unk"],
)
def test_beam_as_wide_as_the_search_space_finds_the_enumerated_best(options):
    vocab, max_len = 3, 4
    # Wide enough that nothing is pruned before the last step: every live prefix
    # and each of its V + 1 extensions fits.
    beam_size = (vocab + 1) * vocab ** (max_len - 2)
    decoder, params = _model(vocab, seed=3, bias={0: 1.0})
    feats = _feats(3)
    expected = _enumerate(decoder, params, feats, max_len, options)
    tokens, logprobs, beams = beam_jit(
        decoder, params, feats, beam_size, max_len, options, return_beams=True
    )
    for b, ranked in enumerate(expected):
        np.testing.assert_array_equal(tokens[b], ranked[0][1])
        np.testing.assert_allclose(logprobs[b].sum(), ranked[0][2], atol=1e-4)
        top = ranked[:beam_size]
        np.testing.assert_allclose(
            beams.scores[b, : len(top)], [r[0] for r in top], atol=1e-5
        )
        np.testing.assert_array_equal(beams.tokens[b, : len(top)], [r[1] for r in top])
        assert np.all(beams.scores[b, len(top) :] == -np.inf)
    assert len({tuple(r[1]) for r in expected[0]}) == len(expected[0])


OPTION_SETS = [
    DecodeOptions(),
    DecodeOptions(
        bad_endings=(2, 3), suppress_unk=True, trigram_penalty=SOFT_TRIGRAM_PENALTY
    ),
]


@pytest.mark.parametrize("options", OPTION_SETS)
def test_beam_of_one_equals_greedy(options):
    decoder, params = _model(6, seed=4, sharpness=8.0, bias={0: 0.5})
    feats = _feats(12, seed=5)
    greedy_tokens, greedy_lps = decode_jit(
        decoder, params, feats, max_len=10, options=options
    )
    beam_tokens, beam_lps = beam_jit(decoder, params, feats, 1, 10, options)
    np.testing.assert_array_equal(beam_tokens, greedy_tokens)
    np.testing.assert_allclose(beam_lps, greedy_lps, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_wider_beams_never_score_below_greedy(seed):
    decoder, params = _model(8, seed=seed, sharpness=6.0, bias={0: 0.3})
    feats = _feats(32, seed=10 + seed)
    greedy = decode_jit(decoder, params, feats, max_len=8)[1].sum(1)
    for beam_size in (2, 5):
        best = beam_jit(decoder, params, feats, beam_size, 8)[1].sum(1)
        assert np.all(np.asarray(best) >= np.asarray(greedy) - 1e-5), beam_size


def test_unk_never_appears_when_suppressed():
    vocab = 5
    decoder, params = _model(vocab, seed=2, sharpness=4.0, bias={vocab: 3.0})
    feats = _feats(16)
    plain = decode_jit(decoder, params, feats, max_len=8)[0]
    assert np.any(np.asarray(plain) == vocab)  # the model does want UNK
    options = DecodeOptions(suppress_unk=True)
    _, _, beams = beam_jit(decoder, params, feats, 4, 8, options, True)
    assert not np.any(np.asarray(beams.tokens) == vocab)
    assert np.all(np.isfinite(beams.scores))


def _last_words(tokens):
    """Last word of each caption that ended with EOS (None if none)."""
    out = []
    for row in np.asarray(tokens).reshape(-1, tokens.shape[-1]).tolist():
        n = row.index(0) if 0 in row else len(row)
        out.append(row[n - 1] if 0 < n < len(row) else None)
    return out


def test_remove_bad_endings_never_ends_after_a_bad_word():
    ix_to_word = {1: "a", 2: "dog", 3: "the", 4: "runs", 5: "UNK"}
    bad = bad_ending_ids(ix_to_word)
    assert bad == (1, 3)
    decoder, params = _model(5, seed=6, sharpness=1.0, bias={0: 0.5})
    feats, key = _feats(64, seed=7), jax.random.key(0)
    plain = decode_jit(decoder, params, feats, key, "sample", max_len=6)[0]
    assert set(_last_words(plain)) & set(bad)  # without the option, some do
    options = DecodeOptions(bad_endings=bad)
    sampled = decode_jit(decoder, params, feats, key, "sample", 1.0, 6, options)[0]
    _, _, beams = beam_jit(decoder, params, feats, 3, 6, options, True)
    for tokens in (sampled, beams.tokens):
        ends = _last_words(tokens)
        assert not set(ends) & set(bad)
        assert set(ends) - {None}  # captions did end with EOS


def _repeats_a_trigram(row) -> bool:
    words = row[: row.index(0)] if 0 in row else row
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(set(trigrams)) < len(trigrams)


def test_hard_trigram_blocking_never_repeats_a_trigram():
    decoder, params = _model(3, seed=8, sharpness=6.0, bias={0: -6.0})
    feats = _feats(16, seed=9)
    plain = np.asarray(decode_jit(decoder, params, feats, max_len=12)[0])
    assert any(_repeats_a_trigram(r) for r in plain.tolist())
    options = DecodeOptions(trigram_penalty=HARD_TRIGRAM_PENALTY)
    greedy = decode_jit(decoder, params, feats, max_len=12, options=options)[0]
    _, _, beams = beam_jit(decoder, params, feats, 3, 12, options, True)
    for tokens in (greedy, beams.tokens):
        rows = np.asarray(tokens).reshape(-1, 12).tolist()
        assert not any(_repeats_a_trigram(r) for r in rows)


def test_compiles_once_per_shape():
    decoder, params = _model(6)
    feats = _feats(4)
    traces = []

    @jax.jit
    def run(p, f):
        traces.append(1)
        return beam_search(decoder, p, f, 3, 7, DecodeOptions(length_penalty="wu_1"))

    for seed in range(3):
        shifted = jax.tree.map(lambda x, s=seed: x + 0.01 * s, params)
        run(shifted, {"fc": feats["fc"] + seed})
    assert len(traces) == 1


@pytest.mark.parametrize("spec", ["wu", "avg_x", "max_1", "wu0.7"])
def test_bad_length_penalty_is_an_input_error(spec):
    with pytest.raises(InputError, match="length_penalty"):
        DecodeOptions(length_penalty=spec)


def test_brute_force_reference_counts_every_caption():
    decoder, params = _model(2, seed=0)
    results = _enumerate(decoder, params, _feats(1), 3, DecodeOptions())[0]
    assert len(results) == sum(2**n for n in range(3)) + 2**3
    probs = sum(math.exp(r[2]) for r in results)
    assert abs(probs - 1.0) < 1e-5  # the captions partition the probability mass
    assert {tuple(r[1]) for r in results} >= set(itertools.product([1, 2], repeat=3))


def test_evaluation_decodes_with_the_configured_beam_and_options():
    ix_to_word = {1: "a", 2: "dog", 3: "the", 4: "runs", 5: "UNK"}
    decoder, params = _model(5, seed=6, sharpness=1.0, bias={5: 1.0})
    feats = _feats(7, seed=7)
    split = types.SimpleNamespace(
        name="test", image_ids=np.arange(100, 107), fc=np.asarray(feats["fc"])
    )
    evals = ConfigDict(
        dict(beam_size=3, remove_bad_endings=True, length_penalty="wu_0.7")
    )
    beam_size, options = decode_options(evals, ix_to_word)
    assert (beam_size, options.bad_endings, options.suppress_unk) == (3, (1, 3), True)
    captions = decode_split(decoder, params, split, ix_to_word, 4, -1, 6, 3, options)
    tokens = beam_jit(decoder, params, feats, 3, 6, options)[0]
    assert captions == {
        100 + b: tokens_to_text(ix_to_word, tokens[b]) for b in range(7)
    }
    assert not any("UNK" in c.split() for c in captions.values())
    evals.length_penalty = "wu"
    with pytest.raises(InputError, match="evals.length_penalty"):
        decode_options(evals, ix_to_word)


ATT_CONFIG = dict(
    fc_feat_size=6,
    att_feat_size=5,
    input_encoding_size=4,
    rnn_size=8,
    att_hid_size=7,
    drop_prob_lm=0.5,
    num_layers=2,
)


def test_region_decoders_beam_search_with_their_context_shared():
    """TopDown (contexts (B, K, D) with a region mask): one context row per image
    serves all beams; beam 1 is greedy, beam 4 scores at least as well."""
    config = ConfigDict(dict(ATT_CONFIG, name="topdown"))
    decoder = build_decoder(config, 7)
    params = _random_params(config, 7, seed=0, sharpness=10.0)
    rng = np.random.default_rng(0)
    mask = np.ones((6, 4), np.float32)
    mask[::2, 3] = 0.0
    feats = {
        "fc": jnp.asarray(rng.normal(size=(6, 6)), jnp.float32),
        "att": jnp.asarray(rng.normal(size=(6, 4, 5)), jnp.float32),
        "att_mask": jnp.asarray(mask),
    }
    greedy_tokens, greedy_lps = decode_jit(decoder, params, feats, max_len=7)
    tokens, lps = beam_jit(decoder, params, feats, 1, 7)
    np.testing.assert_array_equal(tokens, greedy_tokens)
    np.testing.assert_allclose(lps, greedy_lps, atol=1e-6)
    wide = beam_jit(decoder, params, feats, 4, 7)[1].sum(1)
    assert np.all(np.asarray(wide) >= np.asarray(greedy_lps.sum(1)) - 1e-5)
