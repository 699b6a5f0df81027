"""prepro_labels writes the exact cocotalk layout of self-critical.pytorch."""

import json

import h5py
import numpy as np
import pytest
from PIL import Image

from nic_jax.data import cocotalk, karpathy
from nic_jax.data.prepro_labels import prepro_labels
from nic_jax.errors import InputError

LONG = "two dogs run and a cat sits near a red ball on the green grass today ok"


def _sent(text):
    return {"tokens": text.split(), "raw": text.capitalize() + "."}


def _images():
    # Counts over all splits: two 6, dogs 6, a 7, cat 6 (kept, > 5); run 5 (the
    # boundary), sits 3 and every word of LONG after "sits" once become UNK.
    return [
        {"split": "train", "cocoid": 101, "filepath": "train2014",
         "filename": "img0.jpg",
         "sentences": [_sent("two dogs run"), _sent("a cat sits")]},
        {"split": "restval", "cocoid": 102, "imgid": 1, "filepath": "val2014",
         "filename": "img1.jpg",
         "sentences": [_sent("two dogs run"), {"raw": "Two DOGS, run!"},
                       _sent("a cat")]},
        {"split": "val", "imgid": 7, "filepath": "flickr", "filename": "img2.jpg",
         "sentences": [_sent("a cat sits"), _sent(LONG)]},
        {"split": "test", "cocoid": 104, "sentences": [_sent("two dogs"),
                                                        _sent("a cat")]},
        {"split": "train", "cocoid": 105, "filename": "img4.jpg",
         "sentences": [_sent("two dogs run a cat")]},
    ]  # fmt: skip


def _write(tmp_path, data, name="dataset_small.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def outputs(tmp_path):
    src = _write(tmp_path, {"images": _images(), "dataset": "coco"})
    prepro_labels(src, str(tmp_path / "talk.json"), str(tmp_path / "talk"))
    return tmp_path / "talk.json", tmp_path / "talk_label.h5"


def test_vocab_json_first_seen_order_and_unk_last(outputs):
    out = json.loads(outputs[0].read_text())
    assert out["ix_to_word"] == {"1": "two", "2": "dogs", "3": "a", "4": "cat",
                                 "5": "UNK"}  # fmt: skip
    assert out["images"] == [
        {"split": "train", "id": 101, "file_path": "train2014/img0.jpg"},
        {"split": "restval", "id": 102, "file_path": "val2014/img1.jpg"},
        {"split": "val", "id": 7, "file_path": "flickr/img2.jpg"},
        {"split": "test", "id": 104},
        {"split": "train", "id": 105, "file_path": "img4.jpg"},
    ]


def test_label_h5_exact_layout(outputs):
    with h5py.File(outputs[1], "r") as f:
        assert sorted(f.keys()) == [
            "label_end_ix", "label_length", "label_start_ix", "labels"
        ]  # fmt: skip
        assert all(f[k].dtype == np.uint32 for k in f)
        labels = f["labels"][()]
        start, end = f["label_start_ix"][()], f["label_end_ix"][()]
        length = f["label_length"][()]
    assert labels.shape == (10, 16)
    np.testing.assert_array_equal(start, [1, 3, 6, 8, 10])
    np.testing.assert_array_equal(end, [2, 5, 7, 9, 10])
    np.testing.assert_array_equal(length, [3, 3, 3, 3, 2, 3, 16, 2, 2, 5])
    pad = [0] * 13
    np.testing.assert_array_equal(labels[0], [1, 2, 5, *pad])  # two dogs run(UNK)
    np.testing.assert_array_equal(labels[3], [1, 2, 5, *pad])  # from raw
    np.testing.assert_array_equal(labels[4], [3, 4, 0, *pad])
    long_ids = [1, 2, 5, 5, 3, 4, 5, 5, 3, 5, 5, 5, 5, 5, 5, 5]  # "ok" cut off
    np.testing.assert_array_equal(labels[6], long_ids)
    np.testing.assert_array_equal(labels[9], [1, 2, 5, 3, 4, *pad[:11]])


def test_load_cocotalk_reads_them_back_and_train_has_restval(outputs):
    talk = cocotalk.load_cocotalk(str(outputs[0]), str(outputs[1]))
    assert talk.vocab_size == 5 and talk.labels.dtype == np.int32
    np.testing.assert_array_equal(cocotalk.split_indices(talk, "train"), [0, 1, 4])
    np.testing.assert_array_equal(cocotalk.split_indices(talk, "val"), [2])
    refs = cocotalk.references(talk, 1)
    assert [cocotalk.decode_tokens(talk.ix_to_word, r) for r in refs] == [
        "two dogs UNK", "two dogs UNK", "a cat"
    ]  # fmt: skip


def test_images_root_adds_width_height(tmp_path):
    (tmp_path / "imgs" / "d").mkdir(parents=True)
    Image.new("RGB", (7, 3)).save(tmp_path / "imgs" / "d" / "x.png")
    img = {"split": "val", "imgid": 0, "filepath": "d", "filename": "x.png",
           "sentences": [_sent("a b")]}  # fmt: skip
    src = _write(tmp_path, {"images": [img]})
    out_json = tmp_path / "o.json"
    prepro_labels(src, str(out_json), str(tmp_path / "o"),
                  images_root=str(tmp_path / "imgs"))  # fmt: skip
    jimg = json.loads(out_json.read_text())["images"][0]
    assert (jimg["width"], jimg["height"]) == (7, 3)
    assert json.loads(out_json.read_text())["ix_to_word"] == {"1": "UNK"}


def test_tokenize_raw_is_karpathy_style():
    assert karpathy.tokenize_raw("A man's  RED-hat, 2 dogs!") == [
        "a", "man", "s", "red", "hat", "2", "dogs"
    ]  # fmt: skip


def test_references_by_image_joins_tokens(tmp_path):
    images = karpathy.load_karpathy(_write(tmp_path, {"images": _images()}))
    refs = karpathy.references_by_image(images)
    assert refs[102] == ["two dogs run", "two dogs run", "a cat"]
    assert refs[7][1] == LONG


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d.pop("images"), "'images' list"),
        (lambda d: d["images"][2].pop("split"), "images[2] has no 'split'"),
        (lambda d: d["images"][1].update(split="dev"), "images[1].split is 'dev'"),
        (lambda d: d["images"][2].pop("imgid"), "images[2] has neither"),
        (lambda d: d["images"][0].pop("sentences"), "images[0].sentences"),
        (lambda d: d["images"][3]["sentences"][1].clear(),
         "images[3].sentences[1] has no 'tokens' and no string 'raw'"),
        (lambda d: d["images"][0]["sentences"][0].update(tokens=[]),
         "images[0].sentences[0] has no tokens"),
    ],
)  # fmt: skip
def test_karpathy_errors_name_file_and_field(tmp_path, mutate, needle):
    data = {"images": _images()}
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(InputError, match="dataset_small.json") as e:
        karpathy.load_karpathy(path)
    assert needle in str(e.value)


def test_karpathy_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "dataset_bad.json"
    path.write_text('{"images": [\n  {"split": "train",, }\n]}')
    with pytest.raises(InputError, match=r"dataset_bad.json.*line 2 column 21"):
        karpathy.load_karpathy(str(path))


def test_prepro_output_is_atomic_and_leaves_no_temp_files(outputs):
    names = sorted(p.name for p in outputs[0].parent.iterdir())
    assert names == ["dataset_small.json", "talk.json", "talk_label.h5"]
