"""Corrupt-file fuzzing of every loader: real small files (cocotalk json and label
h5, Karpathy json, fc .npy, region .npz, feature .h5, df .npz and pickle, COCO
annotations and results, metrics.jsonl) truncated, bit-flipped or overwritten by
hypothesis. A loader may read a corrupt file as a valid one (a flipped byte in a
float is another float) or refuse it; the only allowed failure is `InputError`.
The short version tries 25 files per loader; NIC_JAX_FULL_FAULTS=1, 600."""

import json
import os
import pathlib
import pickle

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nic_jax import score
from nic_jax.data import cocotalk, features, karpathy
from nic_jax.data.prepro_labels import prepro_labels
from nic_jax.errors import InputError
from nic_jax.metrics import df as df_lib
from nic_jax.train.metric_writer import read_metrics
from tests.reliability import harness

EXAMPLES = 600 if harness.FULL else 25
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def corrupted(draw, original: bytes) -> bytes:
    """`original` truncated, with bytes flipped, or with a run overwritten."""
    size = len(original)
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if kind == "truncate":
        return original[: draw(st.integers(0, size - 1))]
    data = bytearray(original)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, size - 1))] ^= draw(st.integers(1, 255))
        return bytes(data)
    start = draw(st.integers(0, size - 1))
    run = draw(st.binary(min_size=1, max_size=64))
    data[start : start + len(run)] = run
    return bytes(data)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Valid small files of every kind, by name: (path, bytes)."""
    root = tmp_path_factory.mktemp("valid")
    images = [
        {
            "split": ["train", "val", "test"][i % 3],
            "filepath": "x",
            "filename": f"{i}.jpg",
            "cocoid": 1000 + i,
            "sentences": [{"tokens": ["a", "red", "dot"], "raw": "A red dot."}] * 2,
        }
        for i in range(6)
    ]
    (root / "dataset.json").write_text(json.dumps({"images": images}))
    prepro_labels(
        str(root / "dataset.json"), str(root / "talk.json"), str(root / "talk")
    )
    rng = np.random.default_rng(0)
    np.save(root / "1000.npy", rng.random(8, np.float32))
    np.savez(root / "1000.npz", feat=rng.random((3, 8), np.float32))
    with h5py.File(root / "feats.h5", "w") as f:
        f["image_id"] = np.arange(1000, 1006)
        f["fc"] = rng.random((6, 8), np.float32)
        f["att"] = rng.random((6, 3, 8), np.float32)
    table = df_lib.from_references(np.array([[[3, 4, 5, 0]], [[3, 6, 0, 0]]]))
    table.save(str(root / "df.npz"))
    with open(root / "df.p", "wb") as f:
        pickle.dump({"document_frequency": table.as_dict(), "ref_len": 2}, f)
    ann = {"images": [{"id": 1}], "annotations": [{"image_id": 1, "caption": "a b"}]}
    (root / "ann.json").write_text(json.dumps(ann))
    (root / "res.json").write_text(json.dumps([{"image_id": 1, "caption": "a"}]))
    lines = [{"step": s, "train/loss": 1.0 / s} for s in (1, 2, 3)]
    (root / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    names = [p.name for p in root.iterdir()]
    return {name: (root / name, (root / name).read_bytes()) for name in names}


def _in_dir(tmp: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    """A fresh directory holding only the corrupt file `name`."""
    directory = tmp / f"d{len(os.listdir(tmp))}"
    directory.mkdir()
    (directory / name).write_bytes(data)
    return directory


# loader name -> (valid file it corrupts, fn(files, corrupt path) reading it)
LOADERS = {
    "cocotalk json": (
        "talk.json",
        lambda f, p: cocotalk.load_cocotalk(str(p), str(f["talk_label.h5"][0])),
    ),
    "cocotalk label h5": (
        "talk_label.h5",
        lambda f, p: cocotalk.load_cocotalk(str(f["talk.json"][0]), str(p)),
    ),
    "Karpathy json": ("dataset.json", lambda f, p: karpathy.load_karpathy(str(p))),
    "fc npy": (
        "1000.npy",
        lambda f, p: features.DirFeatures(str(p.parent)).fc([1000]),
    ),
    "region npz": (
        "1000.npz",
        lambda f, p: features.DirFeatures(
            str(f["1000.npy"][0].parent), str(p.parent)
        ).att([1000]),
    ),
    "feature h5": (
        "feats.h5",
        lambda f, p: features.H5Features(str(p)).att([1003, 1000]),
    ),
    "df npz": ("df.npz", lambda f, p: df_lib.load(str(p)).to_table()),
    "df pickle": ("df.p", lambda f, p: df_lib.load(str(p)).to_table()),
    "COCO annotations": ("ann.json", lambda f, p: score.read_annotations(str(p))),
    "COCO results": ("res.json", lambda f, p: score.read_results(str(p), {1: []})),
    "metrics.jsonl": ("metrics.jsonl", lambda f, p: read_metrics(str(p))),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy on fuzzed headers
def test_corrupt_files_fail_only_with_input_error(loader, files, tmp_path, tally):
    name, read_fn = LOADERS[loader]
    read_fn(files, _in_dir(tmp_path, name, files[name][1]) / name)  # valid: reads

    @FUZZ
    @given(data=corrupted(files[name][1]))
    def fuzz(data):
        tally["bad_inputs_tried"] += 1
        path = _in_dir(tmp_path, name, data) / name
        try:
            read_fn(files, path)
        except InputError as error:
            assert str(path) in str(error) or name in str(error), error

    fuzz()
