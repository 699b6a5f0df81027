"""Reference captions of a shapes scene: 5 per image, from 13 template families.

Each family is a function `(scene, groups, rng) -> str | None` (None: it does not
apply to this scene). The 5 references of an image come from different families
where possible and use synonyms at random, the way human references differ, while
each stays TRUE of the scene: colours, shapes, sizes, counts and relations are read
from the objects (see `phrases`). Captions are lower-case words; `raw` is the
sentence (capital first letter, final period), `tokens` its Karpathy tokenisation.
"""

import dataclasses
import re

import numpy as np

from nic_jax.data.shapes import phrases as ph
from nic_jax.data.shapes.scenes import Scene, groups

NUM_REFERENCES = 5
MAX_TOKENS = 16
_MARGIN = 0.06  # clear-relation margin, as a fraction of the image side
_SIZES = ("small", "large")
_NON_ALNUM = re.compile(r"[^a-z0-9]")


@dataclasses.dataclass(frozen=True)
class Caption:
    family: str
    raw: str
    tokens: tuple[str, ...]


def _opener(rng) -> str:
    return ph.pick(rng, ph.OPENERS) + " " if rng.random() < 0.4 else ""


def _background(rng) -> str:
    return " " + ph.pick(rng, ph.BACKGROUNDS) if rng.random() < 0.3 else ""


def _list(scene, units, rng):
    nps = [ph.noun_phrase(u, rng) for u in units]
    return _opener(rng) + ph.join(nps) + _background(rng)


def _there_is(scene, units, rng):
    nps = [ph.noun_phrase(u, rng) for u in units]
    verb = "are" if len(units[0]) > 1 else "is"
    return f"there {verb} {ph.join(nps)}" + _background(rng)


def _related_pair(scene, units, rng):
    """(a, b, relation) for a random pair of groups with a clear relation, or None."""
    margin = _MARGIN * scene.image_size
    found = [
        (a, b, rel)
        for a in units
        for b in units
        if a is not b
        for rel in ph.relations(a, b, margin)
    ]
    return found[int(rng.integers(len(found)))] if found else None


def _relation(scene, units, rng):
    found = _related_pair(scene, units, rng)
    if found is None:
        return None
    a, b, rel = found
    rel_words = ph.pick(rng, ph.RELATION_WORDS[rel])
    return f"{ph.noun_phrase(a, rng)} {rel_words} {ph.noun_phrase(b, rng)}"


def _relation_is(scene, units, rng):
    found = _related_pair(scene, units, rng)
    if found is None:
        return None
    a, b, rel = found
    verb = "are" if len(a) > 1 else "is"
    subject, obj = ph.noun_phrase(a, rng, "the"), ph.noun_phrase(b, rng, "the")
    return f"{subject} {verb} {ph.pick(rng, ph.RELATION_WORDS[rel])} {obj}"


def _relation_with(scene, units, rng):
    found = _related_pair(scene, units, rng)
    if found is None:
        return None
    a, b, rel = found
    pronoun = "them" if len(b) > 1 else "it"
    rel_words = ph.pick(rng, ph.RELATION_WORDS[rel])
    head, tail = ph.noun_phrase(b, rng), ph.noun_phrase(a, rng)
    return f"{head} with {tail} {rel_words} {pronoun}"


def _count(scene, units, rng):
    n = len(scene.objects)
    if n == 1:
        lead = ph.pick(rng, ("a single", "only one", "just one"))
        body = ph.noun_phrase(units[0], rng).split(" ", 1)[1]
        return f"{lead} {body}" + _background(rng)
    things = ph.plural(ph.pick(rng, ph.GENERIC))
    text = f"{_opener(rng)}{ph.COUNT_WORDS[n]} {things}"
    k = len({o.colour for o in scene.objects})
    if rng.random() < 0.5:
        return text + _background(rng)
    if k == 1:
        return text + ph.pick(rng, (" of the same colour", " of one colour"))
    return text + f" of {ph.COUNT_WORDS[k]} different colours"


def _colours(scene, units, rng):
    counts: dict[str, int] = {}
    for obj in scene.objects:
        counts[obj.colour] = counts.get(obj.colour, 0) + 1
    generic = ph.pick(rng, ph.GENERIC)
    nps = [
        ph.with_article(f"{c} {generic}", "a")
        if k == 1
        else f"{ph.COUNT_WORDS[k]} {c} {ph.plural(generic)}"
        for c, k in counts.items()
    ]
    return _opener(rng) + ph.join(nps) + _background(rng)


def _position(scene, units, rng):
    found = [
        (u, pos)
        for u in units
        if len(u) == 1
        and (pos := ph.position_phrase(u[0], scene.image_size, rng)) is not None
    ]
    if not found:
        return None
    unit, pos = found[int(rng.integers(len(found)))]
    if rng.random() < 0.5:
        return f"{ph.noun_phrase(unit, rng, 'the')} is {pos}"
    return f"{ph.pick(rng, ('', 'there is '))}{ph.noun_phrase(unit, rng)} {pos}"


def _between_triples(scene):
    """(middle, end, end) objects where the middle one is between the others."""
    objs, margin = scene.objects, _MARGIN * scene.image_size
    out = []
    for i, mid in enumerate(objs):
        ends = [o for j, o in enumerate(objs) if j != i]
        for coord in (lambda o: o.cx, lambda o: o.cy):
            lo, hi = sorted(ends, key=coord)
            lo_rel = ph.relations([lo], [mid], margin)
            if set(lo_rel) & set(ph.relations([mid], [hi], margin)):
                out.append((mid, lo, hi))
    return out


