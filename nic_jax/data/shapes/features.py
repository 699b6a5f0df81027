"""Bottom-up-style region features of shapes scenes (stand-ins for Faster R-CNN ones).

Each image has K regions: its objects, then its distractors, then background crops
to fill up to K, in a shuffled order. A region's feature (D,) is

    relu(attributes @ W + noise * N(0, 1))

with W (A, D) a fixed random projection (one per dataset seed, shared by all
splits) and `attributes` (A,) a code of the region that keeps attribute *bindings*
after mean pooling: besides one-hots of shape, colour and size it holds conjunctions
(shape x colour, shape x size, colour x size, shape/colour x coarse x and y bins),
box geometry and an is-distractor / region-kind code. Distractors also carry a faint
"ghost" shape x colour code, as detectors fire weakly on clutter. The pooled fc
feature is the mean over regions, as in Anderson et al., "Bottom-Up and Top-Down
Attention for Image Captioning and VQA" (CVPR 2018). Relations and counts are not
coded directly: a model must read them from geometry, or fail to from the fc mean.
"""

import functools

import numpy as np

from nic_jax.data.shapes.scenes import COLOUR_NAMES, SHAPES, SIZES, Scene

KINDS = ("blob", "line", "patch", "background")
_BINS = 3  # coarse position bins per axis
_GHOST = 0.3  # amplitude of a distractor's spurious shape x colour code
_ACTIVE_BLOCKS = 12.0  # about how many unit codes a region has: keeps W @ a ~ N(0, 1)
_NS, _NC, _NZ = len(SHAPES), len(COLOUR_NAMES), len(SIZES)
_BLOCKS = {  # name -> width, in the order of the attribute vector
    "shape": _NS,
    "colour": _NC,
    "size": _NZ,
    "shape_colour": _NS * _NC,
    "shape_size": _NS * _NZ,
    "colour_size": _NC * _NZ,
    "shape_x": _NS * _BINS,
    "shape_y": _NS * _BINS,
    "colour_x": _NC * _BINS,
    "colour_y": _NC * _BINS,
    "geometry": 4,
    "distractor": 1,
    "kind": len(KINDS),
}
_OFFSETS = dict(zip(_BLOCKS, np.cumsum([0, *_BLOCKS.values()])[:-1].tolist()))
ATTRIBUTE_DIM = int(sum(_BLOCKS.values()))


def _bin(value: float, image_size: int) -> int:
    return min(int(value / image_size * _BINS), _BINS - 1)


def _set(vec: np.ndarray, block: str, index: int, value: float = 1.0) -> None:
    vec[_OFFSETS[block] + index] = value


def _geometry(vec: np.ndarray, box, image_size: int) -> None:
    x1, y1, x2, y2 = (v / image_size for v in box)
    geometry = ((x1 + x2) - 1.0, (y1 + y2) - 1.0, 2 * (x2 - x1), 2 * (y2 - y1))
    start = _OFFSETS["geometry"]
    vec[start : start + 4] = geometry


def _identity_code(vec, s, c, z, box, image_size, amplitude) -> None:
    """Shape/colour(/size) one-hots and their conjunctions, scaled by amplitude."""
    xb = _bin((box[0] + box[2]) / 2, image_size)
    yb = _bin((box[1] + box[3]) / 2, image_size)
    codes = [("shape", s), ("colour", c), ("shape_colour", s * _NC + c)]
    codes += [("shape_x", s * _BINS + xb), ("shape_y", s * _BINS + yb)]
    codes += [("colour_x", c * _BINS + xb), ("colour_y", c * _BINS + yb)]
    if z is not None:
        codes += [("size", z), ("shape_size", s * _NZ + z)]
        codes += [("colour_size", c * _NZ + z)]
    for block, index in codes:
        _set(vec, block, index, amplitude)


def _object_code(obj, image_size: int, rng) -> np.ndarray:
    vec = np.zeros(ATTRIBUTE_DIM, np.float32)
    s, c = SHAPES.index(obj.shape), COLOUR_NAMES.index(obj.colour)
    confidence = rng.uniform(0.7, 1.0)  # detector scores vary from box to box
    _identity_code(vec, s, c, SIZES.index(obj.size), obj.box, image_size, confidence)
    _geometry(vec, obj.box, image_size)
    return vec


def _clutter_code(kind: str, box, image_size: int, rng) -> np.ndarray:
    vec = np.zeros(ATTRIBUTE_DIM, np.float32)
    s, c = int(rng.integers(_NS)), int(rng.integers(_NC))
    _identity_code(vec, s, c, None, box, image_size, _GHOST * rng.uniform())
    _geometry(vec, box, image_size)
    _set(vec, "distractor", 0)
    _set(vec, "kind", KINDS.index(kind))
    return vec


def _background_box(image_size: int, rng) -> tuple[float, ...]:
    w, h = rng.uniform(0.15, 0.4, 2) * image_size
    x, y = rng.uniform(0, image_size - w), rng.uniform(0, image_size - h)
    return (x, y, x + w, y + h)


def scene_regions(scene: Scene, num_regions: int, rng) -> tuple[np.ndarray, ...]:
    """(K, A) attribute codes and (K, 4) float32 boxes, in a shuffled order.

    Objects always come first in line for a slot; `num_regions` must be at least the
    number of objects (3 at most).
    """
    size = scene.image_size
    codes = [_object_code(o, size, rng) for o in scene.objects]
    boxes = [o.box for o in scene.objects]
    for d in scene.distractors[: num_regions - len(codes)]:
        codes.append(_clutter_code(d.kind, d.box, size, rng))
        boxes.append(d.box)
    while len(codes) < num_regions:
        boxes.append(_background_box(size, rng))
        codes.append(_clutter_code("background", boxes[-1], size, rng))
    order = rng.permutation(num_regions)
    return np.stack(codes)[order], np.asarray(boxes, np.float32)[order]


@functools.lru_cache(maxsize=4)
def projection(seed: int, feat_dim: int) -> np.ndarray:
    """(A, D) float32 random projection, the same for every split of a dataset."""
    rng = np.random.default_rng([seed, 0x5EED, feat_dim])
    w = rng.standard_normal((ATTRIBUTE_DIM, feat_dim), dtype=np.float32)
    return w / np.float32(np.sqrt(_ACTIVE_BLOCKS))


def region_features(codes, noise, proj) -> np.ndarray:
    """relu(codes @ proj + noise): (N, K, D) of (N, K, A) codes and (N, K, D) noise."""
    n, k, a = codes.shape
    feats = (codes.reshape(n * k, a) @ proj).reshape(n, k, -1)
    feats += noise
    return np.maximum(feats, 0.0, out=feats)


def pooled(att: np.ndarray) -> np.ndarray:
    """(N, D) fc features: the mean over regions of (N, K, D) region features."""
    return att.mean(axis=1, dtype=np.float32)
