"""Document-frequency tables: exact device lookups, files, prepro_ngrams."""

import collections
import json
import pickle

import h5py
import jax
import numpy as np
import pytest

from nic_jax import prepro
from nic_jax.data import prepro_ngrams
from nic_jax.errors import InputError
from nic_jax.metrics import df as df_lib
from nic_jax.metrics import ngrams as ng


def _keys(grams):
    slots = [[w + 1 for w in g] + [0] * (4 - len(g)) for g in grams]
    hi = np.array([(s[0] << 16) | s[1] for s in slots], np.uint32)
    lo = np.array([(s[2] << 16) | s[3] for s in slots], np.uint32)
    return hi, lo


def test_lookup_is_exact_for_present_absent_and_near_miss_keys():
    rng = np.random.default_rng(0)
    grams = {
        tuple(rng.integers(0, 50, rng.integers(2, 5)).tolist()) for _ in range(3000)
    }
    grams = sorted(grams)
    near = [g[:-1] + (g[-1] + 50,) for g in grams[:500]]  # same prefix, other word
    padded = np.array([list(g) + [-1] * (4 - len(g)) for g in grams])
    values = rng.random(len(grams)).astype(np.float32)
    table = df_lib.build_table(padded, values, 10)
    hi, lo = _keys(grams + near)
    # lookup reads (..., 4, T): put every key in the 2-gram row of its own column
    shaped = [np.zeros((4, len(hi)), np.uint32) for _ in range(2)]
    shaped[0][1], shaped[1][1] = hi, lo
    got = np.asarray(jax.jit(df_lib.lookup_log_df)(table, *shaped))[1]
    np.testing.assert_array_equal(got[: len(grams)], values)
    np.testing.assert_array_equal(got[len(grams) :], 0.0)


def _naive_df(images, eos):
    df = collections.Counter()
    for refs in images:
        seen = set()
        for r in refs:
            words = list(r) + ([0] if eos else [])
            for n in range(1, 5):
                seen |= {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
        df.update(seen)
    return df


@pytest.mark.parametrize("eos", [False, True])
def test_from_references_counts_images_not_occurrences(eos):
    images = [[[1, 2, 1, 2], [1, 2]], [[2, 3]], [[1, 2, 3, 4, 5], [5]]]
    refs = np.zeros((3, 2, 6), np.int32)
    mask = np.zeros((3, 2), bool)
    for i, rs in enumerate(images):
        for j, r in enumerate(rs):
            refs[i, j, : len(r)], mask[i, j] = r, True
    df = df_lib.from_references(refs, mask, include_eos=eos)
    assert df.num_images == 3
    assert df.as_dict() == {
        tuple(map(str, g)): float(c) for g, c in _naive_df(images, eos).items()
    }


def test_npz_and_pickle_round_trips(tmp_path):
    refs = np.array([[[3, 1, 2, 0]], [[1, 2, 0, 0]]], np.int32)
    words = ["<eos>", "a", "dog", "runs"]
    df = df_lib.from_references(refs, include_eos=True, words=words)
    paths = prepro_ngrams.write(df, str(tmp_path / "coco-train"))
    back = df_lib.load(paths[0])
    np.testing.assert_array_equal(back.ngrams, df.ngrams)
    assert back.words == words and back.num_images == 2
    assert df_lib.load(paths[2]).as_dict() == df.as_dict()
    with open(paths[1], "rb") as f:
        assert pickle.load(f)["document_frequency"][("a", "dog", "<eos>")] == 2.0
    vocab = {"dog": 1, "a": 2, "<eos>": 0}  # another vocabulary: matched by word
    for path in (paths[0], paths[1]):
        remapped = df_lib.load(path, word_to_id=vocab).as_dict()
        assert remapped[("2", "1", "0")] == 2.0 and ("3",) not in remapped


def test_bad_df_files_raise_input_error(tmp_path):
    bad = tmp_path / "bad.p"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="bad.p"):
        df_lib.load(str(bad))
    words = tmp_path / "w.p"
    words.write_bytes(pickle.dumps({"document_frequency": {("a",): 1.0}, "ref_len": 1}))
    with pytest.raises(InputError, match="words"):
        df_lib.load(str(words))


def test_keys_pack_ids_losslessly_and_refuse_larger_ids():
    w = np.array([[ng.MAX_ID, 0, 7]], np.int32)
    hi, lo = ng.ngram_keys(w, np.array([3]))
    assert (
        int(hi[0, 2, 0]) == ((ng.MAX_ID + 1) << 16) | 1 and int(lo[0, 2, 0]) == 8 << 16
    )
    with pytest.raises(InputError):
        df_lib.from_references(np.full((1, 1, 2), ng.MAX_ID + 1))


def _karpathy(tmp_path):
    images = [
        {
            "split": "train",
            "cocoid": 1,
            "filepath": "",
            "filename": "a.jpg",
            "sentences": [{"tokens": ["a", "dog", "runs"]}, {"tokens": ["a", "cat"]}],
        },
        {
            "split": "restval",
            "cocoid": 2,
            "filepath": "",
            "filename": "b.jpg",
            "sentences": [{"tokens": ["a", "zebra", "runs"]}],
        },
        {
            "split": "val",
            "cocoid": 3,
            "filepath": "",
            "filename": "c.jpg",
            "sentences": [{"tokens": ["dog"]}],
        },
    ]
    (tmp_path / "dataset.json").write_text(json.dumps({"images": images}))
    ix_to_word = {"1": "a", "2": "dog", "3": "runs", "4": "cat", "5": "UNK"}
    talk = {
        "ix_to_word": ix_to_word,
        "images": [
            {"split": i["split"], "id": i["cocoid"], "file_path": ""} for i in images
        ],
    }
    (tmp_path / "talk.json").write_text(json.dumps(talk))
    labels = np.array([[1, 2, 3, 0], [1, 4, 0, 0], [1, 5, 3, 0], [2, 0, 0, 0]])
    with h5py.File(tmp_path / "talk_label.h5", "w") as f:
        f["labels"] = labels.astype(np.uint32)
        f["label_start_ix"] = np.array([1, 3, 4], np.uint32)
        f["label_end_ix"] = np.array([2, 3, 4], np.uint32)
        f["label_length"] = np.array([3, 2, 3, 1], np.uint32)
    return tmp_path


def test_prepro_ngrams_is_self_critical_prepro_ngrams(tmp_path):
    """train + restval, '<eos>' after every sentence, UNK for unknown words."""
    root = _karpathy(tmp_path)
    want = _naive_df([[[1, 2, 3], [1, 4]], [[1, 5, 3]]], eos=True)
    want = {tuple(map(str, g)): float(c) for g, c in want.items()}
    prepro.run(
        [
            "ngrams",
            "--dict_json",
            str(root / "talk.json"),
            "--input_json",
            str(root / "dataset.json"),
            "--output_pkl",
            str(root / "from_json"),
        ]
    )
    with open(root / "from_json-idxs.p", "rb") as f:
        data = pickle.load(f)
    assert data["ref_len"] == 2 and data["document_frequency"] == want
    prepro.run(
        [
            "ngrams",
            "--dict_json",
            str(root / "talk.json"),
            "--label_h5",
            str(root / "talk_label.h5"),
            "--output_pkl",
            str(root / "from_h5"),
        ]
    )
    assert df_lib.load(str(root / "from_h5.npz")).as_dict() == want
