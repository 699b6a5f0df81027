"""Device metrics against plain-Python references written from the formulas.

Hypothesis draws images with 1..20 references of different lengths, empty and
one-word candidates, repeated words, candidates equal to a reference, and a df
table that misses some words. The references below are deliberately naive.
"""

import collections
import contextlib
import io
import math

import jax
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider_scorer import CiderScorer

from nic_jax.metrics import bleu, cider, rouge
from nic_jax.metrics import df as df_lib

T, R, B = 12, 20, 3  # fixed shapes: one compilation per function and flag


def grams(words, n):
    return collections.Counter(
        tuple(words[i : i + n]) for i in range(len(words) - n + 1)
    )


def ref_df(images):
    """df: images whose references hold the n-gram (a set per image)."""
    df = collections.Counter()
    for refs in images:
        df.update({g for r in refs for n in range(1, 5) for g in grams(r, n)})
    return df


def ref_cider(cand, refs, df, log_n, sigma=6.0):
    def vec(words):
        v = [
            {
                g: tf * (log_n - math.log(max(1.0, df.get(g, 0))))
                for g, tf in grams(words, n).items()
            }
            for n in range(1, 5)
        ]
        return v, [math.sqrt(sum(x * x for x in d.values())) for d in v]

    hv, hn = vec(cand)
    total = 0.0
    for ref in refs:
        rv, rn = vec(ref)
        delta = max(len(cand) - 1, 0) - max(len(ref) - 1, 0)
        vals = []
        for n in range(4):
            val = sum(
                min(h, rv[n].get(g, 0.0)) * rv[n].get(g, 0.0) for g, h in hv[n].items()
            )
            if hn[n] != 0 and rn[n] != 0:
                val /= hn[n] * rn[n]
            vals.append(val * math.exp(-(delta**2) / (2 * sigma**2)))
        total += sum(vals) / 4
    return 10.0 * total / len(refs)


def ref_bleu_counts(cand, refs):
    correct = [
        sum(
            min(c, max(grams(r, n)[g] for r in refs)) for g, c in grams(cand, n).items()
        )
        for n in range(1, 5)
    ]
    guess = [max(0, len(cand) - n + 1) for n in range(1, 5)]
    reflen = min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
    return correct, guess, reflen


def ref_bleu(correct, guess, testlen, reflen):
    out, prod = [], 1.0
    for k in range(4):
        prod *= (correct[k] + 1e-15) / (guess[k] + 1e-9)
        out.append(prod ** (1 / (k + 1)))
    ratio = (testlen + 1e-15) / (reflen + 1e-9)
    return [b * math.exp(1 - 1 / ratio) if ratio < 1 else b for b in out]


