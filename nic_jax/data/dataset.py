"""Assembles a captioning dataset in memory from cocotalk files and features.

`load_dataset(config.data, ...)` is the one entry the trainers use: it generates and
preprocesses the synthetic shapes dataset when `data.name == "shapes"`, or reads a
user's self-critical.pytorch files unchanged when `data.name == "cocotalk"`.
"""

import dataclasses
import hashlib
import json
import os
import pathlib

import numpy as np
from absl import logging

from nic_jax.data import cocotalk as cocotalk_lib
from nic_jax.data import karpathy
from nic_jax.data.features import check_fc_dim, open_features
from nic_jax.data.prepro_labels import prepro_labels
from nic_jax.errors import InputError

# bumped when `_fingerprint` changes: older fingerprints are then not compared
FINGERPRINT_VERSION = "v2"


@dataclasses.dataclass(frozen=True)
class SplitData:
    """One split in host memory. Rows are images; references are 0-padded."""

    name: str
    image_ids: np.ndarray  # (N,) int64
    fc: np.ndarray  # (N, D) float32
    att_store: object | None  # FeatureStore read per batch (regions do not fit memory)
    labels: np.ndarray  # (N, R_max, L) int32 word ids of all references
    num_refs: np.ndarray  # (N,) int32
    ref_texts: list  # N lists of reference strings, for evaluation


@dataclasses.dataclass(frozen=True)
class CaptionDataset:
    ix_to_word: dict  # {1..V: word}; 0 is BOS = EOS = pad
    splits: dict  # name -> SplitData
    fingerprint: str  # vocabulary + train images, captions, features (`_fingerprint`)

    @property
    def vocab_size(self) -> int:
        return len(self.ix_to_word)


@dataclasses.dataclass(frozen=True)
class DataFiles:
    """Where a dataset's files are: cocotalk json/h5, features, references."""

    input_json: str
    input_label_h5: str
    features: dict  # split -> feature store path (dir or .h5)
    att_dir: str
    dataset_json: str


def _shapes_files(data_config) -> DataFiles:
    from nic_jax.data import shapes

    spec = shapes.ShapesSpec(**data_config.shapes.to_dict())
    root = shapes.generate(spec, data_config.cache_dir or None)
    # labels of other prepro settings live beside, never in place of, these
    threshold, length = data_config.word_count_threshold, data_config.max_length
    default = (threshold, length) == (5, 16)
    prefix = root / ("cocotalk" if default else f"cocotalk_t{threshold}_l{length}")
    label_h5 = pathlib.Path(f"{prefix}_label.h5")
    # each file is renamed into place whole; a run killed between the two left
    # only the h5, so both must be there
    if not (label_h5.exists() and pathlib.Path(f"{prefix}.json").exists()):
        prepro_labels(
            str(root / "dataset_shapes.json"),
            f"{prefix}.json",
            str(prefix),
            max_length=data_config.max_length,
            word_count_threshold=data_config.word_count_threshold,
        )
    features = {s: str(root / f"feats_{s}.h5") for s in ("train", "val", "test")}
    return DataFiles(
        f"{prefix}.json", str(label_h5), features, "", str(root / "dataset_shapes.json")
    )


def _cocotalk_files(data_config) -> DataFiles:
    for field in ("input_json", "input_label_h5", "input_fc_dir"):
        if not data_config[field]:
            raise InputError(
                f"config data.{field} is empty; data.name='cocotalk' needs it"
            )
    fc = data_config.input_fc_dir
    features = {s: fc.format(split=s) for s in ("train", "val", "test")}
    return DataFiles(
        data_config.input_json,
        data_config.input_label_h5,
        features,
        data_config.input_att_dir,
        data_config.dataset_json,
    )


def data_files(data_config) -> DataFiles:
    """Resolves (and for shapes, creates) the files of `config.data`."""
    if data_config.name == "shapes":
        return _shapes_files(data_config)
    if data_config.name == "cocotalk":
        return _cocotalk_files(data_config)
    raise InputError(
        f"config data.name={data_config.name!r} is unknown; valid: cocotalk, shapes"
    )


def _references_text(files: DataFiles, talk, by_id, rows, ids) -> list:
    """Evaluation references: the Karpathy json's when known, else decoded labels."""
    if by_id is None:
        return [
            [
                cocotalk_lib.decode_tokens(talk.ix_to_word, r)
                for r in cocotalk_lib.references(talk, row)
            ]
            for row in rows
        ]
    missing = [int(i) for i in ids if int(i) not in by_id]
    if missing:
        raise InputError(
            f"{files.dataset_json}: no image with id {missing[0]} (listed in "
            f"{files.input_json}); the two files must describe one dataset"
        )
    return [by_id[int(i)] for i in ids]


def _padded_labels(talk, rows):
    refs = [cocotalk_lib.references(talk, row) for row in rows]
    num_refs = np.array([len(r) for r in refs], np.int32)
    labels = np.zeros((len(rows), num_refs.max(), talk.labels.shape[1]), np.int32)
    for i, r in enumerate(refs):
        labels[i, : len(r)] = r
    return labels, num_refs


def _load_split(name, files, talk, by_id, expected_fc, need_att) -> SplitData:
    rows = cocotalk_lib.split_indices(talk, name)
    ids = np.array([talk.images[r]["id"] for r in rows], np.int64)
    store = open_features(files.features[name], att_dir=files.att_dir)
    check_fc_dim(store, expected_fc, files.features[name])
    labels, num_refs = _padded_labels(talk, rows)
    return SplitData(
        name=name,
        image_ids=ids,
        fc=store.fc(ids),
        att_store=store if need_att else None,
        labels=labels,
        num_refs=num_refs,
        ref_texts=_references_text(files, talk, by_id, rows, ids),
    )


def _fingerprint(talk, splits) -> str:
    """16 hex digits over the vocabulary and the train split (all loaded splits
    when it is not loaded): image ids, reference labels and up to 256 evenly
    spaced rows of features. Validation splits are left out, so that a resume
    may validate on another split; what the data position indexes is covered."""
    digest = hashlib.sha256()
    vocab = [talk.ix_to_word[i] for i in sorted(talk.ix_to_word)]
    digest.update(json.dumps(vocab).encode())
    covered = {"train": splits["train"]} if "train" in splits else splits
    for name in sorted(covered):
        split = covered[name]
        rows = np.unique(np.linspace(0, len(split.image_ids) - 1, 256).astype(int))
        digest.update(name.encode())
        for array in (split.image_ids, split.labels, split.fc[rows], split.fc.shape):
            digest.update(np.ascontiguousarray(array).tobytes())
    return f"{FINGERPRINT_VERSION}-{digest.hexdigest()[:16]}"


def load_dataset(
    data_config, fc_feat_size: int, need_att: bool, splits=("train", "val", "test")
) -> CaptionDataset:
    """Loads `splits` into memory, checking feature sizes against the model config."""
    files = data_files(data_config)
    talk = cocotalk_lib.load_cocotalk(files.input_json, files.input_label_h5)
    by_id = None
    if files.dataset_json:
        by_id = karpathy.references_by_image(karpathy.load_karpathy(files.dataset_json))
    loaded = {
        s: _load_split(s, files, talk, by_id, fc_feat_size, need_att) for s in splits
    }
    for name, split in loaded.items():
        logging.info(
            "split %s: %d images from %s",
            name,
            len(split.image_ids),
            os.fspath(files.features[name]),
        )
    return CaptionDataset(talk.ix_to_word, loaded, _fingerprint(talk, loaded))
