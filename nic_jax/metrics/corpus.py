"""Corpus scores of tokenized caption text, on device or through pycocoevalcap.

`score_text` is what `python -m nic_jax.score` runs: BLEU-1..4 (Papineni et al.
2002), ROUGE-L, CIDEr (Vedantam et al. 2015, df of these references) and CIDEr-D
(the same with df from a table when one is given, as self-critical training uses,
Rennie et al. 2017), and METEOR through pycocoevalcap where Java runs. The captions
must already be PTB-tokenized (`tokenize.ptb_tokenize`); words are `str.split()`.
"""

import jax
import numpy as np

from nic_jax.errors import InputError
from nic_jax.metrics import bleu, cider, ngrams, rouge, text
from nic_jax.metrics import df as df_lib
from nic_jax.metrics.tokenize import java_available

BACKENDS = ("jax", "coco")


def encode_corpus(references: dict, candidates: dict):
    """Ids of tokenized text: cands (B, T), refs (B, R, T), mask (B, R), vocab."""
    keys = list(references)
    cand_words = [candidates[k].split() for k in keys]
    ref_words = [[r.split() for r in references[k]] for k in keys]
    vocab = text.build_vocab([s for refs in ref_words for s in refs] + cand_words)
    if len(vocab) > ngrams.MAX_ID:
        raise InputError(f"{len(vocab)} distinct words; at most {ngrams.MAX_ID} fit")
    t = max(
        [len(s) for refs in ref_words for s in refs]
        + [len(s) for s in cand_words]
        + [1]
    )
    if t > ngrams.MAX_T:
        raise InputError(f"a caption has {t} words; at most {ngrams.MAX_T} fit")
    refs, mask = text.encode_references(ref_words, vocab, t)
    return text.encode(cand_words, vocab, t), refs, mask, vocab


BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 255)  # token widths of length buckets


def length_buckets(cands, refs, mask, include_eos=False, row_multiple=64):
    """Rows grouped by the token width their words need: [(rows, c, r, m)].

    Widths come from BUCKETS (capped at T); each group's rows are padded to a
    multiple of `row_multiple` with masked copies, to bound the shapes compiled.
    """
    cands, refs, mask = np.asarray(cands), np.asarray(refs), np.asarray(mask)
    width = np.maximum(_np_len(cands), (_np_len(refs) * mask).max(1)) + include_eos
    edges = [w for w in BUCKETS if w < cands.shape[1]] + [cands.shape[1]]
    which = np.searchsorted(edges, np.minimum(width, edges[-1]))
    groups = []
    for b, w in enumerate(edges):
        rows = np.flatnonzero(which == b)
        if rows.size:
            pad = -rows.size % row_multiple
            take = np.r_[rows, np.full(pad, rows[0])]
            sub_mask = np.r_[mask[rows], np.zeros((pad, mask.shape[1]), bool)]
            groups.append((rows, cands[take, :w], refs[take, :, :w], sub_mask))
    return groups


def bucketed(fn, cands, refs, mask, *args, include_eos=False, row_multiple=64):
    """fn(cands, refs, mask, *args) row by row, on rows grouped by length.

    Scores of one row do not depend on other rows (given the df table in `args`),
    so rows whose words fit in w tokens run at width w rather than the longest
    caption's: the O(T^2) work falls with the padding. Host-side; each (rows, w)
    shape compiles once. Returns fn's per-row outputs, numpy, in row order.
    """
    outputs, order = [], []
    for rows, c, r, m in length_buckets(cands, refs, mask, include_eos, row_multiple):
        out = fn(c, r, m, *args)
        outputs.append(jax.tree.map(lambda x, n=rows.size: np.asarray(x)[:n], out))
        order.append(rows)
    inverse = np.argsort(np.concatenate(order))
    return jax.tree.map(lambda *xs: np.concatenate(xs)[inverse], *outputs)


def _np_len(tokens):
    zero = tokens == 0
    return np.where(zero.any(-1), zero.argmax(-1), tokens.shape[-1])


@jax.jit
def _row_scores(cands, refs, mask, corpus_table, df_table):
    """Per-row BLEU statistics, ROUGE-L, CIDEr (corpus table) and CIDEr-D."""
    out = {
        "bleu": bleu.bleu_stats(cands, refs, mask),
        "rouge": rouge.rouge_l(cands, refs, mask),
        "cider": cider.ciderd(cands, refs, mask, corpus_table),
    }
    if df_table is not None:
        out["ciderd"] = cider.ciderd(cands, refs, mask, df_table)
    return out


def jax_scores(references: dict, candidates: dict, df_path: str = "") -> dict:
    """Scores on device; CIDEr-D's df is read from `df_path`, or is the refs' own.

    CIDEr is `ciderd` under the df table of these references: the same numbers as
    pycocoevalcap (and as `cider.cider`), but row-independent, so rows run in
    length buckets (`bucketed`).
    """
    cands, refs, mask, vocab = encode_corpus(references, candidates)
    corpus_table = df_lib.from_references(refs, mask).to_table()
    df_table = df_lib.load(df_path, word_to_id=vocab).to_table() if df_path else None
    out = bucketed(_row_scores, cands, refs, mask, corpus_table, df_table)
    scores = {
        f"Bleu_{n + 1}": float(v)
        for n, v in enumerate(bleu.bleu_corpus(bleu.BleuStats(*out["bleu"])))
    }
    scores["ROUGE_L"] = float(out["rouge"].mean())
    scores["CIDEr"] = float(out["cider"].mean())
    scores["CIDEr-D"] = float(out.get("ciderd", out["cider"]).mean())
    return scores


def coco_backend_scores(
    references: dict, candidates: dict, df_path: str = "", meteor: bool = True
) -> dict:
    """pycocoevalcap's Bleu, METEOR (with Java), ROUGE_L and Cider.

    pycocoevalcap has no CIDEr-D: without a df table it equals its CIDEr (df of the
    references, sigma 6, clipping); with one it comes from the device code.
    """
    from nic_jax.evaluation.coco import METRIC_GROUPS, coco_scores

    groups = [g for g in METRIC_GROUPS if meteor or g != "METEOR"]
    scores = coco_scores(references, candidates, groups, tokenize=False)
    if df_path:
        scores["CIDEr-D"] = jax_scores(references, candidates, df_path)["CIDEr-D"]
    else:
        scores["CIDEr-D"] = scores["CIDEr"]
    return scores


def score_text(
    references: dict,
    candidates: dict,
    backend: str = "jax",
    df_path: str = "",
    meteor: bool = True,
) -> dict:
    """{image: [tokenized refs]}, {image: tokenized caption} -> {metric: value}.

    METEOR (pycocoevalcap, Java; slow to start) is added where Java runs, for
    either backend, unless `meteor` is False.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r} is unknown; valid: {list(BACKENDS)}")
    if backend == "coco":
        return coco_backend_scores(references, candidates, df_path, meteor)
    scores = jax_scores(references, candidates, df_path)
    if meteor and java_available():
        from nic_jax.evaluation.coco import coco_scores

        scores.update(coco_scores(references, candidates, ("METEOR",)))
    return scores
