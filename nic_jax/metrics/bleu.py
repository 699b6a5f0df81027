"""BLEU-1..4 on device, as pycocoevalcap's bleu_scorer computes them
(Papineni et al. 2002).

Per image: `correct[n]` sums, over the candidate's distinct n-grams, the count
clipped by the largest count in any one reference; `guess[n]` = max(0, len - n + 1).
The corpus score multiplies (sum correct + 1e-15) / (sum guess + 1e-9) over orders
1..n and takes the n-th root; the brevity penalty exp(1 - r / c) applies when the
candidates are shorter in total than the effective reference lengths. pycocoevalcap
picks each image's effective reference length by the "closest" rule (the reference
length nearest the candidate's, the shorter on a tie), or their "average" when
only one image is scored. Per-sentence BLEU is the same formula on one image's
counts (pycocoevalcap's `bleu_list`).

Shapes: B images, R references, T tokens, as in `cider.py`.
"""

from typing import NamedTuple

import jax.numpy as jnp

from nic_jax.metrics import ngrams as ng

_TINY = 1e-15
_SMALL = 1e-9


class BleuStats(NamedTuple):
    """Sufficient statistics of BLEU per image (a pytree; sum them for a corpus)."""

    testlen: jnp.ndarray  # (B,) int32 candidate words
    reflen: jnp.ndarray  # (B, R) int32 reference words (0 where masked)
    ref_mask: jnp.ndarray  # (B, R) bool
    correct: jnp.ndarray  # (B, 4) int32 clipped n-gram matches
    guess: jnp.ndarray  # (B, 4) int32 candidate n-grams


def bleu_stats(
    cands, refs, ref_mask, *, lengths=None, ref_lengths=None, include_eos=False
) -> BleuStats:
    """BLEU statistics of candidates (B, T) against refs (B, R, T), mask (B, R)."""
    cand_len = ng.effective_lengths(cands, lengths, include_eos)
    cand_w = ng.candidate_words(ng.mask_after(cands, lengths), cand_len)
    ref_mask = jnp.asarray(ref_mask, bool)
    ref_len = jnp.where(
        ref_mask, ng.effective_lengths(refs, ref_lengths, include_eos), 0
    )
    ref_w = ng.reference_words(ng.mask_after(refs, ref_lengths), ref_len)
    tf, first = ng.self_counts(cand_w)
    use = first & ng.ngram_valid(cand_len, cand_w.shape[-1])
    best = jnp.where(ref_mask[..., None, None], ng.cross_counts(cand_w, ref_w), 0)
    correct = jnp.where(use, jnp.minimum(tf, best.max(1)), 0).sum(-1)
    order = jnp.arange(ng.MAX_N, dtype=jnp.int32)
    guess = jnp.maximum(cand_len[:, None] - order, 0)
    return BleuStats(cand_len, ref_len, ref_mask, correct, guess)


def effective_reflen(stats: BleuStats, average):
    """(B,) float32 reference length per image: "closest", or "average" if set.

    `average` is a bool (or bool scalar array): pycocoevalcap averages only when
    it scores a single image.
    """
    gap = jnp.abs(stats.reflen - stats.testlen[:, None])
    big = jnp.iinfo(jnp.int32).max
    key = jnp.where(stats.ref_mask, gap * 1024 + stats.reflen, big)  # ties: shorter
    closest = jnp.take_along_axis(stats.reflen, key.argmin(1)[:, None], 1)[:, 0]
    count = jnp.maximum(stats.ref_mask.sum(1), 1)
    mean = jnp.where(stats.ref_mask, stats.reflen, 0).sum(1) / count
    return jnp.where(average, mean, closest.astype(jnp.float32))


def _bleu(correct, guess, testlen, reflen):
    """BLEU-1..4 (..., 4) from counts (..., 4) and lengths (...,)."""
    ratios = (correct.astype(jnp.float32) + _TINY) / (
        guess.astype(jnp.float32) + _SMALL
    )
    roots = 1.0 / jnp.arange(1, ng.MAX_N + 1, dtype=jnp.float32)
    bleu = jnp.cumprod(ratios, axis=-1) ** roots
    ratio = (testlen.astype(jnp.float32) + _TINY) / (reflen + _SMALL)
    penalty = jnp.where(ratio < 1, jnp.exp(1 - 1 / ratio), 1.0)
    return bleu * penalty[..., None]


def _num_images(stats, image_mask):
    if image_mask is None:
        return stats.testlen.shape[0], jnp.ones(stats.testlen.shape, bool)
    image_mask = jnp.asarray(image_mask, bool)
    return image_mask.sum(), image_mask


def bleu_corpus(stats: BleuStats, image_mask=None):
    """(4,) corpus BLEU-1..4 over the images (rows where image_mask is True)."""
    n, image_mask = _num_images(stats, image_mask)
    reflen = jnp.where(image_mask, effective_reflen(stats, n == 1), 0.0)
    keep = image_mask[:, None]
    return _bleu(
        jnp.where(keep, stats.correct, 0).sum(0),
        jnp.where(keep, stats.guess, 0).sum(0),
        jnp.where(image_mask, stats.testlen, 0).sum(),
        reflen.sum(),
    )


def bleu_sentence(stats: BleuStats, image_mask=None):
    """(B, 4) per-image BLEU-1..4, pycocoevalcap's `bleu_list` transposed."""
    n, _ = _num_images(stats, image_mask)
    reflen = effective_reflen(stats, n == 1)
    return _bleu(stats.correct, stats.guess, stats.testlen, reflen)
