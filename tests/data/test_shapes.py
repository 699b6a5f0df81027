"""Tests of the shapes dataset: files, determinism, cache, captions, features."""

import dataclasses
import importlib
import json
import os
import re
import subprocess
import threading

import h5py
import numpy as np
import pytest
from PIL import Image

from nic_jax.data.features import open_features
from nic_jax.data.karpathy import load_karpathy
from nic_jax.data.shapes import ShapesSpec, cache, captions, generate, scenes

TINY = ShapesSpec(num_train=40, num_val=10, num_test=10, feat_dim=64, layout="both")
# The package's `generate` is the function; the module is reached by name.
generate_mod = importlib.import_module("nic_jax.data.shapes.generate")
SPLIT_IDS = {"train": range(0, 40), "val": range(40, 50), "test": range(50, 60)}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(TINY, tmp_path_factory.mktemp("cache"))


def _dataset(root):
    return json.loads((root / "dataset_shapes.json").read_text())


def test_files_shapes_and_dtypes(tiny_root):
    k, d = TINY.num_regions, TINY.feat_dim
    for split, ids in SPLIT_IDS.items():
        with h5py.File(tiny_root / f"feats_{split}.h5", "r") as f:
            assert f["image_id"].dtype == np.int64
            np.testing.assert_array_equal(f["image_id"][()], list(ids))
            expected = {"fc": (len(ids), d), "att": (len(ids), k, d)}
            expected["box"] = (len(ids), k, 4)
            for name, shape in expected.items():
                assert f[name].shape == shape and f[name].dtype == np.float32
            att, fc = f["att"][()], f["fc"][()]
        assert (att >= 0).all() and (att == 0).any()
        np.testing.assert_allclose(fc, att.mean(1), rtol=1e-5, atol=1e-6)
        i = ids[-1]
        np.testing.assert_array_equal(np.load(tiny_root / f"shapes_fc/{i}.npy"), fc[-1])
        with np.load(tiny_root / f"shapes_att/{i}.npz") as z:
            assert z["feat"].dtype == np.float32
            np.testing.assert_array_equal(z["feat"], att[-1])
        box = np.load(tiny_root / f"shapes_box/{i}.npy")
        assert box.shape == (k, 4) and box.dtype == np.float32
    image = Image.open(tiny_root / "images" / "59.png")
    assert image.size == (128, 128) and image.mode == "RGB"
    assert json.loads((tiny_root / cache.MANIFEST).read_text())["spec"]["seed"] == 0


def test_karpathy_json(tiny_root):
    data = _dataset(tiny_root)
    assert data["dataset"] == "shapes"
    images = data["images"]
    assert [img["imgid"] for img in images] == list(range(60))
    for img in images:
        i = img["imgid"]
        assert img["split"] == next(s for s, r in SPLIT_IDS.items() if i in r)
        assert (img["filepath"], img["filename"], img["cocoid"]) == (
            "images",
            f"{i}.png",
            i,
        )
        assert img["sentids"] == [5 * i + j for j in range(5)]
        for sent, sentid in zip(img["sentences"], img["sentids"]):
            assert (sent["imgid"], sent["sentid"]) == (i, sentid)
            raw = sent["raw"]
            assert raw[0].isupper() and raw.endswith(".")
            assert sent["tokens"] == re.sub(r"[^a-z0-9]", " ", raw.lower()).split()
        assert 1 <= len(img["scene"]["objects"]) <= 3
    assert len(load_karpathy(str(tiny_root / "dataset_shapes.json"))) == 60


def test_features_readable_by_both_stores(tiny_root):
    h5 = open_features(str(tiny_root / "feats_val.h5"))
    dirs = open_features(
        str(tiny_root / "shapes_fc"),
        str(tiny_root / "shapes_att"),
        str(tiny_root / "shapes_box"),
    )
    ids = [45, 41]
    np.testing.assert_array_equal(h5.att(ids), dirs.att(ids))
    np.testing.assert_array_equal(h5.box(ids), dirs.box(ids))


