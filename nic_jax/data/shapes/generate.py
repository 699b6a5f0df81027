"""Generates the shapes dataset into a cache directory, atomically and reproducibly.

`generate(spec)` returns `<cache>/shapes-<hash of spec>/` holding

* `dataset_shapes.json`: Karpathy format, 5 references and the scene per image, ids
  0..N-1 over train, then val, then test;
* `images/<id>.png` (when `spec.write_images`);
* `feats_<split>.h5` with `image_id` (N,) int64, `fc` (N, D), `att` (N, K, D) and
  `box` (N, K, 4), all float32 (layout "h5" or "both");
* `shapes_fc/<id>.npy` (D,), `shapes_att/<id>.npz` key `feat` (K, D) and
  `shapes_box/<id>.npy` (K, 4): the cocobu layout (layout "dirs" or "both");
* `manifest.json`: the spec; written last, so its presence means a complete dataset.

The dataset is built in a temporary directory beside the final one and renamed into
place, so a killed run leaves no half dataset under the final name, and of
concurrent runs the first rename wins while the others use its result. Every image
draws from its own generators, `np.random.default_rng([seed, image_id, stream])`, so
the output does not depend on chunking or on the number of worker processes.
"""

import collections
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
import sys
import types
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from absl import logging
from tqdm import tqdm

from nic_jax.data.shapes import cache, captions, features, render, scenes
from nic_jax.data.shapes.spec import SPLITS, ShapesSpec
from nic_jax.data.shapes.writers import FeatureWriter

FORMAT_VERSION = 1
DATASET_JSON = "dataset_shapes.json"
IMAGES = "images"
_CHUNK = 250  # images per work unit
_SCENE, _CAPTION, _RENDER, _REGIONS, _NOISE = range(5)  # per-image RNG streams


def _rng(spec: ShapesSpec, image_id: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, image_id, stream])


def _entry(spec: ShapesSpec, split: str, image_id: int, scene, refs) -> dict:
    sentids = [image_id * captions.NUM_REFERENCES + j for j in range(len(refs))]
    sentences = [
        {"tokens": list(c.tokens), "raw": c.raw, "imgid": image_id, "sentid": s}
        for c, s in zip(refs, sentids)
    ]
    return {
        "split": split,
        "filepath": IMAGES,
        "filename": f"{image_id}.png",
        "imgid": image_id,
        "cocoid": image_id,
        "sentids": sentids,
        "sentences": sentences,
        "scene": scene.to_json(),
    }


def make_chunk(spec: ShapesSpec, split: str, ids: range, image_dir: str | None):
    """Scenes, references, images (written) and region codes of image ids `ids`.

    Returns (Karpathy entries, (n, K, A) attribute codes, (n, K, 4) boxes).
    """
    entries, codes, boxes = [], [], []
    for i in ids:
        scene = scenes.sample_scene(_rng(spec, i, _SCENE), spec.image_size)
        refs = captions.references(scene, _rng(spec, i, _CAPTION))
        entries.append(_entry(spec, split, i, scene, refs))
        if image_dir is not None:
            image = render.render(scene, _rng(spec, i, _RENDER))
            pathlib.Path(image_dir, f"{i}.png").write_bytes(render.png_bytes(image))
        code, box = features.scene_regions(
            scene, spec.num_regions, _rng(spec, i, _REGIONS)
        )
        codes.append(code)
        boxes.append(box)
    return entries, np.stack(codes), np.stack(boxes)


def _tasks(spec: ShapesSpec, image_dir: str | None) -> list[tuple]:
    tasks, start = [], 0
    for split, count in zip(SPLITS, spec.split_sizes):
        for lo in range(start, start + count, _CHUNK):
            hi = min(lo + _CHUNK, start + count)
            tasks.append((spec, split, range(lo, hi), image_dir))
        start += count
    return tasks


