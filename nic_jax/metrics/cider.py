"""CIDEr-D and CIDEr on device, over token ids (Vedantam et al. 2015).

For each order n = 1..4 a sentence is a tf-idf vector, tf the n-gram's count and
idf = log(N) - log(max(1, df)). Against each reference the similarity is the
clipped cosine sum_g min(h_g, r_g) r_g / (|h| |r|) (divided only when both norms are
nonzero), times a Gaussian length penalty exp(-delta^2 / (2 sigma^2)), sigma = 6,
where delta is the difference of the two sentences' numbers of bigrams (words - 1).
The score is 10 x the mean over n, averaged over the references. This is the
"CIDEr-D" of vrama91/cider and its forks, which self-critical training uses as the
reward (Rennie et al. 2017), with df from a table (`df.DfTable`); pycocoevalcap
1.2's "CIDEr" is the same maths with df counted over the evaluated references
themselves and N the number of images scored (`cider`), so one image alone scores 0.

Shapes: B images, R references, T tokens; candidates (B, T), references (B, R, T)
with a mask (B, R); a population axis P is added with `jax.vmap` over the
candidates of `ciderd_prepared`, the references being prepared once per batch
(`prepare_refs`, under the same table). Everything is pure jax with static shapes:
jit once per shape (`include_eos` static), no host callbacks.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nic_jax.metrics import df as df_lib
from nic_jax.metrics import ngrams as ng

SIGMA = 6.0


class RefStats(NamedTuple):
    """References made ready once per batch: their words, lengths and tf-idf norms."""

    words: jnp.ndarray  # (B, R, T) int32, `ngrams.reference_words`
    lengths: jnp.ndarray  # (B, R) int32 words (with EOS when included); 0 if masked
    norms: jnp.ndarray  # (B, R, 4) float32 |r| per order
    mask: jnp.ndarray  # (B, R) bool


def _candidates(cands, lengths, include_eos):
    n_words = ng.effective_lengths(cands, lengths, include_eos)
    return ng.candidate_words(ng.mask_after(cands, lengths), n_words), n_words


def _references(refs, ref_mask, ref_lengths, include_eos):
    n_words = ng.effective_lengths(refs, ref_lengths, include_eos)
    n_words = jnp.where(ref_mask, n_words, 0)
    return ng.reference_words(ng.mask_after(refs, ref_lengths), n_words), n_words


def _norms(w, n_words, idf, tf=None):
    """|v| per order of sentences w (..., T) with n-gram idf (..., 4, T).

    Sums tf * idf^2 over positions: a distinct n-gram at tf positions gives
    (tf * idf)^2, so no first-occurrence pass is needed.
    """
    tf = ng.term_freq(w) if tf is None else tf
    valid = ng.ngram_valid(n_words, w.shape[-1])
    return jnp.sqrt(jnp.where(valid, tf * jnp.square(idf), 0.0).sum(-1))


def _scores(cand_w, cand_len, cand_idf, refs: RefStats, sigma: float):
    """(B,) CIDEr from candidate words (B, T), lengths (B,), idf (B, 4, T)."""
    tf = ng.term_freq(cand_w)
    valid = ng.ngram_valid(cand_len, cand_w.shape[-1])
    h = tf * cand_idf
    r = ng.cross_counts(cand_w, refs.words) * cand_idf[:, None]
    # each distinct n-gram sits at tf positions: weight 1 / tf sums it once
    share = jnp.where(valid, 1.0 / jnp.maximum(tf, 1), 0.0)[:, None]
    num = (jnp.minimum(h[:, None], r) * r * share).sum(-1)
    norm = _norms(cand_w, cand_len, cand_idf, tf)[:, None]
    both = (norm != 0) & (refs.norms != 0)
    val = jnp.where(both, num / jnp.where(both, norm * refs.norms, 1.0), num)
    bigrams = jnp.maximum(cand_len[:, None] - 1, 0) - jnp.maximum(refs.lengths - 1, 0)
    penalty = jnp.exp(-jnp.square(bigrams.astype(jnp.float32)) / (2 * sigma**2))
    per_ref = jnp.where(refs.mask, val.mean(-1) * penalty, 0.0)
    count = jnp.maximum(refs.mask.sum(-1), 1)
    return 10.0 * per_ref.sum(-1) / count


def prepare_refs(
    refs, ref_mask, table: df_lib.DfTable, *, include_eos=False, ref_lengths=None
) -> RefStats:
    """Reference words, lengths and tf-idf norms under `table`, for reuse.

    refs (B, R, T) int32 ids, ref_mask (B, R) bool, ref_lengths (B, R) optional.
    """
    w, n_words = _references(refs, ref_mask, ref_lengths, include_eos)
    log_df = df_lib.lookup_log_df(table, *ng.ngram_keys(w, n_words))
    norms = _norms(w, n_words, table.log_ref_len - log_df)
    return RefStats(w, n_words, norms, jnp.asarray(ref_mask, bool))


def ciderd_prepared(
    cands,
    refs: RefStats,
    table: df_lib.DfTable,
    *,
    include_eos=False,
    lengths=None,
    sigma=SIGMA,
):
    """(B,) CIDEr-D of candidates (B, T) against prepared references.

    NaN marks a candidate with an id outside 0..ngrams.MAX_ID (not keyable exactly).
    """
    w, n_words = _candidates(cands, lengths, include_eos)
    log_df = df_lib.lookup_log_df(table, *ng.ngram_keys(w, n_words))
    scores = _scores(w, n_words, table.log_ref_len - log_df, refs, sigma)
    return jnp.where(ng.ids_in_range(cands), scores, jnp.nan)


def ciderd(
    cands,
    refs,
    ref_mask,
    table: df_lib.DfTable,
    *,
    include_eos=False,
    lengths=None,
    ref_lengths=None,
    sigma=SIGMA,
):
    """(B,) CIDEr-D of candidates (B, T) against refs (B, R, T), mask (B, R)."""
    stats = prepare_refs(
        refs, ref_mask, table, include_eos=include_eos, ref_lengths=ref_lengths
    )
    scores = ciderd_prepared(
        cands, stats, table, include_eos=include_eos, lengths=lengths, sigma=sigma
    )
    return jnp.where(ng.ids_in_range(refs).all(-1), scores, jnp.nan)


def corpus_df(cand_keys, ref_keys):
    """Per-occurrence df counted over the images' reference sets, by one sort.

    cand_keys: (hi, lo) each (B, 4, T); ref_keys: (hi, lo) each (B, R, 4, T).
    Returns df for every candidate and reference n-gram position (int32).
    """
    b = cand_keys[0].shape[0]
    n_ref = ref_keys[0].size
    hi = jnp.concatenate([ref_keys[0].ravel(), cand_keys[0].ravel()])
    lo = jnp.concatenate([ref_keys[1].ravel(), cand_keys[1].ravel()])
    image = jnp.concatenate(
        [
            jnp.repeat(jnp.arange(b), n_ref // b),  # refs first, with kind 0
            b + jnp.repeat(jnp.arange(b), cand_keys[0].size // b),  # cands: kind 1
        ]
    ).astype(jnp.int32)
    index = jnp.arange(hi.shape[0], dtype=jnp.int32)
    hi, lo, image, index = jax.lax.sort((hi, lo, image, index), num_keys=3)
    new_key = jnp.concatenate(
        [jnp.array([True]), (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])]
    )
    new_image = new_key | jnp.concatenate([jnp.array([True]), image[1:] != image[:-1]])
    counted = (new_image & (image < b)).astype(jnp.int32)
    segment = jnp.cumsum(new_key) - 1
    df = jax.ops.segment_sum(counted, segment, num_segments=hi.shape[0])[segment]
    df = jnp.zeros_like(df).at[index].set(df)
    return df[n_ref:].reshape(cand_keys[0].shape), df[:n_ref].reshape(ref_keys[0].shape)


def cider(
    cands,
    refs,
    ref_mask,
    *,
    include_eos=False,
    lengths=None,
    ref_lengths=None,
    sigma=SIGMA,
):
    """(B,) CIDEr as pycocoevalcap: df and N from these images' own references.

    N counts the images with at least one unmasked reference; the corpus score is
    the mean of the returned scores over those images.
    """
    cand_w, cand_len = _candidates(cands, lengths, include_eos)
    ref_w, ref_len = _references(refs, ref_mask, ref_lengths, include_eos)
    cand_keys = ng.ngram_keys(cand_w, cand_len)
    ref_keys = ng.ngram_keys(ref_w, ref_len)
    cand_df, ref_df = corpus_df(cand_keys, ref_keys)
    log_n = jnp.log(
        jnp.maximum(jnp.asarray(ref_mask).any(-1).sum(), 1).astype(jnp.float32)
    )
    idf = lambda d: log_n - jnp.log(jnp.maximum(d, 1).astype(jnp.float32))
    stats = RefStats(
        ref_w, ref_len, _norms(ref_w, ref_len, idf(ref_df)), jnp.asarray(ref_mask, bool)
    )
    scores = _scores(cand_w, cand_len, idf(cand_df), stats, sigma)
    # one id that cannot be packed could alias another n-gram in the shared df
    in_range = ng.ids_in_range(cands).all() & ng.ids_in_range(refs).all()
    return jnp.where(in_range, scores, jnp.nan)
