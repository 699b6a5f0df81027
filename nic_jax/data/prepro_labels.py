"""Karpathy json -> cocotalk json + `_label.h5`, as self-critical.pytorch does it.

The algorithm of `scripts/prepro_labels.py` (Ruotian Luo, self-critical.pytorch, after
Karpathy's neuraltalk2), so that files written here and there are interchangeable:

* the vocabulary is every token seen more than `word_count_threshold` times over all
  splits, in first-seen order, plus a final `UNK` when any word was dropped;
* `labels` (M, max_length) uint32 are word ids (1-based, 0 pads), truncated;
* `label_start_ix` / `label_end_ix` (N,) are 1-based inclusive row ranges per image;
* `label_length` (M,) is min(max_length, number of tokens).
"""

import json
import os

import h5py
import numpy as np
from PIL import Image

from nic_jax.data import karpathy
from nic_jax.errors import InputError

UNK = "UNK"


def build_vocab(images: list[dict], threshold: int) -> tuple[list[str], list]:
    """Returns (vocab, final_captions); rare words (count <= threshold) become UNK.

    `final_captions[i][j]` is the token list of sentence j of image i.
    """
    counts: dict[str, int] = {}
    for img in images:
        for sent in img["sentences"]:
            for w in sent["tokens"]:
                counts[w] = counts.get(w, 0) + 1
    vocab = [w for w, n in counts.items() if n > threshold]
    if any(n <= threshold for n in counts.values()):
        vocab.append(UNK)
    final_captions = [
        [
            [w if counts[w] > threshold else UNK for w in sent["tokens"]]
            for sent in img["sentences"]
        ]
        for img in images
    ]
    return vocab, final_captions


def encode_captions(final_captions: list, wtoi: dict[str, int], max_length: int):
    """Returns (labels, label_start_ix, label_end_ix, label_length), all uint32.

    Shapes (M, L), (N,), (N,), (M,) for N images with M captions in all; start/end
    are 1-based and inclusive, as in the Lua/PyTorch peers.
    """
    n_caps = [len(caps) for caps in final_captions]
    labels = np.zeros((sum(n_caps), max_length), np.uint32)
    label_length = np.zeros(sum(n_caps), np.uint32)
    row = 0
    for caps in final_captions:
        for caption in caps:
            ids = [wtoi[w] for w in caption[:max_length]]
            labels[row, : len(ids)] = ids
            label_length[row] = min(max_length, len(caption))
            row += 1
    end = np.cumsum(n_caps, dtype=np.int64)
    label_start_ix = (end - np.asarray(n_caps, np.int64) + 1).astype(np.uint32)
    return labels, label_start_ix, end.astype(np.uint32), label_length


def _image_size(images_root: str, img: dict, where: str) -> tuple[int, int]:
    path = os.path.join(images_root, img.get("filepath", ""), img.get("filename", ""))
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as e:
        raise InputError(f"{where}: cannot read image {path} ({e})") from None


def _output_images(source: str, images: list[dict], images_root: str) -> list[dict]:
    out = []
    for i, img in enumerate(images):
        jimg = {"split": img["split"]}
        if "filename" in img:
            jimg["file_path"] = os.path.join(img.get("filepath", ""), img["filename"])
        jimg["id"] = karpathy.image_id(img)
        if images_root:
            jimg["width"], jimg["height"] = _image_size(
                images_root, img, f"{source}: images[{i}]"
            )
        out.append(jimg)
    return out


def _atomic_write(path: str, write_fn) -> None:
    """Writes through `write_fn(tmp_path)` then renames, so readers never see half."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_h5(path: str, arrays: dict) -> None:
    with h5py.File(path, "w") as f:
        for name, data in arrays.items():
            f.create_dataset(name, dtype="uint32", data=data)


def _write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def prepro_labels(
    input_json: str,
    output_json: str,
    output_h5: str,
    max_length: int = 16,
    word_count_threshold: int = 5,
    images_root: str = "",
) -> None:
    """Writes `output_json` and `<output_h5>_label.h5` from a Karpathy json."""
    if max_length < 1:
        raise InputError(f"max_length is {max_length}, expected >= 1")
    images = karpathy.load_karpathy(input_json)
    if not images:
        raise InputError(f"{input_json}: 'images' is empty, expected images")
    vocab, final_captions = build_vocab(images, word_count_threshold)
    wtoi = {w: i + 1 for i, w in enumerate(vocab)}
    labels, start, end, length = encode_captions(final_captions, wtoi, max_length)
    out = {
        "ix_to_word": {i + 1: w for i, w in enumerate(vocab)},
        "images": _output_images(input_json, images, images_root),
    }
    arrays = {
        "labels": labels,
        "label_start_ix": start,
        "label_end_ix": end,
        "label_length": length,
    }
    _atomic_write(f"{output_h5}_label.h5", lambda p: _write_h5(p, arrays))
    _atomic_write(output_json, lambda p: _write_json(p, out))