def _chunks(tasks: list[tuple], workers: int):
    """make_chunk over `tasks`, in order; in worker processes when worth it."""
    if workers <= 1 or sum(len(task[2]) for task in tasks) < 2 * _CHUNK:
        yield from (make_chunk(*task) for task in tasks)
        return
    # spawn, not fork: the caller may hold JAX's threads, which fork would break.
    # An executor (not a Pool) fails fast if a worker dies instead of respawning.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx)
    try:
        with _main_module_hidden():  # workers start at the first submissions
            futures = collections.deque(pool.submit(make_chunk, *t) for t in tasks)
        while futures:
            yield futures.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)


@contextlib.contextmanager
def _main_module_hidden():
    """Starts spawned workers as from an interactive session.

    Spawned children re-import the parent's `__main__` unless it has no file or
    spec. The workers need only this module; hiding `__main__` while they start
    keeps them from re-running a caller's unguarded script or importing its heavy
    modules (a trainer's JAX).
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def chunk_features(spec: ShapesSpec, ids: range, codes: np.ndarray):
    """(n, D) fc and (n, K, D) att features of ids from their (n, K, A) codes."""
    shape = (spec.num_regions, spec.feat_dim)
    noise = np.stack(
        [_rng(spec, i, _NOISE).standard_normal(shape, np.float32) for i in ids]
    )
    noise *= np.float32(spec.noise)
    proj = features.projection(spec.seed, spec.feat_dim)
    att = features.region_features(codes, noise, proj)
    return features.pooled(att), att


def _write_dataset(spec: ShapesSpec, out: pathlib.Path, workers: int) -> None:
    image_dir = None
    if spec.write_images:
        (out / IMAGES).mkdir()
        image_dir = str(out / IMAGES)
    tasks = _tasks(spec, image_dir)
    entries = []
    bar = tqdm(total=spec.num_images, desc="shapes dataset", unit="img", leave=False)
    with FeatureWriter(spec, out) as writer, bar:
        for (_, split, ids, _), chunk in zip(tasks, _chunks(tasks, workers)):
            chunk_entries, codes, boxes = chunk
            entries.extend(chunk_entries)
            fc, att = chunk_features(spec, ids, codes)
            writer.write(split, ids, fc, att, boxes)
            bar.update(len(ids))
    data = {"dataset": "shapes", "images": entries}
    (out / DATASET_JSON).write_text(json.dumps(data), encoding="utf-8")


def spec_hash(spec: ShapesSpec) -> str:
    """12 hex digits naming the dataset of `spec` (and of this format version)."""
    blob = json.dumps([FORMAT_VERSION, dataclasses.asdict(spec)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def dataset_dir(spec: ShapesSpec, cache_dir=None) -> pathlib.Path:
    """Where `generate(spec, cache_dir)` puts (or finds) the dataset."""
    root = pathlib.Path(cache_dir) if cache_dir else cache.default_cache_dir()
    return root / f"shapes-{spec_hash(spec)}"


def manifest(spec: ShapesSpec) -> dict:
    return {"format_version": FORMAT_VERSION, "spec": dataclasses.asdict(spec)}


def generate(
    spec: ShapesSpec | None = None, cache_dir=None, workers: int | None = None
) -> pathlib.Path:
    """The dataset root of `spec` under `cache_dir`, generated unless cached.

    Args:
      spec: what to generate; `ShapesSpec()` (10,000 images) when None.
      cache_dir: the cache; `default_cache_dir()` when None or "".
      workers: rendering processes; default min(8, CPUs). The output is the same
        for any number.
    """
    spec = spec or ShapesSpec()
    workers = workers or min(8, os.cpu_count() or 1)
    root = dataset_dir(spec, cache_dir)

    def build_fn(tmp: pathlib.Path) -> None:
        logging.info("generating %d shapes images into %s", spec.num_images, root)
        _write_dataset(spec, tmp, workers)

    return cache.build(root, manifest(spec), build_fn)