def _between(scene, units, rng):
    if len(scene.objects) != 3:
        return None
    found = [t for t in _between_triples(scene) if _is_single(units, t[0])]
    if not found:
        return None
    mid, lo, hi = found[int(rng.integers(len(found)))]
    middle = ph.noun_phrase([mid], rng)
    if (lo.shape, lo.colour) == (hi.shape, hi.colour):
        ends = ph.noun_phrase([lo, hi], rng)
    else:
        pair = [ph.noun_phrase([lo], rng), ph.noun_phrase([hi], rng)]
        ends = " and ".join(pair[:: ph.pick(rng, (1, -1))])
    return f"{_opener(rng)}{middle} between {ends}"


def _is_single(units, obj) -> bool:
    return any(len(u) == 1 and u[0] is obj for u in units)


_EXTREMES = {
    "leftmost": (lambda o: o.cx, ("leftmost",)),
    "rightmost": (lambda o: -o.cx, ("rightmost",)),
    "highest": (lambda o: o.cy, ("highest", "top")),
    "lowest": (lambda o: -o.cy, ("lowest", "bottom")),
}


def _extreme(scene, units, rng):
    if len(scene.objects) < 2:
        return None
    margin, found = _MARGIN * scene.image_size, []
    for key_fn, words in _EXTREMES.values():
        first, second = sorted(scene.objects, key=key_fn)[:2]
        if key_fn(second) - key_fn(first) >= margin:
            found.append((first, words))
    if not found:
        return None
    obj, words = found[int(rng.integers(len(found)))]
    thing = ph.pick(rng, ph.GENERIC)
    return f"the {ph.pick(rng, words)} {thing} is {ph.noun_phrase([obj], rng)}"


def _size_compare(scene, units, rng):
    singles = [u[0] for u in units if len(u) == 1]
    pairs = [(a, b) for a in singles for b in singles if (a.size, b.size) == _SIZES]
    if not pairs:
        return None
    small, large = pairs[int(rng.integers(len(pairs)))]
    if rng.random() < 0.5:
        first, word, second = large, ph.pick(rng, ("bigger", "larger")), small
    else:
        first, word, second = small, "smaller", large
    a = ph.noun_phrase([first], rng, "the", size_p=0.0)
    b = ph.noun_phrase([second], rng, "the", size_p=0.0)
    return f"{a} is {word} than {b}"


def _pair(scene, units, rng):
    repeated = [u for u in units if len(u) > 1]
    if not repeated:
        return None
    unit = repeated[0]
    text = ph.noun_phrase(unit, rng, size_p=0.0)
    if len({o.size for o in unit}) == 1:
        return text + ph.pick(rng, (" of the same size", " of equal size"))
    return text + ph.pick(rng, (" of different sizes", " of two sizes"))


_ARRANGEMENTS = {
    "above": ("one above the other", "one on top of the other"),
    "left": ("side by side", "next to each other"),
}


def _arrangement(scene, units, rng):
    """ "two red circles, one above the other": a pair's inner relation."""
    margin = _MARGIN * scene.image_size
    found = [
        (u, rel)
        for u in units
        if len(u) == 2
        for rel in ph.relations(u[:1], u[1:], margin)
        + ph.relations(u[1:], u[:1], margin)
        if rel in _ARRANGEMENTS
    ]
    if not found:
        return None
    unit, rel = found[int(rng.integers(len(found)))]
    return f"{ph.noun_phrase(unit, rng)}, {ph.pick(rng, _ARRANGEMENTS[rel])}"


FAMILIES = {
    "list": (_list, 1.0),
    "there_is": (_there_is, 1.0),
    "relation": (_relation, 2.0),
    "relation_is": (_relation_is, 1.5),
    "relation_with": (_relation_with, 1.2),
    "count": (_count, 0.7),
    "colours": (_colours, 0.8),
    "position": (_position, 1.0),
    "between": (_between, 2.0),
    "extreme": (_extreme, 1.0),
    "size_compare": (_size_compare, 1.0),
    "pair": (_pair, 1.5),
    "arrangement": (_arrangement, 1.5),
}


def make_caption(family: str, text: str) -> Caption:
    text = " ".join(text.split())
    raw = text[0].upper() + text[1:] + "."
    return Caption(family, raw, tuple(_NON_ALNUM.sub(" ", raw.lower()).split()))


def _try_family(scene, units, name, rng) -> Caption | None:
    """A caption of family `name` within MAX_TOKENS (a few draws), or None."""
    fn, _ = FAMILIES[name]
    caption = None
    for _ in range(6):
        text = fn(scene, units, rng)
        if text is None:
            return None
        caption = make_caption(name, text)
        if len(caption.tokens) <= MAX_TOKENS:
            break
    return caption


def references(scene: Scene, rng: np.random.Generator) -> list[Caption]:
    """NUM_REFERENCES captions of `scene`, from distinct families where possible."""
    units = groups(scene)
    names = list(FAMILIES)
    weights = np.array([FAMILIES[n][1] for n in names])
    order = rng.choice(len(names), len(names), replace=False, p=weights / weights.sum())
    captions = []
    for i in order:
        caption = _try_family(scene, units, names[i], rng)
        if caption is not None:
            captions.append(caption)
        if len(captions) == NUM_REFERENCES:
            return captions
    return captions + _refill(scene, units, captions, rng)


def _refill(scene, units, captions, rng) -> list[Caption]:
    """Extra draws of applicable families, avoiding repeated sentences."""
    families = [c.family for c in captions]
    seen, extra = {c.raw for c in captions}, []
    for attempt in range(40):
        if len(captions) + len(extra) == NUM_REFERENCES:
            break
        caption = _try_family(scene, units, ph.pick(rng, families), rng)
        if caption.raw not in seen or attempt >= 30:
            seen.add(caption.raw)
            extra.append(caption)
    return extra
