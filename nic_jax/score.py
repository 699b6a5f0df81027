"""Scores COCO-format captions and prints one JSON object of metrics.

  python -m nic_jax.score --annotations A.json --results R.json \
      [--backend jax|coco] [--df FILE] [--tokenizer auto|java|python] [--nometeor]

A.json: {"images": [{"id"}], "annotations": [{"image_id", "caption"}]};
R.json: [{"image_id", "caption"}], one caption for every image of A.json.
Prints Bleu_1..Bleu_4, ROUGE_L, CIDEr (df of the annotations, as pycocoevalcap),
CIDEr-D (sigma 6, clipping; df of the annotations unless --df names a df table:
an .npz of `python -m nic_jax.prepro ngrams`, or its -words.p pickle) and METEOR
where Java runs (unless --nometeor: it takes seconds to load). Both backends
PTB-tokenize the same way, through Java when present and the pure-Python port
otherwise (see `nic_jax.metrics.tokenize`).
"""

import json

from absl import flags

from nic_jax import app
from nic_jax.data.karpathy import read_json
from nic_jax.errors import InputError
from nic_jax.metrics import corpus
from nic_jax.metrics.tokenize import java_available, ptb_tokenize

_ANNOTATIONS = flags.DEFINE_string("annotations", None, "COCO annotations json.")
_RESULTS = flags.DEFINE_string("results", None, "Results json: [{image_id, caption}].")
_BACKEND = flags.DEFINE_enum("backend", "jax", list(corpus.BACKENDS), "Scorer.")
_DF = flags.DEFINE_string("df", "", "Document-frequency table for CIDEr-D.")
_METEOR = flags.DEFINE_bool("meteor", True, "METEOR too, where Java runs (slow).")
_TOKENIZER = flags.DEFINE_enum(
    "tokenizer", "auto", ["auto", "java", "python"], "PTB tokenizer to use."
)


def _items(path: str, data, field: str) -> list:
    items = data.get(field) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InputError(f"{path}: expected an object with a list '{field}'")
    return items


def _caption(path: str, where: str, item, id_field: str):
    if not isinstance(item, dict) or not isinstance(item.get(id_field), (int, str)):
        raise InputError(
            f"{path}: {where} must be an object with an int or string '{id_field}'"
        )
    if not isinstance(item.get("caption"), str):
        raise InputError(f"{path}: {where}.caption must be a string")
    return item[id_field], item["caption"]


def read_annotations(path: str) -> dict:
    """{image id: [reference captions]} of a COCO annotations file."""
    data = read_json(path)
    refs = {}
    for i, image in enumerate(_items(path, data, "images")):
        if not isinstance(image, dict) or not isinstance(image.get("id"), (int, str)):
            raise InputError(
                f"{path}: images[{i}] must be an object with an int or string 'id'"
            )
        refs[image["id"]] = []
    for j, ann in enumerate(_items(path, data, "annotations")):
        image_id, caption = _caption(path, f"annotations[{j}]", ann, "image_id")
        if image_id not in refs:
            raise InputError(
                f"{path}: annotations[{j}].image_id {image_id!r} is not in images"
            )
        refs[image_id].append(caption)
    for image_id, captions in refs.items():
        if not captions:
            raise InputError(f"{path}: image {image_id!r} has no annotation")
    return refs


def read_results(path: str, image_ids) -> dict:
    """{image id: caption}, exactly one for each of `image_ids`."""
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of {{image_id, caption}} objects")
    results = {}
    for j, item in enumerate(data):
        image_id, caption = _caption(path, f"[{j}]", item, "image_id")
        if image_id not in image_ids:
            raise InputError(
                f"{path}: [{j}].image_id {image_id!r} is not an image of "
                "the annotations"
            )
        if image_id in results:
            raise InputError(f"{path}: [{j}].image_id {image_id!r} appears twice")
        results[image_id] = caption
    missing = [i for i in image_ids if i not in results]
    if missing:
        raise InputError(
            f"{path}: no image_id for {len(missing)} annotated images, "
            f"e.g. {missing[:5]}"
        )
    return results


def score_files(
    annotations: str,
    results: str,
    backend: str = "jax",
    df_path: str = "",
    tokenizer: str = "auto",
    meteor: bool = True,
) -> dict:
    """Reads, tokenizes and scores; returns {metric: value}."""
    refs = read_annotations(annotations)
    cands = read_results(results, refs)
    if tokenizer == "java" and not java_available():
        raise InputError("--tokenizer=java: no java on the PATH")
    use_java = {"auto": None, "java": True, "python": False}[tokenizer]
    refs = ptb_tokenize(refs, use_java)
    cands = {
        k: v[0]
        for k, v in ptb_tokenize({k: [c] for k, c in cands.items()}, use_java).items()
    }
    return corpus.score_text(refs, cands, backend, df_path, meteor)


def main(argv) -> None:
    if len(argv) > 1:
        raise InputError(f"unexpected arguments: {argv[1:]}")
    if not _ANNOTATIONS.value or not _RESULTS.value:
        raise InputError("--annotations and --results are required")
    scores = score_files(
        _ANNOTATIONS.value,
        _RESULTS.value,
        _BACKEND.value,
        _DF.value,
        _TOKENIZER.value,
        _METEOR.value,
    )
    print(json.dumps(scores, sort_keys=True))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
