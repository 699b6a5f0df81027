"""Features for a list of image files, and self-critical's `prepro_feats.py` output.

`iter_features` loads and normalises the images, runs same-sized ones together
(one compilation per image size; no resize unless asked) and yields each image's
fc (2048,) and att (att_size**2, 2048) features. `write_feature_dirs` writes them as
`<output_dir>_fc/<id>.npy` and `<output_dir>_att/<id>.npz` (key `feat`), the
cocobu layout the loaders read; ids are the Karpathy json's `cocoid`/`imgid` when
`input_json` is given (as upstream), else the file names without extension (the
training loaders want integer ids: name the files by id, or give the json).
"""

import os

import numpy as np
from tqdm import tqdm

from nic_jax.data import karpathy
from nic_jax.encoders.encoder import build_encoder
from nic_jax.encoders.images import list_images, load_image, normalize
from nic_jax.encoders.weights import load_weights
from nic_jax.errors import InputError


def iter_features(
    encoder, params, paths, att_size=14, image_size=0, batch_size=8, desc="features"
):
    """Yields (index into `paths`, fc (2048,), att (att_size**2, 2048) or None).

    Images of one size run together, `batch_size` at a time; a last, smaller batch
    is zero-padded to a power of two, so a size compiles at most log2(batch_size)
    + 1 times.
    """
    pending = {}  # image shape -> [(index, normalised image)]

    def flush(shape):
        rows = pending.pop(shape)
        images = np.stack([image for _, image in rows])
        padded = min(batch_size, 1 << (len(rows) - 1).bit_length())
        images = np.pad(images, [(0, padded - len(rows))] + [(0, 0)] * 3)
        fc, att = encoder.features(params, images, att_size)
        fc, att = np.asarray(fc), None if att is None else np.asarray(att)
        for row, (index, _) in enumerate(rows):
            yield index, fc[row], None if att is None else att[row]

    for index, path in enumerate(tqdm(paths, desc=desc, mininterval=5)):
        image = normalize(load_image(path, image_size))
        pending.setdefault(image.shape, []).append((index, image))
        if len(pending[image.shape]) == batch_size:
            yield from flush(image.shape)
    for shape in list(pending):
        yield from flush(shape)


def _karpathy_entries(input_json: str, images_root: str) -> list[tuple[str, int]]:
    """(image path, id) of every image of a Karpathy dataset json."""
    entries = []
    for i, img in enumerate(karpathy.load_karpathy(input_json)):
        if "filename" not in img:
            raise InputError(f"{input_json}: images[{i}] has no 'filename'")
        rel = os.path.join(img.get("filepath", ""), img["filename"])
        entries.append((os.path.join(images_root, rel), karpathy.image_id(img)))
    return entries


def _folder_entries(images_root: str) -> list[tuple[str, str]]:
    """(image path, file stem) of every image under `images_root`."""
    entries, seen = [], {}
    for rel in list_images(images_root):
        stem = os.path.splitext(os.path.basename(rel))[0]
        if stem in seen:
            raise InputError(
                f"{images_root}: {seen[stem]!r} and {rel!r} would both be id "
                f"{stem!r}; rename one, or give --input_json with image ids"
            )
        seen[stem] = rel
        entries.append((os.path.join(images_root, rel), stem))
    return entries


def write_feature_dirs(
    images_root: str,
    weights: str,
    output_dir: str,
    model: str = "resnet101",
    variant: str = "caffe",
    att_size: int = 14,
    input_json: str = "",
    image_size: int = 0,
    batch_size: int = 8,
) -> tuple[str, str]:
    """Writes `<output_dir>_fc/<id>.npy` (2048,) and `<output_dir>_att/<id>.npz`
    (`feat`: (att_size**2, 2048)) for every image; returns the two directories."""
    if att_size < 1:
        raise InputError(f"--att_size={att_size}: must be >= 1 (14 upstream)")
    encoder = build_encoder(model, variant)
    params = load_weights(weights, model, variant)
    if input_json:
        entries = _karpathy_entries(input_json, images_root)
    else:
        entries = _folder_entries(images_root)
    fc_dir, att_dir = output_dir + "_fc", output_dir + "_att"
    os.makedirs(fc_dir, exist_ok=True)
    os.makedirs(att_dir, exist_ok=True)
    paths = [path for path, _ in entries]
    for index, fc, att in iter_features(
        encoder, params, paths, att_size, image_size, batch_size, desc="prepro feats"
    ):
        image_id = entries[index][1]
        np.save(os.path.join(fc_dir, f"{image_id}.npy"), fc)
        np.savez_compressed(os.path.join(att_dir, f"{image_id}.npz"), feat=att)
    return fc_dir, att_dir
