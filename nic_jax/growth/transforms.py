"""Function-preserving widening of one layer, as edits of the arrays that touch it.

A layer of H units appears in two kinds of arrays:

* producers compute the units: an axis of G blocks of H entries, one block per gate
  (a kernel's output axis, a bias), e.g. LSTM gates (G = 4 or 5 chunks);
* consumers read them: an axis holding the H units at rows [offset, offset + H)
  (the next layer's input rows, the recurrent kernel, `logit`, the attention query).

Widening by N appends N units at the end of every gate block and N consumer rows
right after the layer's rows, with one of three fillings:

* `r2r` (R2WiderR, Painter, "Towards a More Complete Theory of Function Preserving
  Transforms", arXiv:2410.11038; the pairing of "Deep Neuroevolution With Shared
  Weights: Ensembling A Better Solution"): units in pairs with identical incoming
  weights, so the two activations stay equal at every step, and outgoing rows +v and
  -v that cancel exactly. Every existing entry is untouched. New incoming weights
  are N(mean, std) of their gate block, outgoing rows N(0, std of the layer's rows).
* `net2net` (Net2WiderNet, Chen, Goodfellow & Shlens 2016, arXiv:1511.05641): unit
  H + j copies a random unit g(j); every copy of unit i (itself included) reads the
  same inputs and its outgoing rows are divided by the copy count of i.
* `zeros`: zero entries; used to carry optimizer moments over.

`Widening` names the arrays as paths into a params dict; `apply` edits any pytree of
that structure (params, or Adam's mu and nu).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from nic_jax.errors import InputError

METHODS = ("r2r", "net2net")


@dataclasses.dataclass(frozen=True)
class Producer:
    """`path`'s axis `axis` holds `gates` blocks of the layer's H units."""

    path: tuple
    axis: int
    gates: int = 1


@dataclasses.dataclass(frozen=True)
class Consumer:
    """`path`'s axis `axis` reads the layer's H units at [offset, offset + H)."""

    path: tuple
    axis: int
    offset: int = 0


@dataclasses.dataclass(frozen=True)
class Widening:
    """Adds `extra` units to a layer of `width` units (the arrays that hold it)."""

    width: int
    extra: int
    producers: tuple
    consumers: tuple

    def paths(self) -> list:
        return sorted({e.path for e in self.producers + self.consumers})


def unit_map(seed: int, width: int, extra: int) -> np.ndarray:
    """Net2WiderNet's g: (H + N,) the old unit each index copies (itself if < H)."""
    copied = np.random.default_rng([seed, width, extra]).integers(0, width, extra)
    return np.concatenate([np.arange(width), copied])


def _insert(x: np.ndarray, axis: int, position: int, new) -> np.ndarray:
    before, after = np.split(x, [position], axis=axis)
    return np.concatenate([before, new.astype(x.dtype), after], axis=axis)


def _along(values, axis: int, ndim: int) -> np.ndarray:
    """A 1-D array shaped to broadcast along `axis` of an ndim array."""
    return np.reshape(values, [-1 if a == axis else 1 for a in range(ndim)])


def _widen_consumer(x, entry: Consumer, widening: Widening, fill: str, rng, copies):
    width, extra, axis = widening.width, widening.extra, entry.axis
    start, stop = entry.offset, entry.offset + width
    before, rows, after = np.split(x, [start, stop], axis=axis)
    if fill == "net2net":
        counts = np.bincount(copies, minlength=width).astype(x.dtype)
        scaled = np.take(rows, copies, axis=axis) / _along(counts[copies], axis, x.ndim)
        return np.concatenate([before, scaled.astype(x.dtype), after], axis=axis)
    shape = list(x.shape)
    shape[axis] = extra // 2 if fill == "r2r" else extra
    if fill == "zeros":
        return _insert(x, axis, stop, np.zeros(shape, x.dtype))
    half = rows.std() * rng.standard_normal(shape)
    signs = _along(np.tile([1.0, -1.0], extra // 2), axis, x.ndim)
    return _insert(x, axis, stop, np.repeat(half, 2, axis=axis) * signs)


def _widen_producer(x, entry: Producer, widening: Widening, fill: str, rng, copies):
    width, extra, gates = widening.width, widening.extra, entry.gates
    if x.shape[entry.axis] != gates * width:
        raise InputError(
            f"params {'/'.join(entry.path)} has {x.shape[entry.axis]} entries on axis "
            f"{entry.axis}; expected {gates} x {width} (the layer's units)"
        )
    blocks = np.moveaxis(x, entry.axis, -1)
    blocks = blocks.reshape(blocks.shape[:-1] + (gates, width))
    if fill == "net2net":
        grown = np.take(blocks, copies, axis=-1)
    elif fill == "zeros":
        grown = _insert(blocks, -1, width, np.zeros(blocks.shape[:-1] + (extra,)))
    else:  # pairs of identical units, N(mean, std) of their gate block
        axes = tuple(a for a in range(blocks.ndim) if a != blocks.ndim - 2)
        mean = blocks.mean(axis=axes, keepdims=True)
        std = blocks.std(axis=axes, keepdims=True)
        noise = rng.standard_normal(blocks.shape[:-1] + (extra // 2,))
        grown = _insert(blocks, -1, width, np.repeat(mean + std * noise, 2, axis=-1))
    grown = grown.reshape(grown.shape[:-2] + (gates * (width + extra),))
    return np.moveaxis(grown, -1, entry.axis)


def widen_array(x, path: tuple, widening: Widening, fill: str, seed: int = 0):
    """All of `widening`'s edits of the array at `path` (a numpy array back).

    Consumers go first, from the highest offset down (an insertion shifts only the
    rows after it), then producers. net2net uses the same g for every array of a
    widening; r2r draws from a stream seeded by (seed, path).
    """
    x = np.asarray(x)
    consumers = sorted(
        (c for c in widening.consumers if c.path == path), key=lambda c: -c.offset
    )
    producers = [p for p in widening.producers if p.path == path]
    rng = np.random.default_rng([seed, *(ord(c) for c in "/".join(path))])
    copies = unit_map(seed, widening.width, widening.extra)
    for entry in consumers + producers:
        edit = _widen_consumer if isinstance(entry, Consumer) else _widen_producer
        x = edit(x, entry, widening, fill, rng, copies)
    return x


def _get(tree: dict, path: tuple):
    for name in path:
        tree = tree[name]
    return tree


def _set(tree: dict, path: tuple, value) -> dict:
    """A copy of the nested dict `tree` with `path` replaced (others shared)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    return {**tree, head: _set(tree[head], rest, value)}


def apply(tree: dict, widening: Widening, fill: str, seed: int = 0) -> dict:
    """`tree` (a params-structured dict) with every array of `widening` widened.

    fill: "r2r", "net2net" or "zeros"; seed: of the new weights (r2r) or of the
    copied units (net2net). Runs on the host in numpy: no compilation per shape.
    """
    if fill not in METHODS + ("zeros",):
        raise InputError(f"widening method {fill!r} is unknown; valid: {METHODS}")
    if widening.extra < 1:
        raise InputError(f"--extra={widening.extra}: add at least one unit")
    if fill == "r2r" and widening.extra % 2:
        raise InputError(
            f"--extra={widening.extra}: r2r adds units in +v/-v pairs; use an even "
            "number"
        )
    for path in widening.paths():
        old = _get(tree, path)
        grown = widen_array(old, path, widening, fill, seed)
        tree = _set(tree, path, jnp.asarray(grown, dtype=old.dtype))
    return tree
