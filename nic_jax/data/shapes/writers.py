"""Writes shapes features in the two layouts `nic_jax.data.features` reads.

* h5 fast path: `feats_<split>.h5` with `image_id` (N,) int64, `fc` (N, D),
  `att` (N, K, D) and `box` (N, K, 4), float32, contiguous, filled chunk by chunk.
* cocobu directories: `shapes_fc/<id>.npy` (D,), `shapes_att/<id>.npz` key `feat`
  (K, D), `shapes_box/<id>.npy` (K, 4).
"""

import pathlib

import h5py
import numpy as np

from nic_jax.data.shapes.spec import SPLITS, ShapesSpec

FC_DIR, ATT_DIR, BOX_DIR = "shapes_fc", "shapes_att", "shapes_box"


def h5_name(split: str) -> str:
    return f"feats_{split}.h5"


class FeatureWriter:
    """Context manager: `write(split, ids, fc, att, box)` chunk by chunk, in order."""

    def __init__(self, spec: ShapesSpec, root: pathlib.Path):
        self.spec, self.root = spec, pathlib.Path(root)
        self.files: dict[str, h5py.File] = {}
        self.starts = dict(zip(SPLITS, np.cumsum([0, *spec.split_sizes[:-1]])))

    def __enter__(self):
        if self.spec.layout in ("h5", "both"):
            for split, n in zip(SPLITS, self.spec.split_sizes):
                self.files[split] = self._create_h5(split, n)
        if self.spec.layout in ("dirs", "both"):
            for name in (FC_DIR, ATT_DIR, BOX_DIR):
                (self.root / name).mkdir()
        return self

    def __exit__(self, *exc):
        for f in self.files.values():
            f.close()

    def _create_h5(self, split: str, n: int) -> h5py.File:
        k, d = self.spec.num_regions, self.spec.feat_dim
        f = h5py.File(self.root / h5_name(split), "w")
        f.create_dataset("image_id", (n,), np.int64)
        f.create_dataset("fc", (n, d), np.float32)
        f.create_dataset("att", (n, k, d), np.float32)
        f.create_dataset("box", (n, k, 4), np.float32)
        return f

    def write(self, split: str, ids: range, fc, att, box) -> None:
        """Features of consecutive image ids `ids` of `split`."""
        if split in self.files:
            f, lo = self.files[split], ids.start - self.starts[split]
            rows = slice(lo, lo + len(ids))
            f["image_id"][rows] = np.asarray(ids, np.int64)
            f["fc"][rows], f["att"][rows], f["box"][rows] = fc, att, box
        if self.spec.layout in ("dirs", "both"):
            for i, image_id in enumerate(ids):
                np.save(self.root / FC_DIR / f"{image_id}.npy", fc[i])
                np.savez(self.root / ATT_DIR / f"{image_id}.npz", feat=att[i])
                np.save(self.root / BOX_DIR / f"{image_id}.npy", box[i])
