"""Captions for a folder of raw images: the library behind `nic_jax.caption`.

As self-critical.pytorch's `eval.py --image_folder` (its `DataLoaderRaw`): every
image runs through the ResNet of `prepro_feats.py` (`nic_jax.encoders`, weights from
a local file), the workdir's decoder captions it (greedy, or beam search), and the
captions go to `vis/vis.json` and a `vis/index.html` page, with the dataset's
reference captions beside images that the run's Karpathy json lists.
"""

import os

import numpy as np
from absl import logging

from nic_jax.data import karpathy
from nic_jax.data.dataset import data_files
from nic_jax.encoders import build_encoder, iter_features, list_images, load_weights
from nic_jax.errors import InputError
from nic_jax.evaluation.captioning import decode_options, decode_tokens, tokens_to_text
from nic_jax.evaluation.restore import load_workdir_model
from nic_jax.evaluation.vis_page import write_vis


def check_feature_sizes(model_config, uses_att: bool, feature_size: int, name: str):
    """The decoder must read features of the encoder's size."""
    fields = ("fc_feat_size", "att_feat_size") if uses_att else ("fc_feat_size",)
    for field in fields:
        if model_config[field] != feature_size:
            raise InputError(
                f"the workdir's model.{field} is {model_config[field]}, but --model="
                f"{name} gives {feature_size}-d features; caption with a model "
                "trained on ResNet features (fc_feat_size=2048)"
            )


def references_by_file(data_config) -> dict:
    """{file path and base name: reference captions} of the run's Karpathy json;
    empty (with a warning) when the run names none or it cannot be read."""
    try:
        path = data_files(data_config).dataset_json
        images = karpathy.load_karpathy(path) if path else []
    except InputError as error:
        logging.warning("no reference captions: %s", error)
        return {}
    refs = {}
    for img in images:
        if "filename" not in img:
            continue
        texts = [s.get("raw") or " ".join(s["tokens"]) for s in img["sentences"]]
        refs[img["filename"]] = texts
        refs[os.path.join(img.get("filepath", ""), img["filename"])] = texts
    return refs


def _features(restored, encoder, paths, encoder_args: dict) -> dict:
    """{'fc': (N, 2048), 'att': (N, K, 2048) for attention decoders} of the images."""
    params = load_weights(encoder_args["weights"], encoder.name, encoder.variant)
    att_size = encoder_args["att_size"] if restored.decoder.uses_att else 0
    fc, att = [None] * len(paths), [None] * len(paths)
    for index, fc_row, att_row in iter_features(
        encoder, params, paths, att_size, encoder_args["image_size"], desc="encode"
    ):
        fc[index], att[index] = fc_row, att_row
    feats = {"fc": np.stack(fc)}
    if restored.decoder.uses_att:
        feats["att"] = np.stack(att)
    return feats


def _decode_all(restored, feats: dict, beam_size, batch_size: int) -> list[str]:
    """Captions of all rows of `feats`, in batches padded to one shape."""
    evals = restored.config.evals.copy_and_resolve_references()
    if beam_size is not None:
        evals.beam_size = beam_size
    beam, options = decode_options(evals, restored.ix_to_word)
    max_len = evals.get("max_len", 0) or restored.config.data.max_length
    total = len(feats["fc"])
    captions = []
    for start in range(0, total, batch_size):
        chunk = {k: v[start : start + batch_size] for k, v in feats.items()}
        pad = batch_size - len(chunk["fc"])
        chunk = {
            k: np.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1)) for k, v in chunk.items()
        }
        tokens = decode_tokens(
            restored.decoder, restored.params, chunk, max_len, beam, options
        )
        rows = np.asarray(tokens)[: batch_size - pad]
        captions += [tokens_to_text(restored.ix_to_word, row) for row in rows]
    return captions


def _check_arguments(weights: str, num_images: int, batch_size: int) -> None:
    if not weights:
        raise InputError(
            "--weights is required: the ResNet weights file the decoder's features "
            "came from (.npz, or a torchvision-layout .pth such as self-critical's "
            "data/imagenet_weights/resnet101.pth); nothing is downloaded"
        )
    if num_images == 0 or batch_size < 1:
        raise InputError(
            f"--num_images={num_images}, batch_size={batch_size}: expected "
            "num_images -1 (all) or >= 1, and batch_size >= 1"
        )


def _vis_entries(files: list, captions: list, refs: dict) -> list[dict]:
    """vis.json entries; image ids count from 1 as self-critical's DataLoaderRaw.
    References match on the path under the folder, else on the file name."""
    entries = []
    for index, (name, caption) in enumerate(zip(files, captions)):
        entry = {"image_id": index + 1, "file_name": name, "caption": caption}
        known = refs.get(name, refs.get(os.path.basename(name)))
        if known:
            entry["references"] = known
        entries.append(entry)
    return entries


def caption_folder(
    workdir: str,
    image_folder: str,
    weights: str,
    model: str = "resnet101",
    variant: str = "caffe",
    beam_size: int | None = None,
    num_images: int = -1,
    step: int | None = None,
    att_size: int = 14,
    image_size: int = 0,
    batch_size: int = 16,
    output_dir: str = "",
    copy_images: bool = False,
) -> list[dict]:
    """Captions the images of `image_folder`; writes `<output_dir or workdir/vis>/
    vis.json` and `index.html`. Returns the vis.json entries.

    beam_size None decodes as the run's `config.evals` says (greedy by default).
    """
    _check_arguments(weights, num_images, batch_size)
    restored = load_workdir_model(workdir, step)
    encoder = build_encoder(model, variant)
    check_feature_sizes(
        restored.config.model, restored.decoder.uses_att, encoder.feature_size, model
    )
    files = list_images(image_folder)
    files = files if num_images < 0 else files[:num_images]
    encoder_args = dict(weights=weights, att_size=att_size, image_size=image_size)
    paths = [os.path.join(image_folder, f) for f in files]
    feats = _features(restored, encoder, paths, encoder_args)
    captions = _decode_all(restored, feats, beam_size, batch_size)
    entries = _vis_entries(files, captions, references_by_file(restored.config.data))
    vis_dir = output_dir or os.path.join(workdir, "vis")
    title = f"{os.path.basename(os.path.abspath(workdir))} (step {restored.step})"
    paths = write_vis(vis_dir, entries, image_folder, title, copy_images)
    logging.info("wrote %s", " and ".join(paths))
    return entries
