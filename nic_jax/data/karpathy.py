"""Reads Karpathy-format `dataset_*.json` files (COCO, Flickr8k/30k splits).

The format is the one of Karpathy & Fei-Fei, "Deep Visual-Semantic Alignments for
Generating Image Descriptions" (CVPR 2015), as used by neuraltalk2 and
self-critical.pytorch: `{"images": [{"split", "filename", "filepath", "cocoid" or
"imgid", "sentences": [{"tokens", "raw"}]}]}`. Every field is checked so that a bad
file fails here with the file, image index and field named, not deep in prepro.
"""

import json
import re

from nic_jax.errors import InputError

SPLITS = ("train", "val", "test", "restval")
_NON_ALNUM = re.compile(r"[^a-z0-9]")


def read_json(path: str):
    """Parses a JSON file; errors name the file and, for bad syntax, line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except (UnicodeDecodeError, OSError, RecursionError) as e:
        raise InputError(f"{path}: cannot be read as UTF-8 JSON ({e})") from None


def tokenize_raw(raw: str) -> list[str]:
    """Karpathy-style tokens: lower-case, non-[a-z0-9] to spaces, split."""
    return _NON_ALNUM.sub(" ", raw.lower()).split()


def image_id(img: dict) -> int:
    """The image's id: `cocoid` when present, else `imgid`."""
    return img["cocoid"] if "cocoid" in img else img["imgid"]


def _sentence_tokens(path: str, where: str, sent) -> list[str]:
    if not isinstance(sent, dict):
        raise InputError(f"{path}: {where} is {type(sent).__name__}, expected object")
    tokens = sent.get("tokens")
    if tokens is None:
        raw = sent.get("raw")
        if not isinstance(raw, str):
            raise InputError(
                f"{path}: {where} has no 'tokens' and no string 'raw'; "
                "expected at least one of them"
            )
        tokens = tokenize_raw(raw)
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise InputError(f"{path}: {where}.tokens is not a list of strings")
    if not tokens:
        raise InputError(f"{path}: {where} has no tokens; expected at least one word")
    return tokens


def _check_image(path: str, i: int, img) -> dict:
    where = f"images[{i}]"
    if not isinstance(img, dict):
        raise InputError(f"{path}: {where} is {type(img).__name__}, expected object")
    if "split" not in img:
        raise InputError(f"{path}: {where} has no 'split'; expected one of {SPLITS}")
    if img["split"] not in SPLITS:
        raise InputError(
            f"{path}: {where}.split is {img['split']!r}; expected one of {SPLITS}"
        )
    if "cocoid" not in img and "imgid" not in img:
        raise InputError(f"{path}: {where} has neither 'cocoid' nor 'imgid'")
    if not isinstance(image_id(img), int) or isinstance(image_id(img), bool):
        raise InputError(f"{path}: {where} id is {image_id(img)!r}, expected an int")
    for field in ("filename", "filepath"):
        if field in img and not isinstance(img[field], str):
            raise InputError(f"{path}: {where}.{field} is {img[field]!r}, expected str")
    sents = img.get("sentences")
    if not isinstance(sents, list) or not sents:
        raise InputError(
            f"{path}: {where}.sentences is {sents!r:.60}; expected a non-empty list"
        )
    out = dict(img)
    out["sentences"] = [
        {**s, "tokens": _sentence_tokens(path, f"{where}.sentences[{j}]", s)}
        for j, s in enumerate(sents)
    ]
    return out


def load_karpathy(path: str) -> list[dict]:
    """Reads and validates `path`; returns its images, every sentence with `tokens`.

    A sentence without `tokens` gets `tokenize_raw(raw)`. The returned dicts are
    copies; the file's other fields are kept as they are.
    """
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(
            f"{path}: expected an object with an 'images' list (Karpathy format), "
            f"found {type(data).__name__}"
            + (f" with keys {sorted(data)[:10]}" if isinstance(data, dict) else "")
        )
    return [_check_image(path, i, img) for i, img in enumerate(data["images"])]


def references_by_image(images: list[dict]) -> dict[int, list[str]]:
    """Maps each image id to its reference captions, tokens joined by spaces."""
    return {
        image_id(img): [" ".join(s["tokens"]) for s in img["sentences"]]
        for img in images
    }
