"""Reads cocotalk files (`<name>.json` + `<name>_label.h5`) back, checking them.

These are the files of self-critical.pytorch's `scripts/prepro_labels.py` (and of
`nic_jax.data.prepro_labels`): `ix_to_word` with string keys "1".."V" (0 is BOS = EOS
= pad), `images[]` with `split` and `id`, and `labels` (M, L) with 1-based inclusive
`label_start_ix` / `label_end_ix` per image. Files made by the PyTorch script are read
unchanged; anything inconsistent fails here with the file and field named.
"""

import dataclasses

import h5py
import numpy as np

from nic_jax.data.karpathy import read_json
from nic_jax.errors import InputError

_REQUIRED = ("labels", "label_start_ix", "label_end_ix")


@dataclasses.dataclass(frozen=True)
class CocoTalk:
    """A cocotalk vocabulary and label set in memory. Rows are images."""

    ix_to_word: dict[int, str]  # {1..V: word}
    images: list[dict]  # N dicts with `split`, `id` and maybe `file_path`
    labels: np.ndarray  # (M, L) int32
    label_start_ix: np.ndarray  # (N,) int64, 1-based inclusive
    label_end_ix: np.ndarray  # (N,) int64, 1-based inclusive
    label_length: np.ndarray  # (M,) int32
    json_path: str = ""

    @property
    def vocab_size(self) -> int:
        return len(self.ix_to_word)


def _parse_ix_to_word(path: str, raw) -> dict[int, str]:
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: ix_to_word is {raw!r:.60}, expected a word table")
    expected = {str(i) for i in range(1, len(raw) + 1)}
    if set(raw) != expected:
        odd = sorted(set(raw) - expected, key=str)[:5]
        raise InputError(
            f"{path}: ix_to_word keys must be '1'..'{len(raw)}' with no gaps; "
            f"found unexpected keys {odd}"
        )
    bad = [k for k, w in raw.items() if not isinstance(w, str)]
    if bad:
        raise InputError(f"{path}: ix_to_word[{bad[0]!r}] is not a string")
    return {int(k): raw[k] for k in sorted(raw, key=int)}


def _parse_images(path: str, raw) -> list[dict]:
    if not isinstance(raw, list):
        raise InputError(f"{path}: images is {type(raw).__name__}, expected a list")
    for i, img in enumerate(raw):
        if not isinstance(img, dict) or "split" not in img or "id" not in img:
            raise InputError(
                f"{path}: images[{i}] is {img!r:.80}; expected an object with "
                "'split' and 'id'"
            )
    return raw


def _read_int_dataset(path: str, f: h5py.File, name: str, ndim: int) -> np.ndarray:
    if name not in f:
        raise InputError(
            f"{path}: dataset '{name}' is missing; found {sorted(f.keys())}, "
            f"expected {list(_REQUIRED)} (+ label_length)"
        )
    ds = f[name]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != ndim:
        shape = getattr(ds, "shape", "a group")
        raise InputError(f"{path}: '{name}' has shape {shape}, expected {ndim}-D")
    if ds.dtype.kind not in "iu":
        raise InputError(f"{path}: '{name}' has dtype {ds.dtype}, expected integers")
    return ds[()].astype(np.int64)


def _read_label_h5(path: str) -> dict[str, np.ndarray]:
    try:
        with h5py.File(path, "r") as f:
            out = {
                n: _read_int_dataset(path, f, n, 2 if n == "labels" else 1)
                for n in _REQUIRED
            }
            if "label_length" in f:
                out["label_length"] = _read_int_dataset(path, f, "label_length", 1)
            return out
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except InputError:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, RuntimeError, ...
        raise InputError(f"{path}: not a readable HDF5 label file ({e})") from None


