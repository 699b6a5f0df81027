"""Feature stores: bottom-up image features by image id, from a directory or one h5.

Two layouts, one interface (`FeatureStore`):

* `DirFeatures`: self-critical.pytorch's cocobu layout, `<fc_dir>/<id>.npy` (D,),
  `<att_dir>/<id>.npz` with key `feat` (K, D) (or `<id>.npy`), `<box_dir>/<id>.npy`
  (K, 4); features of Anderson et al., "Bottom-Up and Top-Down Attention for Image
  Captioning and VQA" (CVPR 2018).
* `H5Features`: one h5 per split with `image_id` (N,), `fc` (N, D) and optional `att`
  (N, K, D) and `box` (N, K, 4): the fast path, written by the shapes dataset.

Reads are bulk (`fc(ids)` for many ids at once) and keep the order of `ids`,
duplicates included. Every bad file fails with `InputError` naming it.

Region counts: an h5 holds one K for all images (every region is real). The
directory layout may hold a different K per image (the "adaptive" bottom-up
features have 10..100 regions); `att_and_mask` pads them to a common K, rounded
up to a multiple of `REGION_BUCKET` when the images of one read differ (so a
jitted step meets a few shapes, not one per batch), and returns the (n, K) mask
of real regions that the attention models apply (softmax, mask, renormalise).
"""

import concurrent.futures
import functools
import os
from typing import Protocol

import h5py
import numpy as np

from nic_jax.errors import InputError

_NUMERIC = "fiu"  # float, signed and unsigned integer dtypes
_THREADS = min(16, os.cpu_count() or 1)
_H5_LAYOUT = {"fc": "(N, D)", "att": "(N, K, D)", "box": "(N, K, 4)"}
REGION_BUCKET = 8


class FeatureStore(Protocol):
    """What the data loader reads features through."""

    @property
    def fc_dim(self) -> int: ...

    @property
    def att_shape(self) -> tuple[int, int] | None: ...

    def fc(self, ids) -> np.ndarray: ...

    def att(self, ids) -> np.ndarray: ...

    def att_and_mask(self, ids) -> tuple[np.ndarray, np.ndarray | None]: ...

    def box(self, ids) -> np.ndarray: ...


def _as_ids(ids) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64).reshape(-1)


def _load_npy_or_npz(path: str, image_id) -> np.ndarray:
    """One array from `.npy`, or key `feat` of `.npz`; all failures as InputError."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no feature file for image id {image_id}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            return data
        with data:
            if "feat" not in data.files:
                raise InputError(
                    f"{path}: npz has keys {data.files}, expected 'feat' (K, D)"
                )
            return data["feat"]
    except InputError:
        raise
    except Exception as e:  # truncated/corrupt: ValueError, EOFError, zlib, zip...
        raise InputError(
            f"{path}: corrupt or truncated ({type(e).__name__}: {e})"
        ) from None


def _checked(path: str, arr: np.ndarray, expected: tuple) -> np.ndarray:
    """`arr` as float32 when its shape matches `expected` (None: any size)."""
    ok = arr.ndim == len(expected) and all(
        e is None or e == s for e, s in zip(expected, arr.shape, strict=True)
    )
    if not ok:
        want = tuple("K" if e is None else e for e in expected)
        raise InputError(f"{path}: found shape {arr.shape}, expected {want}")
    if arr.dtype.kind not in _NUMERIC:
        raise InputError(f"{path}: found dtype {arr.dtype}, expected a float array")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: found NaN or infinite values, expected finite ones")
    return arr


def padded_regions(counts) -> int:
    """The common K of images with `counts` regions: their K when all agree,
    else the largest rounded up to a multiple of `REGION_BUCKET`."""
    counts = list(counts)
    if not counts:
        return 0
    if min(counts) == max(counts):
        return counts[0]
    return -(-max(counts) // REGION_BUCKET) * REGION_BUCKET


def _pad_stack(arrays: list[np.ndarray], trailing: tuple, k: int) -> np.ndarray:
    """Stacks (K_i, ...) arrays into (n, k, ...) float32, zero-padded."""
    out = np.zeros((len(arrays), k, *trailing), np.float32)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return out


def region_mask(counts, k: int) -> np.ndarray:
    """(n, k) float32: 1 for each image's first counts[i] regions, else 0."""
    return (np.arange(k)[None] < np.asarray(counts)[:, None]).astype(np.float32)


def _first_file(directory: str, suffixes: tuple) -> str:
    with os.scandir(directory) as it:
        for entry in it:
            if entry.name.endswith(suffixes) and entry.is_file():
                return entry.path
    raise InputError(f"{directory}: no {' or '.join(suffixes)} feature files found")


