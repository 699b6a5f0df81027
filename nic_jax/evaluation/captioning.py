"""Decodes a split with a jit-compiled greedy search and scores the captions."""

import functools

import jax
import numpy as np
from tqdm import tqdm

from nic_jax.data.batches import eval_batches
from nic_jax.decoding import decode
from nic_jax.evaluation.coco import coco_scores


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
    return coco_scores(refs, captions, metrics), captions