def _check_labels(
    path: str, arrays: dict, n_images: int, vocab_size: int, json_path: str
) -> None:
    """Checks the label file at `path` against the json at `json_path` (its
    image count and vocabulary); cross-file errors name both files."""
    labels, start, end = (arrays[k] for k in _REQUIRED)
    m = labels.shape[0]
    if len(start) != n_images or len(end) != n_images:
        raise InputError(
            f"{path}: label_start_ix/label_end_ix have {len(start)}/{len(end)} rows "
            f"but the json {json_path} lists {n_images} images; expected equal"
        )
    bad = np.flatnonzero((start < 1) | (end > m) | (end < start))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{path}: image row {i} has label_start_ix={start[i]}, label_end_ix="
            f"{end[i]}; expected 1 <= start <= end <= {m} (1-based, inclusive)"
        )
    if labels.size and (labels.min() < 0 or labels.max() > vocab_size):
        raise InputError(
            f"{path}: labels hold word ids in [{labels.min()}, {labels.max()}]; "
            f"expected 0..{vocab_size} (the vocabulary of ix_to_word in {json_path})"
        )
    length = arrays["label_length"]
    if length.shape != (m,):
        raise InputError(
            f"{path}: label_length has shape {length.shape}, expected ({m},)"
        )


def load_cocotalk(json_path: str, label_h5_path: str) -> CocoTalk:
    """Reads and checks a cocotalk json + label h5 pair."""
    data = read_json(json_path)
    if not isinstance(data, dict) or "ix_to_word" not in data or "images" not in data:
        raise InputError(
            f"{json_path}: expected an object with 'ix_to_word' and 'images' "
            "(a cocotalk json from prepro_labels)"
        )
    ix_to_word = _parse_ix_to_word(json_path, data["ix_to_word"])
    images = _parse_images(json_path, data["images"])
    arrays = _read_label_h5(label_h5_path)
    if "label_length" not in arrays:  # older files: count words up to the first 0
        nonzero = arrays["labels"] != 0
        arrays["label_length"] = np.where(
            nonzero.all(1), nonzero.shape[1], nonzero.argmin(1)
        )
    _check_labels(label_h5_path, arrays, len(images), len(ix_to_word), json_path)
    return CocoTalk(
        ix_to_word=ix_to_word,
        images=images,
        labels=arrays["labels"].astype(np.int32),
        label_start_ix=arrays["label_start_ix"],
        label_end_ix=arrays["label_end_ix"],
        label_length=arrays["label_length"].astype(np.int32),
        json_path=json_path,
    )


def split_indices(cocotalk: CocoTalk, split: str) -> np.ndarray:
    """Image rows (int64) of `split`; 'train' includes 'restval', as upstream."""
    splits = [img["split"] for img in cocotalk.images]
    wanted = {"train", "restval"} if split == "train" else {split}
    rows = np.array([i for i, s in enumerate(splits) if s in wanted], np.int64)
    if not rows.size:
        raise InputError(
            f"{cocotalk.json_path or 'cocotalk json'}: split {split!r} has no images; "
            f"available splits: {sorted(set(map(str, splits)))}"
        )
    return rows


def references(cocotalk: CocoTalk, row: int) -> np.ndarray:
    """The (n_i, L) int32 reference labels of image row `row`."""
    start = int(cocotalk.label_start_ix[row]) - 1
    return cocotalk.labels[start : int(cocotalk.label_end_ix[row])]


def decode_tokens(ix_to_word: dict[int, str], ids) -> str:
    """Words of `ids` up to the first 0 (EOS / pad), joined by spaces."""
    words = []
    for i in np.asarray(ids).tolist():
        if i == 0:
            break
        if i not in ix_to_word:
            raise InputError(
                f"word id {i} is not in the vocabulary 1..{len(ix_to_word)}"
            )
        words.append(ix_to_word[i])
    return " ".join(words)


def encode_words(wtoi: dict[str, int], words) -> np.ndarray:
    """int32 ids of `words` (a list, or a string split on spaces); unknown -> UNK."""
    if isinstance(words, str):
        words = words.split()
    unk = wtoi.get("UNK")
    ids = []
    for w in words:
        if w not in wtoi and unk is None:
            raise InputError(f"word {w!r} is not in the vocabulary, which has no UNK")
        ids.append(wtoi.get(w, unk))
    return np.asarray(ids, np.int32)
