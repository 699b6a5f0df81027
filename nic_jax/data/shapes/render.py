"""Renders a shapes scene to an RGB image with PIL.

The background is a gray gradient with smooth low-frequency texture; distractors are
drawn faintly in gray (blobs, strokes, texture patches), then objects as filled
polygons or ellipses in their colour. Randomness (texture) comes from the `rng`
given, so one image is reproducible from its own seed.
"""

import io

import numpy as np
from PIL import Image, ImageDraw

from nic_jax.data.shapes.scenes import (
    COLOURS,
    SHAPES,
    Distractor,
    Scene,
    SceneObject,
)

_TEXTURE_CELLS = 8  # the background texture is 8x8 noise, smoothly upsampled


def _unit_polygon(shape: str) -> np.ndarray:
    """(P, 2) vertices of `shape` inside the unit circle, y down, pointing up."""
    if shape == "star":
        radii = np.tile([1.0, 0.45], 5)
        angles = np.arange(10) * np.pi / 5 - np.pi / 2
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    if shape == "cross":
        a, b = 0.33, 0.95
        pts = [(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b)]
        pts += [(-x, -y) for x, y in pts]
        return np.array(pts)
    sides, phase, squash = {
        "square": (4, np.pi / 4, 1.0),
        "triangle": (3, -np.pi / 2, 1.0),
        "hexagon": (6, 0.0, 1.0),
        "diamond": (4, 0.0, 0.7),
    }[shape]
    angles = phase + np.arange(sides) * 2 * np.pi / sides
    return np.stack([squash * np.cos(angles), np.sin(angles)], 1)


_POLYGONS = {s: _unit_polygon(s) for s in SHAPES if s != "circle"}


def _polygon(obj: SceneObject) -> list[tuple[float, float]]:
    theta = np.deg2rad(obj.angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = _POLYGONS[obj.shape] @ rot.T * obj.r + (obj.cx, obj.cy)
    return [tuple(p) for p in pts]


def _background(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Gray with a linear gradient and smooth texture, as an RGB image."""
    size = scene.image_size
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    angle, slope = rng.uniform(0, 2 * np.pi), rng.uniform(4, 14)
    dx, dy = np.float32(slope * np.cos(angle)), np.float32(slope * np.sin(angle))
    gradient = (dx * ramp)[None, :] + (dy * ramp)[:, None]
    cells = rng.normal(0, 6.0, (_TEXTURE_CELLS, _TEXTURE_CELLS)).astype(np.float32)
    texture = Image.fromarray(cells, mode="F").resize((size, size), Image.BILINEAR)
    gray = gradient + np.asarray(texture) + np.float32(scene.background)
    tint = rng.uniform(-4, 4, 3)  # a faint colour cast, never enough to name
    channels = [np.clip(gray + np.float32(t), 0, 255).astype(np.uint8) for t in tint]
    return Image.fromarray(np.stack(channels, axis=-1), "RGB")


def _draw_distractor(image: Image.Image, d: Distractor, scene: Scene, rng) -> None:
    level = int(np.clip(scene.background + d.tone, 0, 255))
    fill = (level, level, level)
    draw = ImageDraw.Draw(image)
    if d.kind == "blob":
        draw.ellipse(d.box, fill=fill)
    elif d.kind == "line":
        x1, y1, x2, y2 = d.box
        ends = (x1, y1, x2, y2) if rng.random() < 0.5 else (x1, y2, x2, y1)
        draw.line(ends, fill=fill, width=int(rng.integers(1, 4)))
    else:
        _draw_patch(image, d, level, rng)


def _draw_patch(image: Image.Image, d: Distractor, level: int, rng) -> None:
    """A faint stripe texture inside the distractor's box."""
    x1, y1, x2, y2 = (int(round(v)) for v in d.box)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    period = int(rng.integers(3, 7))
    stripes = (np.arange(x2 - x1)[None, :] + np.arange(y2 - y1)[:, None]) % period
    values = np.where(stripes < period // 2, level, (level + 128) // 2)
    patch = Image.fromarray(values.astype(np.uint8), "L").convert("RGB")
    image.paste(patch, (x1, y1))


def render(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """The scene as an RGB image of side `scene.image_size`."""
    image = _background(scene, rng)
    for d in scene.distractors:
        _draw_distractor(image, d, scene, rng)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        fill = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse(obj.box, fill=fill)
        else:
            draw.polygon(_polygon(obj), fill=fill)
    return image


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding; fast compression, deterministic bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
