"""Decodes a split with a jit-compiled greedy search and scores the captions."""

import functools

import jax
import numpy as np
from tqdm import tqdm

from nic_jax.data.batches import eval_batches
from nic_jax.decoding import decode
from nic_jax.errors import InputError
from nic_jax.evaluation.coco import coco_scores
from nic_jax.metrics.corpus import BACKENDS, jax_scores


def tokens_to_text(ix_to_word: dict, tokens) -> str:
    """Word ids up to the first 0 (EOS), joined by spaces."""
    words = []
    for token in np.asarray(tokens).tolist():
        if token == 0:
            break
        words.append(ix_to_word[token])
    return " ".join(words)


@functools.partial(jax.jit, static_argnames=("decoder", "max_len"))
def _greedy(decoder, params, feats, max_len):
    return decode(decoder, params, feats, method="greedy", max_len=max_len)[0]


def decode_split(
    decoder, params, split, ix_to_word, batch_size, num_images=-1, max_len=16
):
    """Greedy captions for the split's images: {image_id: caption}."""
    captions = {}
    batches = eval_batches(split, batch_size, decoder.uses_att, num_images)
    total = -(-len(split.image_ids) // batch_size)
    for batch, n_valid in tqdm(
        batches, total=total, desc=f"decode {split.name}", leave=False
    ):
        feats = {k: v for k, v in batch.items() if k in ("fc", "att")}
        tokens = np.asarray(_greedy(decoder, params, feats, max_len))
        for row, toks in zip(batch["index"][:n_valid], tokens[:n_valid]):
            captions[int(split.image_ids[row])] = tokens_to_text(ix_to_word, toks)
    return captions


def evaluate_split(
    decoder, params, split, ix_to_word, eval_config, metrics, max_len=16
):
    """Returns (scores dict, captions {image_id: text}) for greedy decoding."""
    captions = decode_split(
        decoder,
        params,
        split,
        ix_to_word,
        eval_config.batch_size,
        eval_config.num_images,
        max_len,
    )
    refs = {
        int(split.image_ids[i]): split.ref_texts[i] for i in range(len(split.image_ids))
    }
    refs = {k: refs[k] for k in captions}
    return score_captions(
        refs, captions, metrics, eval_config.get("backend", "jax")
    ), captions


def _group(metric_key: str) -> str:
    """The metric group a score belongs to: Bleu_3 -> Bleu, ROUGE_L -> ROUGE_L."""
    return "Bleu" if metric_key.startswith("Bleu_") else metric_key


def score_captions(references: dict, captions: dict, metrics, backend: str) -> dict:
    """Corpus scores of the metric groups in `metrics` (e.g. Bleu, CIDEr, METEOR).

    backend "jax": BLEU, ROUGE-L and CIDEr on device (`nic_jax.metrics`, equal to
    pycocoevalcap's to 1e-6); METEOR, which has no device version, and everything
    under backend "coco" go through pycocoevalcap.
    """
    if backend not in BACKENDS:
        raise InputError(f"evals.backend {backend!r} is unknown; valid: {BACKENDS}")
    on_device = {"Bleu", "ROUGE_L", "CIDEr"} if backend == "jax" else set()
    wanted = set(metrics)
    scores = {}
    if wanted & on_device:
        computed = jax_scores(references, captions)
        scores.update({k: v for k, v in computed.items() if _group(k) in wanted})
    rest = [m for m in metrics if m not in on_device]
    if rest:
        scores.update(coco_scores(references, captions, rest))
    return scores