def ref_rouge(cand, refs, beta=1.2):
    def lcs(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = (
                    table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
                )
        return table[-1][-1]

    cand = cand or [""]  # pycocoevalcap splits "" into [""]
    prec = max(lcs(r or [""], cand) / len(cand) for r in refs)
    rec = max(lcs(r or [""], cand) / len(r or [""]) for r in refs)
    if prec == 0 or rec == 0:
        return 0.0
    return (1 + beta**2) * prec * rec / (rec + beta**2 * prec)


sentence = st.lists(st.integers(1, 6), min_size=0, max_size=T - 1)


@st.composite
def images(draw):
    out = []
    for _ in range(B):
        refs = draw(st.lists(sentence, min_size=1, max_size=R))
        cand = draw(
            st.one_of(
                sentence,
                st.sampled_from(refs),
                st.just([]),
                st.lists(st.integers(1, 6), min_size=1, max_size=1),
            )
        )
        out.append((cand, refs))
    return out


def arrays(batch, eos=False):
    cands = np.zeros((B, T), np.int32)
    refs = np.zeros((B, R, T), np.int32)
    mask = np.zeros((B, R), bool)
    for i, (cand, rs) in enumerate(batch):
        cands[i, : len(cand)] = cand
        for j, r in enumerate(rs):
            refs[i, j, : len(r)] = r
            mask[i, j] = True
    return cands, refs, mask


def with_eos(words, eos):
    return list(words) + [0] if eos else list(words)


_ciderd = jax.jit(cider.ciderd, static_argnames="include_eos")
_cider = jax.jit(cider.cider, static_argnames="include_eos")


def table_of(corpus, eos):
    """Device df table of a training corpus (lists of reference lists)."""
    refs = np.zeros((len(corpus), 3, T), np.int32)
    mask = np.zeros((len(corpus), 3), bool)
    for i, rs in enumerate(corpus):
        for j, r in enumerate(rs):
            refs[i, j, : len(r)] = r
            mask[i, j] = True
    host = df_lib.from_references(refs, mask, include_eos=eos)
    return host.to_table(min_slots=512, num_words=8)  # one shape: one compile


# the table's corpus never uses words 5 and 6: they get df 0, the largest idf
corpus_sentence = st.lists(st.integers(1, 4), min_size=0, max_size=T - 1)


@pytest.mark.parametrize("eos", [False, True])
@settings(max_examples=25, deadline=None)
@given(
    batch=images(),
    corpus=st.lists(
        st.lists(corpus_sentence, min_size=1, max_size=3), min_size=1, max_size=6
    ),
)
def test_ciderd_with_a_df_table_matches_the_formula(eos, batch, corpus):
    df = ref_df([[with_eos(r, eos) for r in rs] for rs in corpus])
    got = _ciderd(*arrays(batch), table_of(corpus, eos), include_eos=eos)
    for i, (cand, refs) in enumerate(batch):
        want = ref_cider(
            with_eos(cand, eos),
            [with_eos(r, eos) for r in refs],
            df,
            math.log(len(corpus)),
        )
        assert abs(float(got[i]) - want) <= 1e-4 * max(1.0, abs(want))


@pytest.mark.parametrize("eos", [False, True])
@settings(max_examples=25, deadline=None)
@given(batch=images())
def test_corpus_cider_matches_the_formula(eos, batch):
    refs = [[with_eos(r, eos) for r in rs] for _, rs in batch]
    df = ref_df(refs)
    got = _cider(*arrays(batch), include_eos=eos)
    for i, (cand, _) in enumerate(batch):
        want = ref_cider(with_eos(cand, eos), refs[i], df, math.log(B))
        assert abs(float(got[i]) - want) <= 1e-4 * max(1.0, abs(want))


_bleu_stats = jax.jit(bleu.bleu_stats)
_bleu_corpus = jax.jit(bleu.bleu_corpus)
_bleu_sentence = jax.jit(bleu.bleu_sentence)
_rouge = jax.jit(rouge.rouge_l)


@settings(max_examples=25, deadline=None)
@given(batch=images())
def test_bleu_matches_the_formula(batch):
    stats = _bleu_stats(*arrays(batch))
    sentence = _bleu_sentence(stats)
    totals = [[0] * 4, [0] * 4, 0, 0]
    for i, (cand, refs) in enumerate(batch):
        correct, guess, reflen = ref_bleu_counts(cand, refs)
        assert stats.correct[i].tolist() == correct
        assert stats.guess[i].tolist() == guess
        want = ref_bleu(correct, guess, len(cand), reflen)
        np.testing.assert_allclose(sentence[i], want, atol=1e-6, rtol=1e-5)
        totals = [
            [a + b for a, b in zip(totals[0], correct)],
            [a + b for a, b in zip(totals[1], guess)],
            totals[2] + len(cand),
            totals[3] + reflen,
        ]
    np.testing.assert_allclose(
        _bleu_corpus(stats), ref_bleu(*totals), atol=1e-6, rtol=1e-5
    )


@settings(max_examples=30, deadline=None)
@given(batch=images())
def test_rouge_l_matches_the_formula(batch):
    got = _rouge(*arrays(batch))
    for i, (cand, refs) in enumerate(batch):
        assert abs(float(got[i]) - ref_rouge(cand, refs)) <= 1e-6


@settings(max_examples=20, deadline=None)
@given(batch=images())
def test_the_references_agree_with_pycocoevalcap(batch):
    """The naive references above are themselves pycocoevalcap's numbers."""
    assume(any(r for _, rs in batch for r in rs))  # pycocoevalcap fails on no n-gram
    as_text = [
        (" ".join(map(str, c)), [" ".join(map(str, r)) for r in rs]) for c, rs in batch
    ]
    scorer = CiderScorer(n=4, sigma=6.0)
    bleu_scorer = BleuScorer(n=4)
    for cand, refs in as_text:
        scorer += (cand, refs)
        bleu_scorer += (cand, refs)
    _, per_image = scorer.compute_score()
    with contextlib.redirect_stdout(io.StringIO()):
        corpus_bleu, _ = bleu_scorer.compute_score(option="closest")
    df = ref_df([rs for _, rs in batch])
    for i, (cand, refs) in enumerate(batch):
        assert abs(ref_cider(cand, refs, df, math.log(B)) - per_image[i]) <= 1e-9
    totals = [[0] * 4, [0] * 4, 0, 0]
    for cand, refs in batch:
        correct, guess, reflen = ref_bleu_counts(cand, refs)
        totals = [
            [a + b for a, b in zip(totals[0], correct)],
            [a + b for a, b in zip(totals[1], guess)],
            totals[2] + len(cand),
            totals[3] + reflen,
        ]
    np.testing.assert_allclose(ref_bleu(*totals), corpus_bleu, rtol=1e-12)