class DirFeatures:
    """self-critical's cocobu directories: one file per image and kind.

    Images with different region counts K are zero-padded to the largest K among
    the ids of one call (the bottom-up "adaptive" features have 10..100 regions).
    """

    def __init__(self, fc_dir: str, att_dir: str = "", box_dir: str = ""):
        for name, d in (("fc_dir", fc_dir), ("att_dir", att_dir), ("box_dir", box_dir)):
            if (d or name == "fc_dir") and not os.path.isdir(d):
                raise InputError(f"{name} {d!r} is not a directory of feature files")
        self.fc_dir, self.att_dir, self.box_dir = fc_dir, att_dir, box_dir

    @functools.cached_property
    def fc_dim(self) -> int:
        path = _first_file(self.fc_dir, (".npy",))
        return int(_checked(path, _load_npy_or_npz(path, "?"), (None,)).shape[0])

    @functools.cached_property
    def att_shape(self) -> tuple[int, int] | None:
        if not self.att_dir:
            return None
        path = _first_file(self.att_dir, (".npz", ".npy"))
        return _checked(path, _load_npy_or_npz(path, "?"), (None, None)).shape

    def _att_path(self, image_id) -> str:
        npz = os.path.join(self.att_dir, f"{image_id}.npz")
        npy = npz[:-1] + "y"
        return npy if not os.path.isfile(npz) and os.path.isfile(npy) else npz

    def _read_all(self, read_fn, ids) -> list[np.ndarray]:
        ids = _as_ids(ids).tolist()
        if len(ids) < 64:
            return [read_fn(i) for i in ids]
        with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
            return list(pool.map(read_fn, ids))

    def _fc_one(self, image_id) -> np.ndarray:
        path = os.path.join(self.fc_dir, f"{image_id}.npy")
        return _checked(path, _load_npy_or_npz(path, image_id), (self.fc_dim,))

    def _att_one(self, image_id) -> np.ndarray:
        path = self._att_path(image_id)
        arr = _load_npy_or_npz(path, image_id)
        return _checked(path, arr, (None, self.att_shape[1]))

    def _box_one(self, image_id) -> np.ndarray:
        path = os.path.join(self.box_dir, f"{image_id}.npy")
        return _checked(path, _load_npy_or_npz(path, image_id), (None, 4))

    def fc(self, ids) -> np.ndarray:
        """(n, D) float32 pooled features of `ids`, in order."""
        dim = self.fc_dim  # the first file is read once, before the threads start
        rows = self._read_all(self._fc_one, ids)
        return np.stack(rows) if rows else np.zeros((0, dim), np.float32)

    def att_and_mask(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """(n, K, D) float32 region features of `ids`, zero-padded over K to
        `padded_regions`, and the (n, K) float32 mask of real regions."""
        if not self.att_dir:
            raise InputError("region features asked for, but no att_dir was given")
        dim = self.att_shape[1]
        arrays = self._read_all(self._att_one, ids)
        counts = [a.shape[0] for a in arrays]
        k = padded_regions(counts)
        return _pad_stack(arrays, (dim,), k), region_mask(counts, k)

    def att(self, ids) -> np.ndarray:
        """(n, K, D) float32 region features of `ids` (`att_and_mask`'s first)."""
        return self.att_and_mask(ids)[0]

    def box(self, ids) -> np.ndarray:
        """(n, K, 4) float32 region boxes of `ids`, zero-padded over K."""
        if not self.box_dir:
            raise InputError("region boxes asked for, but no box_dir was given")
        arrays = self._read_all(self._box_one, ids)
        return _pad_stack(arrays, (4,), padded_regions(a.shape[0] for a in arrays))


class H5Features:
    """One h5 per split: `image_id` (N,), `fc` (N, D), optional `att`, `box`."""

    def __init__(self, path: str):
        self.path = path
        image_ids, self._shapes = self._guarded(self._read_layout)
        self._ids_by_row = image_ids
        self._order = np.argsort(image_ids, kind="stable")
        self._sorted = image_ids[self._order]
        dup = np.flatnonzero(np.diff(self._sorted) == 0)
        if dup.size:
            raise InputError(f"{path}: image_id {self._sorted[dup[0]]} appears twice")

    def _guarded(self, fn, *args):
        """Runs fn(open_file, *args), turning h5py/OS failures into InputError."""
        try:
            with h5py.File(self.path, "r") as f:
                return fn(f, *args)
        except InputError:
            raise
        except FileNotFoundError:
            raise InputError(f"{self.path}: feature file not found") from None
        except Exception as e:  # OSError, KeyError, RuntimeError from corrupt files
            raise InputError(
                f"{self.path}: not a readable HDF5 feature file "
                f"({type(e).__name__}: {e})"
            ) from None

    def _dataset(self, f: h5py.File, name: str, ndim: int, kinds: str):
        ds = f.get(name)
        if ds is None or not isinstance(ds, h5py.Dataset):
            raise InputError(
                f"{self.path}: dataset '{name}' is missing; found {sorted(f.keys())}"
            )
        if ds.ndim != ndim or ds.dtype.kind not in kinds:
            raise InputError(
                f"{self.path}: '{name}' has shape {ds.shape} dtype {ds.dtype}; "
                f"expected {ndim}-D of kind {kinds!r}"
            )
        return ds

    def _read_layout(self, f: h5py.File) -> tuple[np.ndarray, dict]:
        image_ids = self._dataset(f, "image_id", 1, "iu")[()].astype(np.int64)
        shapes = {"fc": self._dataset(f, "fc", 2, _NUMERIC).shape}
        for name in ("att", "box"):
            if name in f:
                shapes[name] = self._dataset(f, name, 3, _NUMERIC).shape
        for name, shape in shapes.items():
            if shape[0] != len(image_ids) or (name == "box" and shape[2] != 4):
                raise InputError(
                    f"{self.path}: '{name}' has shape {shape}; expected "
                    f"{_H5_LAYOUT[name]} with N={len(image_ids)} (rows of image_id)"
                )
        return image_ids, shapes

    @property
    def fc_dim(self) -> int:
        return int(self._shapes["fc"][1])

    @property
    def att_shape(self) -> tuple[int, int] | None:
        shape = self._shapes.get("att")
        return None if shape is None else tuple(int(s) for s in shape[1:])

    def rows(self, ids) -> np.ndarray:
        """Row numbers in the file of image ids `ids`."""
        ids = _as_ids(ids)
        if not len(self._sorted):
            raise InputError(f"{self.path}: holds no images (image_id is empty)")
        pos = np.searchsorted(self._sorted, ids).clip(0, len(self._sorted) - 1)
        found = self._sorted[pos] == ids
        if not found.all():
            missing = int(ids[np.argmin(found)])
            raise InputError(f"{self.path}: no features for image id {missing}")
        return self._order[pos]

    def _read(self, name: str, ids) -> np.ndarray:
        if name not in self._shapes:
            raise InputError(
                f"{self.path}: dataset '{name}' is missing; found "
                f"{sorted(self._shapes) + ['image_id']}"
            )
        uniq, inverse = np.unique(self.rows(ids), return_inverse=True)
        data = self._guarded(_read_rows, name, uniq).astype(np.float32, copy=False)
        finite = np.isfinite(data).all(axis=tuple(range(1, data.ndim)))
        if not finite.all():
            row = int(uniq[np.argmin(finite)])
            raise InputError(
                f"{self.path}: '{name}' of image id {self._ids_by_row[row]} "
                "holds NaN or infinite values; expected finite features"
            )
        return data[inverse]

    def fc(self, ids) -> np.ndarray:
        """(n, D) float32 pooled features of `ids`, in order."""
        return self._read("fc", ids)

    def att(self, ids) -> np.ndarray:
        """(n, K, D) float32 region features of `ids`, in order."""
        return self._read("att", ids)

    def att_and_mask(self, ids) -> tuple[np.ndarray, None]:
        """`att(ids)` and no mask: every image of the file has K real regions."""
        return self.att(ids), None

    def box(self, ids) -> np.ndarray:
        """(n, K, 4) float32 region boxes of `ids`, in order."""
        return self._read("box", ids)


def _read_rows(f: h5py.File, name: str, rows: np.ndarray) -> np.ndarray:
    """Rows (sorted, unique) of dataset `name`: one slab read when they are dense."""
    ds = f[name]
    if not len(rows):
        return np.zeros((0, *ds.shape[1:]), ds.dtype)
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if len(rows) * 4 >= hi - lo:  # dense: one contiguous read beats point selection
        return ds[lo:hi][rows - lo]
    return ds[rows]


def open_features(path_or_dir: str, att_dir: str = "", box_dir: str = ""):
    """A `FeatureStore` for an `.h5` file or a cocobu fc directory."""
    path = os.fspath(path_or_dir)
    if path.endswith((".h5", ".hdf5")):
        if att_dir or box_dir:
            raise InputError(
                f"{path} is one h5 holding fc/att/box itself; att_dir={att_dir!r} "
                f"box_dir={box_dir!r} must be empty with it"
            )
        return H5Features(path)
    if os.path.isdir(path):
        return DirFeatures(path, att_dir, box_dir)
    raise InputError(
        f"features {path!r}: expected a directory of <id>.npy files or an .h5 file"
        + ("" if os.path.exists(path) else ", and it does not exist")
    )


def check_fc_dim(store, expected: int, source_name: str) -> None:
    """Raises unless the store's feature size D is the model's `fc_feat_size`."""
    if store.fc_dim != expected:
        raise InputError(
            f"feature size D of {source_name} is {store.fc_dim} but config "
            f"model.fc_feat_size is {expected}"
        )
