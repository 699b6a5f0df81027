"""Pieces every trainer shares: data and decoder set-up, metadata, evaluation logs."""

import json
import os

import numpy as np
from absl import logging

from nic_jax.data.dataset import load_dataset
from nic_jax.errors import InputError
from nic_jax.evaluation.captioning import evaluate_split
from nic_jax.models.functional import build_decoder
from nic_jax.models.registry import get_model_class


def save_config(config, workdir: str) -> None:
    """Writes the resolved config as `workdir/config.json` (atomically)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(path + ".tmp", path)


def setup_data_and_decoder(config, splits=("train", "val", "test")):
    """Loads the dataset and builds the decoder it fits."""
    need_att = get_model_class(config.model.name).uses_att
    dataset = load_dataset(config.data, config.model.fc_feat_size, need_att, splits)
    return dataset, build_decoder(config.model, dataset.vocab_size)


def checkpoint_meta(config, dataset) -> dict:
    """What a checkpoint records beside arrays: config, vocabulary, data fingerprint."""
    return {
        "config": json.loads(config.to_json_best_effort()),
        "vocab": [dataset.ix_to_word[i] for i in sorted(dataset.ix_to_word)],
        "data_fingerprint": dataset.fingerprint,
    }


def check_model_config(meta: dict, model_config, where: str) -> None:
    """Refuses to resume a checkpoint whose model has another shape."""
    saved = meta["config"]["model"]
    current = json.loads(model_config.to_json_best_effort())
    changed = sorted(
        k for k in set(saved) | set(current) if saved.get(k) != current.get(k)
    )
    if changed:
        key = changed[0]
        raise InputError(
            f"checkpoint {where} has model.{key}={saved.get(key)!r} but the config "
            f"says {current.get(key)!r}; use another workdir or the same model config"
        )


def log_samples(split, captions: dict, num: int) -> None:
    """Logs `num` decoded captions with their references."""
    for row in range(min(num, len(split.image_ids))):
        image_id = int(split.image_ids[row])
        logging.info("image %d: %s", image_id, captions.get(image_id, ""))
        for ref in split.ref_texts[row][:5]:
            logging.info("    ref: %s", ref)


def evaluate(decoder, params, split, ix_to_word, eval_config, metrics, max_len):
    """Scores greedy captions of a split: ({'<split>/<metric>': v}, captions)."""
    scores, captions = evaluate_split(
        decoder, params, split, ix_to_word, eval_config, metrics, max_len
    )
    summary = " ".join(f"{k}={v:.4f}" for k, v in scores.items())
    logging.info("%s: %s", split.name, summary)
    return {f"{split.name}/{k}": v for k, v in scores.items()}, captions


def mean_metrics(history: list) -> dict:
    """Averages a list of per-step metric dicts (host floats)."""
    return {k: float(np.mean([h[k] for h in history])) for k in history[0]}