def test_object_boxes_are_regions(tiny_root):
    boxes = open_features(str(tiny_root / "feats_train.h5")).box(range(40))
    for img, box in zip(_dataset(tiny_root)["images"], boxes):
        for obj in img["scene"]["objects"]:
            assert np.isclose(box, obj["box"], atol=0.01).all(1).any()


def _same_outputs(root_a, root_b, with_images=True):
    assert (root_a / "dataset_shapes.json").read_bytes() == (
        root_b / "dataset_shapes.json"
    ).read_bytes()
    for split in SPLIT_IDS:
        name = f"feats_{split}.h5"
        with h5py.File(root_a / name) as a, h5py.File(root_b / name) as b:
            for key in ("image_id", "fc", "att", "box"):
                np.testing.assert_array_equal(a[key][()], b[key][()])
    if with_images:
        for i in (0, 33, 59):
            png = f"images/{i}.png"
            assert (root_a / png).read_bytes() == (root_b / png).read_bytes()


def test_deterministic_and_independent_of_workers(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setattr(generate_mod, "_CHUNK", 16)  # 5 chunks over 2 processes
    spec = ShapesSpec(num_train=40, num_val=10, num_test=10, feat_dim=64)
    _same_outputs(tiny_root, generate(spec, tmp_path / "a", workers=2))


def test_seed_changes_data(tiny_root, tmp_path):
    spec = dataclasses.replace(TINY, seed=1, write_images=False, layout="h5")
    other = generate(spec, tmp_path)
    assert other.name != tiny_root.name
    assert _dataset(other)["images"][0] != _dataset(tiny_root)["images"][0]


def test_cache_is_reused(tiny_root):
    stamp = (tiny_root / "dataset_shapes.json").stat().st_mtime_ns
    assert generate(TINY, tiny_root.parent) == tiny_root
    assert (tiny_root / "dataset_shapes.json").stat().st_mtime_ns == stamp


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_killed_run_leftovers_are_ignored_and_cleaned(tmp_path):
    spec = ShapesSpec(5, 2, 2, feat_dim=8, write_images=False)
    root = generate_mod.dataset_dir(spec, tmp_path)
    owner = f"{os.uname().nodename}~{_dead_pid()}~dead"
    leftover = tmp_path / f".{root.name}~{owner}~tmp"
    leftover.mkdir()
    (leftover / "dataset_shapes.json").write_text("{half")
    root.mkdir()  # a half dataset under the final name, without manifest
    (root / "dataset_shapes.json").write_text("{half")
    assert generate(spec, tmp_path) == root
    assert len(_dataset(root)["images"]) == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == [root.name]


def test_concurrent_generations_agree(tmp_path):
    spec = ShapesSpec(6, 2, 2, feat_dim=8, write_images=False)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(generate(spec, tmp_path)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert [p.name for p in tmp_path.iterdir()] == [results[0].name]
    assert cache.is_complete(results[0], generate_mod.manifest(spec))


def test_losing_a_race_keeps_the_winner(tmp_path):
    spec = ShapesSpec(5, 2, 2, feat_dim=8, write_images=False)
    root = generate_mod.dataset_dir(spec, tmp_path)

    def build_fn(tmp):  # another process publishes while this one builds
        generate(spec, tmp_path)
        (tmp / "loser").write_text("x")

    assert cache.build(root, generate_mod.manifest(spec), build_fn) == root
    assert not (root / "loser").exists()
    assert [p.name for p in tmp_path.iterdir()] == [root.name]


# Captions: checked against the scene by a parser written independently of them.
SHAPE_WORDS = {
    "circle": "circle", "disc": "circle", "square": "square", "box": "square",
    "triangle": "triangle", "star": "star", "hexagon": "hexagon",
    "diamond": "diamond", "rhombus": "diamond", "cross": "cross", "plus": "cross",
}  # fmt: skip
SINGULAR = set(SHAPE_WORDS)
SHAPE_WORDS.update(
    {w + ("es" if w[-1] in "xs" else "s"): s for w, s in SHAPE_WORDS.items()}
)
SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small"}
SIZE_WORDS.update({"large": "large", "big": "large"})
COUNTS = {"one": 1, "two": 2, "three": 3}
GENERIC = {"shape", "shapes", "object", "objects"}


def _scenes(n, seed=11):
    return [scenes.sample_scene(np.random.default_rng([seed, i])) for i in range(n)]


def _mentions(tokens):
    """(index, colour or None, shape, size or None, plural) of each shape noun."""
    out = []
    for i, tok in enumerate(tokens):
        if tok in SHAPE_WORDS:
            colour = tokens[i - 1] if tokens[i - 1] in scenes.COLOURS else None
            size = next(
                (SIZE_WORDS[t] for t in tokens[i - 2 : i] if t in SIZE_WORDS), None
            )
            plural = tok not in SINGULAR or tok == "plus" and tokens[i + 1] == "signs"
            out.append((i, colour, SHAPE_WORDS[tok], size, plural))
    return out


def _objects(scene, mention):
    _, colour, shape = mention[:3]
    return [o for o in scene.objects if o.shape == shape and colour in (None, o.colour)]


def _check_counts(scene, tokens):
    for i, tok in enumerate(tokens[:-1]):
        n = 2 if tokens[i : i + 3] == ["a", "pair", "of"] else COUNTS.get(tok)
        rest = tokens[i + 3 :] if tok == "a" else tokens[i + 1 :]
        if n is None:
            continue
        rest = rest[1:] if rest and rest[0] in SIZE_WORDS else rest
        colour = rest[0] if rest and rest[0] in scenes.COLOURS else None
        rest = rest[1:] if colour else rest
        if rest and rest[0] in SHAPE_WORDS:
            assert len(_objects(scene, (0, colour, SHAPE_WORDS[rest[0]]))) == n
        elif rest and rest[0] in GENERIC:
            assert sum(colour in (None, o.colour) for o in scene.objects) == n
        elif rest[:2] == ["different", "colours"]:
            assert len({o.colour for o in scene.objects}) == n


RELATIONS = {  # phrase -> (dx, dy) sign of the object after minus the one before
    ("left", "of"): (1, 0), ("right", "of"): (-1, 0), ("above",): (0, 1),
    ("over",): (0, 1), ("top", "of"): (0, 1), ("below",): (0, -1),
    ("under",): (0, -1), ("beneath",): (0, -1),
}  # fmt: skip


def _check_relations(scene, tokens, mentions):
    if {"between", "other"} & set(tokens):
        return
    for phrase, (sx, sy) in RELATIONS.items():
        at = [
            i
            for i in range(len(tokens))
            if tuple(tokens[i : i + len(phrase)]) == phrase
        ]
        for i in at:
            a = [m for m in mentions if m[0] < i][-1]
            if tokens[-1] in ("it", "them"):  # "B with A left of it"
                b = mentions[0]
            else:
                b = next(m for m in mentions if m[0] > i)
            for x in _objects(scene, a):
                for y in _objects(scene, b):
                    assert sx * (y.cx - x.cx) >= 0 and sy * (y.cy - x.cy) >= 0


def _check_caption(scene, caption):
    tokens = list(caption.tokens)
    mentions = _mentions(tokens)
    colours = {o.colour for o in scene.objects}
    assert {t for t in tokens if t in scenes.COLOURS} <= colours, caption
    for m in mentions:
        objs = _objects(scene, m)
        assert objs, caption
        sizes = {o.size for o in objs}
        if m[3] is not None:  # "big discs": all of them; "a big disc": one
            assert sizes == {m[3]} if m[4] else m[3] in sizes, caption
    _check_counts(scene, tokens)
    _check_relations(scene, tokens, mentions)
    if "between" in tokens:
        mid, ends = (
            _objects(scene, mentions[0]),
            sum((_objects(scene, m) for m in mentions[1:]), []),
        )
        lo_x, hi_x = sorted(o.cx for o in ends)[:: len(ends) - 1]
        lo_y, hi_y = sorted(o.cy for o in ends)[:: len(ends) - 1]
        assert lo_x < mid[0].cx < hi_x or lo_y < mid[0].cy < hi_y, caption
    _check_places(scene, tokens, mentions)


EXTREMES = {  # word -> key whose minimum is the object named
    "leftmost": lambda o: o.cx, "rightmost": lambda o: -o.cx,
    "highest": lambda o: o.cy, "top": lambda o: o.cy,
    "lowest": lambda o: -o.cy, "bottom": lambda o: -o.cy,
}  # fmt: skip
HALVES = {  # word -> (axis, sign): "on the left" means cx < half the image
    "left": ("cx", -1), "right": ("cx", 1), "top": ("cy", -1), "bottom": ("cy", 1),
}  # fmt: skip


def _check_places(scene, tokens, mentions):
    """ "the leftmost shape is ...", "... in the top left corner"."""
    half = scene.image_size / 2
    for i, tok in enumerate(tokens):
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in EXTREMES and after in GENERIC:
            named = min(scene.objects, key=EXTREMES[tok])
            assert named in _objects(scene, mentions[0]), tokens
        elif tok in HALVES and after != "of" and "other" not in tokens:
            axis, sign = HALVES[tok]
            for obj in _objects(scene, mentions[0]):
                assert sign * (getattr(obj, axis) - half) > 0, tokens


def test_captions_are_true_of_the_scene():
    for scene in _scenes(400):
        for caption in captions.references(scene, np.random.default_rng(0)):
            _check_caption(scene, caption)


def test_references_differ_and_cover_all_families():
    families, distinct, lengths, vocab = set(), [], [], set()
    for i, scene in enumerate(_scenes(500)):
        refs = captions.references(scene, np.random.default_rng(i))
        assert len(refs) == 5
        distinct.append(len({r.raw for r in refs}))
        families |= {r.family for r in refs}
        lengths += [len(r.tokens) for r in refs]
        vocab |= {t for r in refs for t in r.tokens}
    assert families == set(captions.FAMILIES) and len(families) >= 10
    assert np.mean(np.array(distinct) >= 3) > 0.95 and np.mean(distinct) > 4.5
    assert np.mean(np.array(lengths) <= 16) > 0.99
    assert 40 <= len(vocab) <= 120
    assert all(re.fullmatch("[a-z0-9]+", t) for t in vocab)


def test_counts_and_repeats_are_common():
    sizes = [len(scenes.groups(s)) - len(s.objects) for s in _scenes(500)]
    assert 0.15 < np.mean(np.array(sizes) < 0) < 0.5


def test_fc_features_keep_shape_colour_bindings():
    """A ridge probe from fc to the scene's (shape, colour) set beats chance."""
    spec = ShapesSpec(feat_dim=256)
    ids = range(1000)
    entries, codes, _ = generate_mod.make_chunk(spec, "train", ids, None)
    fc, _ = generate_mod.chunk_features(spec, ids, codes)
    num_colours = len(scenes.COLOURS)
    y = np.zeros((len(ids), len(scenes.SHAPES) * num_colours))
    for row, entry in zip(y, entries):
        for obj in entry["scene"]["objects"]:
            s, c = (
                scenes.SHAPES.index(obj["shape"]),
                scenes.COLOUR_NAMES.index(obj["colour"]),
            )
            row[s * num_colours + c] = 1
    x_mean, y_mean = fc[:900].mean(0), y[:900].mean(0)
    x = fc[:900] - x_mean
    w = np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ (y[:900] - y_mean))
    scores, truth = (fc[900:] - x_mean) @ w, y[900:]
    recall = np.mean(
        [t[np.argsort(-s)[: int(t.sum())]].mean() for s, t in zip(scores, truth)]
    )
    assert recall > 0.4  # chance is about 2/56
