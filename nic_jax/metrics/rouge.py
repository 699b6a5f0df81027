"""ROUGE-L on device, as pycocoevalcap's Rouge computes it (Lin 2004).

Per image: the longest common subsequence with each reference gives precision
lcs / |candidate| and recall lcs / |reference|; their maxima over the references,
P and R, combine into (1 + b^2) P R / (R + b^2 P), b = 1.2 (0 when P or R is 0).
pycocoevalcap splits on " ", so an empty sentence is one empty word; that is kept.

The LCS table is filled one candidate word at a time (`lax.scan`): row i is
max(row i-1, cummax_j(row_{i-1}[j-1] + 1 where the words match)), all references of
all images at once. Shapes: B images, R references, T tokens.
"""

import jax
import jax.numpy as jnp

from nic_jax.metrics import ngrams as ng

BETA = 1.2
_EMPTY = -5  # the one "" word of an empty sentence


def _with_empty_word(tokens, lengths, pad):
    """Words with an empty sentence turned into one `_EMPTY` word; lengths >= 1."""
    w = ng.words(tokens, lengths, pad)
    first = jnp.arange(tokens.shape[-1]) == 0
    w = jnp.where((lengths[..., None] == 0) & first, _EMPTY, w)
    return w, jnp.maximum(lengths, 1)


def lcs_lengths(cand_w, ref_w):
    """LCS length of candidate words (B, T) with each reference (B, R, T')."""
    b, r, tr = ref_w.shape

    def row(prev, word):  # prev (B, R, T'): LCS with the candidate prefix
        match = ref_w == word[:, None, None]
        shifted = jnp.pad(prev, ((0, 0), (0, 0), (1, 0)))[..., :-1]
        gain = jnp.where(match, shifted + 1, 0)
        new = jnp.maximum(prev, jax.lax.cummax(gain, axis=2))
        return new, None

    init = jnp.zeros((b, r, tr), jnp.int32)
    last, _ = jax.lax.scan(row, init, cand_w.T)
    return last[..., -1]


def rouge_l(
    cands,
    refs,
    ref_mask,
    *,
    lengths=None,
    ref_lengths=None,
    include_eos=False,
    beta=BETA,
):
    """(B,) ROUGE-L of candidates (B, T) against refs (B, R, T), mask (B, R)."""
    cand_len = ng.effective_lengths(cands, lengths, include_eos)
    ref_len = ng.effective_lengths(refs, ref_lengths, include_eos)
    cand_w, cand_len = _with_empty_word(ng.mask_after(cands, lengths), cand_len, -1)
    ref_w, ref_len = _with_empty_word(ng.mask_after(refs, ref_lengths), ref_len, -2)
    lcs = lcs_lengths(cand_w, ref_w).astype(jnp.float32)
    mask = jnp.asarray(ref_mask, bool)
    prec = jnp.where(mask, lcs / cand_len[:, None], 0.0).max(1)
    rec = jnp.where(mask, lcs / ref_len, 0.0).max(1)
    both = (prec != 0) & (rec != 0)
    score = (1 + beta**2) * prec * rec / jnp.where(both, rec + beta**2 * prec, 1.0)
    return jnp.where(both, score, 0.0)
