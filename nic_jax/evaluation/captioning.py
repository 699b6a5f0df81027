"""Decodes a split on device (greedy or beam search, with the decoding options of
`config.evals`) and scores the captions."""

import functools

import jax
import numpy as np
from tqdm import tqdm

from nic_jax.data.batches import eval_batches
from nic_jax.decoding import (
    SOFT_TRIGRAM_PENALTY,
    DecodeOptions,
    bad_ending_ids,
    beam_search,
    decode,
)
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


def decode_options(eval_config, ix_to_word: dict) -> tuple[int, DecodeOptions]:
    """(beam_size, DecodeOptions) from `config.evals` (configs without the fields,
    e.g. older workdirs, decode greedily with no constraints).

    UNK (the last word id V) is suppressed in beam search, as self-critical.pytorch
    does, when the vocabulary's last word is UNK.
    """
    beam_size = eval_config.get("beam_size", 1)
    if not isinstance(beam_size, int) or beam_size < 1:
        raise InputError(
            f"evals.beam_size (--beam_size) is {beam_size!r}; expected an integer >= 1"
        )
    bad = eval_config.get("remove_bad_endings", False)
    trigrams = eval_config.get("block_trigrams", False)
    try:
        options = DecodeOptions(
            bad_endings=bad_ending_ids(ix_to_word) if bad else (),
            trigram_penalty=SOFT_TRIGRAM_PENALTY if trigrams else 0.0,
            suppress_unk=beam_size > 1 and ix_to_word.get(len(ix_to_word)) == "UNK",
            length_penalty=eval_config.get("length_penalty", ""),
        )
    except InputError as error:
        raise InputError(f"evals.{error} (--length_penalty)") from error
    return beam_size, options


@functools.partial(
    jax.jit, static_argnames=("decoder", "max_len", "beam_size", "options")
)
def decode_tokens(decoder, params, feats, max_len, beam_size, options):
    """(B, max_len) word ids of the best caption of each image."""
    if beam_size == 1:
        tokens, _ = decode(
            decoder,
            params,
            feats,
            max_len=max_len,
            options=options,
            with_logprobs=False,
        )
        return tokens
    return beam_search(decoder, params, feats, beam_size, max_len, options)[0]


def decode_split(
    decoder,
    params,
    split,
    ix_to_word,
    batch_size,
    num_images=-1,
    max_len=16,
    beam_size=1,
    options=None,
):
    """Captions for the split's images: {image_id: caption}.

    beam_size 1 decodes greedily; `options` are `DecodeOptions` (None: none).
    """
    captions = {}
    options = options or DecodeOptions()
    batches = eval_batches(split, batch_size, decoder.uses_att, num_images)
    total = -(-len(split.image_ids) // batch_size)
    for batch, n_valid in tqdm(
        batches, total=total, desc=f"decode {split.name}", leave=False
    ):
        feats = {k: v for k, v in batch.items() if k in ("fc", "att", "att_mask")}
        tokens = np.asarray(
            decode_tokens(decoder, params, feats, max_len, beam_size, options)
        )
        for row, toks in zip(batch["index"][:n_valid], tokens[:n_valid]):
            captions[int(split.image_ids[row])] = tokens_to_text(ix_to_word, toks)
    return captions


def evaluate_split(
    decoder, params, split, ix_to_word, eval_config, metrics, max_len=16
):
    """Returns (scores dict, captions {image_id: text}).

    Decodes as `eval_config` says (`decode_options`), up to `evals.max_len` words
    when that is set (> 0), else `max_len` (the training labels' length).
    """
    beam_size, options = decode_options(eval_config, ix_to_word)
    words = eval_config.get("max_len", 0) or max_len
    if words < 1:
        raise InputError(
            f"evals.max_len (--max_len) is {words}; expected >= 1 (0: data.max_length)"
        )
    captions = decode_split(
        decoder,
        params,
        split,
        ix_to_word,
        eval_config.batch_size,
        eval_config.num_images,
        words,
        beam_size,
        options,
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
