"""Words and noun phrases of shapes captions: synonyms, plurals, counts, relations.

Everything here is TRUE of the objects it is given: sizes are said only when all
objects of a group share one, relations only when every member of one group is
clearly (by `margin` pixels, and more along that axis than across it) on that side
of every member of the other. Image y grows downwards, so "above" is smaller cy.
"""

import numpy as np

from nic_jax.data.shapes.scenes import SceneObject

NOUNS = {
    "circle": ("circle", "circle", "disc"),
    "square": ("square", "square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "hexagon": ("hexagon",),
    "diamond": ("diamond", "diamond", "rhombus"),
    "cross": ("cross", "cross", "plus sign"),
}
SIZE_WORDS = {"small": ("small", "small", "little", "tiny"), "large": ("large", "big")}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
RELATION_WORDS = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "above", "over", "on top of"),
    "below": ("below", "below", "under", "beneath"),
}
GENERIC = ("shape", "shape", "object")
OPENERS = ("a picture of", "an image of", "a photo of", "a drawing of")
BACKGROUNDS = ("on a gray background", "on a grey background")
_PLURAL_ES = ("x", "s")  # box -> boxes, cross -> crosses, rhombus -> rhombuses


def pick(rng: np.random.Generator, options):
    """One of `options`, uniformly (repeats in a tuple weight it)."""
    return options[int(rng.integers(len(options)))]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(_PLURAL_ES) else "s")


def noun(shape: str, rng: np.random.Generator, count: int = 1) -> str:
    word = pick(rng, NOUNS[shape])
    return word if count == 1 else plural(word)


def with_article(words: str, det: str) -> str:
    return f"{article(words) if det == 'a' else det} {words}"


def noun_phrase(unit, rng, det="a", size_p=0.5, colour_p=1.0) -> str:
    """ "a big red circle", "the two red discs", "three stars": one group of objects.

    `unit` is a list of objects of one shape and colour; `det` is "a" (indefinite:
    "a"/"an" or the count) or "the".
    """
    first, count = unit[0], len(unit)
    words = [noun(first.shape, rng, count)]
    if rng.random() < colour_p:
        words.insert(0, first.colour)
    if len({o.size for o in unit}) == 1 and rng.random() < size_p:
        words.insert(0, pick(rng, SIZE_WORDS[first.size]))
    body = " ".join(words)
    if count == 1:
        return with_article(body, det)
    if det == "a" and count == 2 and rng.random() < 0.15:
        return f"a pair of {body}"
    counted = f"{COUNT_WORDS[count]} {body}"
    return counted if det == "a" else f"the {counted}"


def join(phrases: list[str]) -> str:
    """ "x", "x and y", "x, y and z"."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def relations(a: list[SceneObject], b: list[SceneObject], margin: float) -> list[str]:
    """The relations ("left", "right", "above", "below") of group a to group b."""
    pairs = [(y.cx - x.cx, y.cy - x.cy) for x in a for y in b]
    checks = {
        "left": lambda dx, dy: dx >= margin and dx >= 0.5 * abs(dy),
        "right": lambda dx, dy: -dx >= margin and -dx >= 0.5 * abs(dy),
        "above": lambda dx, dy: dy >= margin and dy >= 0.5 * abs(dx),
        "below": lambda dx, dy: -dy >= margin and -dy >= 0.5 * abs(dx),
    }
    return [name for name, ok in checks.items() if all(ok(*p) for p in pairs)]


def _bin(value: float, size: int) -> int | None:
    """0/1/2 for the low, central and high third of the image; None near a border."""
    t = value / size
    if t < 0.3:
        return 0
    if t > 0.7:
        return 2
    return 1 if 0.37 <= t <= 0.63 else None


_CORNER = {(0, 0): "top left", (0, 2): "top right", (2, 0): "bottom left"}
_CORNER[(2, 2)] = "bottom right"
_SIDE = {0: "left", 2: "right"}
_EDGE = {0: "top", 2: "bottom"}


def position_phrase(obj: SceneObject, size: int, rng) -> str | None:
    """Where `obj` is in the image ("in the top left corner", "on the left")."""
    col, row = _bin(obj.cx, size), _bin(obj.cy, size)
    if (row, col) in _CORNER:
        corner = _CORNER[(row, col)]
        return pick(rng, (f"in the {corner} corner", f"at the {corner}"))
    if col in _SIDE and row != 0 and row != 2:
        return pick(rng, (f"on the {_SIDE[col]}", f"on the {_SIDE[col]} side"))
    if row in _EDGE and col == 1:
        return pick(rng, (f"at the {_EDGE[row]}", f"near the {_EDGE[row]}"))
    if row == 1 and col == 1:
        return pick(rng, ("in the middle", "in the center"))
    return None
