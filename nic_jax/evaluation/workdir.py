"""Evaluates a workdir's checkpoint on a split: the library behind `nic_jax.evaluate`.

Restores params only (the best validation checkpoint unless a step is named),
decodes the split as `config.evals` says (greedy or beam search, with the decoding
options; `decoding` overrides them), writes `<workdir>/eval_<split>[_<step>].json`
(metrics, captions, decoding) and prints the metrics as one JSON line.
"""

import json
import os

from absl import logging
from ml_collections import ConfigDict

from nic_jax import parallel
from nic_jax.errors import InputError
from nic_jax.evaluation.captioning import evaluate_split
from nic_jax.evaluation.restore import load_workdir_model
from nic_jax.train import checkpoint, common

# config.evals decoding fields and their values for configs written before them.
DECODING_DEFAULTS = {
    "beam_size": 1,
    "max_len": 0,
    "remove_bad_endings": False,
    "block_trigrams": False,
    "length_penalty": "",
}


def _override_decoding(eval_config: ConfigDict, decoding: dict) -> None:
    """Sets the decoding fields named in `decoding` (unknown names are an error)."""
    unknown = sorted(set(decoding) - set(DECODING_DEFAULTS))
    if unknown:
        raise InputError(
            f"decoding option(s) {unknown} unknown; valid: {list(DECODING_DEFAULTS)}"
        )
    for name, value in decoding.items():
        eval_config[name] = value


def split_scorer(config, dataset, split: str, num_images: int, decoding=None):
    """(score, eval_config): score(decoder, params) -> (metrics, captions) of
    `split` with the run's `config.evals`, `num_images` images (-1: all) and the
    `decoding` overrides (beam_size, max_len, ...)."""
    eval_config = config.evals.copy_and_resolve_references()
    eval_config.num_images = num_images
    _override_decoding(eval_config, decoding or {})

    def score(decoder, params):
        return evaluate_split(
            decoder,
            params,
            dataset.splits[split],
            dataset.ix_to_word,
            eval_config,
            config.evals.test_metrics,
            config.data.max_length,
        )

    return score, eval_config


def _print_samples(split, captions: dict, num: int) -> None:
    for row in range(min(num, len(split.image_ids))):
        image_id = int(split.image_ids[row])
        print(f"image {image_id}: {captions[image_id]}")
        for ref in split.ref_texts[row]:
            print(f"    ref: {ref}")


def evaluate_workdir(
    workdir,
    split="test",
    step=None,
    num_images=-1,
    print_samples=False,
    decoding=None,
):
    """Decodes `split` with a checkpoint of `workdir`; returns the written result.

    `decoding` overrides the run's `config.evals` decoding fields (beam_size,
    max_len, remove_bad_endings, block_trigrams, length_penalty); None keeps them.
    """
    model = load_workdir_model(workdir, step)
    config, decoder, params, chosen = (
        model.config,
        model.decoder,
        model.params,
        model.step,
    )
    dataset, _ = common.setup_data_and_decoder(config, (split,))
    checkpoint.check_vocabulary(model.meta, dataset.ix_to_word, model.where)
    score, eval_config = split_scorer(config, dataset, split, num_images, decoding)
    scores, captions = score(decoder, params)
    result = {
        "split": split,
        "step": chosen,
        "metrics": scores,
        "decoding": {k: eval_config.get(k, v) for k, v in DECODING_DEFAULTS.items()},
        "captions": [{"image_id": k, "caption": v} for k, v in captions.items()],
    }
    if not parallel.is_main_process():  # the same result: process 0 writes it
        return result
    name = f"eval_{split}.json" if step is None else f"eval_{split}_{step}.json"
    path = os.path.join(workdir, name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:  # a kill keeps the old
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)
    if print_samples:
        _print_samples(dataset.splits[split], captions, config.evals.num_samples)
    print(json.dumps({"split": split, "step": chosen, **scores}), flush=True)
    logging.info("wrote %s", os.path.join(workdir, name))
    return result
