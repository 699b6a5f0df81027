"""load_cocotalk reads self-critical.pytorch files unchanged and rejects bad ones."""

import contextlib
import json
import pathlib
import tempfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nic_jax.data import cocotalk
from nic_jax.errors import InputError

IX_TO_WORD = {"1": "a", "2": "man", "3": "riding", "4": "horse", "5": "UNK"}
IMAGES = [
    {"split": "train", "id": 11, "file_path": "train2014/x.jpg"},
    {"split": "restval", "id": 12, "file_path": "val2014/y.jpg"},
    {"split": "test", "id": 13, "file_path": "val2014/z.jpg"},
]
LABELS = np.array(
    [[1, 2, 3, 1, 4, 0], [2, 5, 0, 0, 0, 0], [1, 4, 0, 0, 0, 0], [4, 4, 4, 4, 4, 4]],
    np.uint32,
)
ARRAYS = {
    "labels": LABELS,
    "label_start_ix": np.array([1, 3, 4], np.uint32),
    "label_end_ix": np.array([2, 3, 4], np.uint32),
    "label_length": np.array([5, 2, 2, 6], np.uint32),
}


def _write(directory, ix_to_word=IX_TO_WORD, images=IMAGES, arrays=ARRAYS):
    """Writes the pair as the PyTorch script would (json.dump, uint32 datasets)."""
    directory = pathlib.Path(directory)
    (directory / "talk.json").write_text(
        json.dumps({"ix_to_word": ix_to_word, "images": images})
    )
    with h5py.File(directory / "talk_label.h5", "w") as f:
        for name, data in arrays.items():
            f.create_dataset(name, data=data)
    return str(directory / "talk.json"), str(directory / "talk_label.h5")


def test_reads_unchanged_files(tmp_path):
    talk = cocotalk.load_cocotalk(*_write(tmp_path))
    assert talk.vocab_size == 5 and talk.ix_to_word[3] == "riding"
    assert talk.labels.dtype == np.int32 and talk.label_start_ix.dtype == np.int64
    np.testing.assert_array_equal(cocotalk.split_indices(talk, "train"), [0, 1])
    np.testing.assert_array_equal(cocotalk.split_indices(talk, "test"), [2])
    np.testing.assert_array_equal(cocotalk.references(talk, 0), LABELS[:2])
    np.testing.assert_array_equal(cocotalk.references(talk, 2), LABELS[3:])
    assert cocotalk.decode_tokens(talk.ix_to_word, LABELS[0]) == "a man riding a horse"
    assert cocotalk.decode_tokens(talk.ix_to_word, [2, 0, 3]) == "man"
    wtoi = {w: i for i, w in talk.ix_to_word.items()}
    ids = cocotalk.encode_words(wtoi, "a man riding a zebra")
    np.testing.assert_array_equal(ids, [1, 2, 3, 1, 5])
    assert ids.dtype == np.int32


def test_missing_label_length_is_counted_from_labels(tmp_path):
    arrays = {k: v for k, v in ARRAYS.items() if k != "label_length"}
    talk = cocotalk.load_cocotalk(*_write(tmp_path, arrays=arrays))
    np.testing.assert_array_equal(talk.label_length, [5, 2, 2, 6])


def _replaced(**changes):
    return {**ARRAYS, **changes}


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"ix_to_word": {**IX_TO_WORD, "7": "x"}}, "ix_to_word keys must be '1'..'6'"),
        ({"ix_to_word": {"0": "a", "1": "b"}}, "unexpected keys ['0']"),
        ({"images": IMAGES[:2]}, "have 3/3 rows but the json * lists 2 images"),
        ({"images": [*IMAGES[:2], {"split": "val"}]}, "images[2]"),
        ({"arrays": {k: v for k, v in ARRAYS.items() if k != "label_end_ix"}},
         "dataset 'label_end_ix' is missing"),
        ({"arrays": _replaced(label_end_ix=np.array([2, 3, 5], np.uint32))},
         "image row 2 has label_start_ix=4, label_end_ix=5; expected 1 <= start"),
        ({"arrays": _replaced(label_start_ix=np.array([1, 3, 4], np.uint32),
                              label_end_ix=np.array([2, 2, 4], np.uint32))},
         "image row 1"),
        ({"arrays": _replaced(label_start_ix=np.array([0, 3, 4], np.uint32))},
         "image row 0"),
        ({"arrays": _replaced(labels=LABELS + 2)}, "expected 0..5"),
        ({"arrays": _replaced(labels=LABELS.astype(np.float32))}, "expected integers"),
        ({"arrays": _replaced(label_length=np.ones(3, np.uint32))},
         "label_length has shape (3,), expected (4,)"),
    ],
)  # fmt: skip
def test_bad_files_name_the_file_and_field(tmp_path, kwargs, needle):
    paths = _write(tmp_path, **kwargs)
    with pytest.raises(InputError, match=r"talk(\.json|_label\.h5)") as e:
        cocotalk.load_cocotalk(*paths)
    message = str(e.value)
    if "json * lists" in needle:  # the json's path stands where the * is
        message = message.replace(f"json {paths[0]} lists", "json * lists")
    assert needle in message
    if "json * lists" in needle or "expected 0..5" in needle:  # both files checked
        assert all(str(path) in str(e.value) for path in paths), e.value


def test_malformed_json_names_line_and_column(tmp_path):
    json_path, h5_path = _write(tmp_path)
    pathlib.Path(json_path).write_text('{"ix_to_word": {"1": "a"},\n "images": [}')
    with pytest.raises(InputError, match=r"talk.json: malformed JSON at line 2 col"):
        cocotalk.load_cocotalk(json_path, h5_path)


def test_missing_files(tmp_path):
    json_path, h5_path = _write(tmp_path)
    with pytest.raises(InputError, match="nope.json: file not found"):
        cocotalk.load_cocotalk(str(tmp_path / "nope.json"), h5_path)
    with pytest.raises(InputError, match="nope.h5: file not found"):
        cocotalk.load_cocotalk(json_path, str(tmp_path / "nope.h5"))


def test_empty_split_names_split_and_available_ones(tmp_path):
    talk = cocotalk.load_cocotalk(*_write(tmp_path))
    with pytest.raises(InputError, match=r"split 'val' has no images; available "
                       r"splits: \['restval', 'test', 'train'\]"):  # fmt: skip
        cocotalk.split_indices(talk, "val")


_FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_FUZZ
@given(data=st.binary(max_size=300), which=st.sampled_from(["json", "h5"]))
def test_fuzz_random_bytes_raise_only_input_error(data, which):
    with tempfile.TemporaryDirectory() as d:
        paths = _write(d)
        pathlib.Path(paths[which == "h5"]).write_bytes(data)
        with pytest.raises(InputError):
            cocotalk.load_cocotalk(*paths)


@_FUZZ
@given(cut=st.floats(0.0, 0.999), which=st.sampled_from(["json", "h5"]))
def test_fuzz_truncated_files_raise_only_input_error(cut, which):
    with tempfile.TemporaryDirectory() as d:
        paths = _write(d)
        path = pathlib.Path(paths[which == "h5"])
        blob = path.read_bytes()
        path.write_bytes(blob[: int(len(blob) * cut)])
        with contextlib.suppress(InputError):  # anything else fails the test
            cocotalk.load_cocotalk(*paths)
