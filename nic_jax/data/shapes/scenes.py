"""Scenes of the synthetic shapes dataset: objects and clutter, sampled from a seed.

A scene holds 1-3 objects (shape, colour, size, free continuous position, no heavy
overlap) on a gray textured background, plus faint distractor regions (gray blobs,
strokes, texture patches) that are not objects. Many 2-3 object scenes repeat an
object (same shape and colour) so that captions need counts ("two red circles").
Coordinates are pixels of a square image of side `image_size`.
"""

import dataclasses

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross")
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 160, 60),
    "blue": (40, 75, 215),
    "yellow": (240, 215, 35),
    "purple": (135, 55, 175),
    "orange": (245, 135, 25),
    "white": (250, 250, 250),
    "black": (20, 20, 20),
}
COLOUR_NAMES = tuple(COLOURS)
SIZES = ("small", "large")
DISTRACTOR_KINDS = ("blob", "line", "patch")
# Radius as a fraction of the image side, per size: well apart so "small" and
# "large" are never a judgement call.
_RADIUS = {"small": (0.065, 0.085), "large": (0.125, 0.155)}
_NUM_OBJECTS_P = (0.2, 0.4, 0.4)  # P(1), P(2), P(3) objects
_REPEAT_P = 0.45  # P(a 2-3 object scene repeats a shape+colour)
_OVERLAP = 0.9  # centres at least this times the sum of radii apart


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One object: a filled shape of one colour; (cx, cy) centre, r radius (px)."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    r: float
    angle: float  # rotation in degrees, small jitter so shapes read upright

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r)

    def to_json(self) -> dict:
        return {
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "box": [round(v, 2) for v in self.box],
        }


@dataclasses.dataclass(frozen=True)
class Distractor:
    """A faint background region that is not an object: blob, line or patch."""

    kind: str
    box: tuple[float, float, float, float]
    tone: int  # gray offset from the background, signed

    def to_json(self) -> dict:
        return {"kind": self.kind, "box": [round(v, 2) for v in self.box]}


@dataclasses.dataclass(frozen=True)
class Scene:
    """Objects, distractors and the background tone of one image."""

    image_size: int
    background: int  # gray level of the background
    objects: tuple[SceneObject, ...]
    distractors: tuple[Distractor, ...]

    def to_json(self) -> dict:
        return {
            "objects": [o.to_json() for o in self.objects],
            "distractors": [d.to_json() for d in self.distractors],
        }


def _identities(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """(shape, colour) of n objects; repeats are deliberate, others distinct."""
    pairs = [(s, c) for s in SHAPES for c in COLOUR_NAMES]
    order = rng.permutation(len(pairs))
    fresh = [pairs[i] for i in order]
    if n == 1 or rng.random() >= _REPEAT_P:
        return fresh[:n]
    if n == 2 or rng.random() < 0.4:
        return [fresh[0]] * n
    return [fresh[0], fresh[0], fresh[1]]


def _sizes(rng: np.random.Generator, identities: list) -> list[str]:
    sizes = [SIZES[i] for i in rng.integers(0, 2, len(identities))]
    if rng.random() < 0.5:  # half of the repeated groups share one size
        first = {}
        sizes = [first.setdefault(ident, s) for ident, s in zip(identities, sizes)]
    return sizes


def _place(rng, image_size: int, radii: list[float]) -> list[tuple[float, float]]:
    """Centres inside the image with no heavy overlap; [] if rejection fails."""
    centres: list[tuple[float, float]] = []
    for r in radii:
        for _ in range(100):
            cx, cy = rng.uniform(r + 2, image_size - r - 2, 2)
            if all(
                np.hypot(cx - x, cy - y) >= _OVERLAP * (r + r2)
                for (x, y), r2 in zip(centres, radii)
            ):
                centres.append((float(cx), float(cy)))
                break
        else:
            return []
    return centres


def _objects(rng: np.random.Generator, image_size: int) -> tuple[SceneObject, ...]:
    n = int(rng.choice(3, p=_NUM_OBJECTS_P)) + 1
    identities = _identities(rng, n)
    sizes = _sizes(rng, identities)
    while True:
        radii = [image_size * rng.uniform(*_RADIUS[s]) for s in sizes]
        centres = _place(rng, image_size, radii)
        if centres:
            break
    angles = rng.uniform(-12.0, 12.0, n)
    return tuple(
        SceneObject(s, c, z, round(x, 2), round(y, 2), round(r, 2), round(float(a), 1))
        for (s, c), z, (x, y), r, a in zip(identities, sizes, centres, radii, angles)
    )


def _distractor(rng: np.random.Generator, image_size: int) -> Distractor:
    kind = DISTRACTOR_KINDS[int(rng.integers(len(DISTRACTOR_KINDS)))]
    x0, y0 = rng.uniform(0, image_size, 2)
    if kind == "line":
        x1, y1 = rng.uniform(0, image_size, 2)
        box = (min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1)
    else:
        half = rng.uniform(0.05, 0.14, 2) * image_size
        box = (x0 - half[0], y0 - half[1], x0 + half[0], y0 + half[1])
    box = tuple(round(float(np.clip(v, 0, image_size)), 2) for v in box)
    tone = int(rng.choice([-1, 1]) * rng.integers(10, 26))
    return Distractor(kind, box, tone)


def sample_scene(rng: np.random.Generator, image_size: int = 128) -> Scene:
    """A random scene: 1-3 objects and 2-5 distractors on a gray background."""
    background = int(rng.integers(112, 149))
    objects = _objects(rng, image_size)
    num_distractors = int(rng.integers(2, 6))
    distractors = tuple(_distractor(rng, image_size) for _ in range(num_distractors))
    return Scene(image_size, background, objects, distractors)


def groups(scene: Scene) -> list[list[SceneObject]]:
    """Objects grouped by (shape, colour), in order of first appearance."""
    by_identity: dict[tuple[str, str], list[SceneObject]] = {}
    for obj in scene.objects:
        by_identity.setdefault((obj.shape, obj.colour), []).append(obj)
    return list(by_identity.values())
