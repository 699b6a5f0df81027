"""Bad files and requests of scoring and evaluation, and df tables: one
`InputError` naming the file or field, what was found and what was expected."""

import json
import pathlib

import numpy as np
import pytest

from nic_jax import score
from nic_jax.errors import InputError
from nic_jax.evaluation.workdir import evaluate_workdir
from nic_jax.metrics import df as df_lib


def _coco_files(root: pathlib.Path, results=None, annotations=None):
    """A valid annotations/results pair (2 images), then the given replacements."""
    ann = {
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"image_id": 1, "caption": "a red circle"},
            {"image_id": 2, "caption": "two blue squares"},
        ],
    }
    res = [{"image_id": 1, "caption": "a circle"}, {"image_id": 2, "caption": "a"}]
    paths = root / "ann.json", root / "res.json"
    for path, default, given in zip(paths, (ann, res), (annotations, results)):
        value = default if given is None else given(default)
        path.write_bytes(
            value if isinstance(value, bytes) else json.dumps(value).encode()
        )
    return paths


SCORE_CASES = {
    "images missing from the results": (
        {"results": lambda r: r[:1]},
        r"res\.json: no image_id for 1 annotated images, e\.g\. \[2\]",
    ),
    "a result for an unknown image": (
        {"results": lambda r: [*r, {"image_id": 7, "caption": "x"}]},
        r"res\.json: \[2\]\.image_id 7 is not an image of the annotations",
    ),
    "an image scored twice": (
        {"results": lambda r: [*r, r[0]]},
        r"res\.json: \[2\]\.image_id 1 appears twice",
    ),
    "results not a list": (
        {"results": lambda r: {"results": r}},
        r"res\.json: expected a list of \{image_id, caption\} objects",
    ),
    "annotations without 'annotations'": (
        {"annotations": lambda a: {"images": a["images"]}},
        r"ann\.json: expected an object with a list 'annotations'",
    ),
    "an annotated image without a caption": (
        {"annotations": lambda a: {**a, "annotations": a["annotations"][:1]}},
        r"ann\.json: image 2 has no annotation",
    ),
    "annotations not UTF-8": (
        {
            "annotations": lambda a: (
                json.dumps(a).replace("red", "r\u00e9d").encode("cp1252")
            )
        },
        r"ann\.json: cannot be read as UTF-8 JSON",
    ),
    "annotations truncated": (
        {"annotations": lambda a: json.dumps(a)[:40].encode()},
        r"ann\.json: malformed JSON at line 1",
    ),
    "a caption that is not a string": (
        {"results": lambda r: [r[0], {"image_id": 2, "caption": 5}]},
        r"res\.json: \[1\]\.caption must be a string",
    ),
}


@pytest.mark.parametrize("case", sorted(SCORE_CASES))
def test_bad_scoring_files(case, tmp_path, tally):
    replacements, message = SCORE_CASES[case]
    annotations, results = _coco_files(tmp_path, **replacements)
    tally["bad_inputs_tried"] += 1
    with pytest.raises(InputError, match=message):
        score.score_files(str(annotations), str(results), tokenizer="python")


def test_bad_document_frequency_files(tmp_path, tally):
    table = df_lib.from_references(np.array([[[3, 4, 5, 0]]]))
    table.save(str(tmp_path / "df.npz"))
    good = (tmp_path / "df.npz").read_bytes()
    cases = {
        "truncated npz": (good[: len(good) // 2], r"not a df table"),
        "truncated pickle": (b"\x80\x04\x95", r"not a df table"),
        "not a df at all": (b"hello", r"not a df table"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(content)
        tally["bad_inputs_tried"] += 1
        with pytest.raises(InputError, match=message):
            df_lib.load(str(path))


@pytest.fixture
def trained(reference_of):
    """A finished XE run on the synthetic data (its workdir)."""
    return reference_of("xe")


def test_bad_evaluation_requests(trained, tmp_path, tally):
    with pytest.raises(InputError, match=r"nowhere/checkpoints does not exist"):
        evaluate_workdir(str(tmp_path / "nowhere"), "test")
    with pytest.raises(InputError, match=r"--step=999: no such checkpoint .*found \["):
        evaluate_workdir(str(trained), "test", step=999)
    with pytest.raises(InputError, match=r"decoding option\(s\) \['beam'\] unknown"):
        evaluate_workdir(str(trained), "test", decoding={"beam": 3})
    tally["bad_inputs_tried"] += 3


def test_edited_run_config_is_refused(trained, tmp_path, tally):
    config_path = trained / "config.json"
    saved = config_path.read_text()
    try:
        config = json.loads(saved)
        config["model"]["rnn_size"] = "32"  # a string where an int belongs
        config_path.write_text(json.dumps(config))
        with pytest.raises(InputError, match=r"model\.rnn_size='32'; expected an int"):
            evaluate_workdir(str(trained), "test")
        config_path.write_text(saved[:100])
        with pytest.raises(InputError, match=r"config\.json: cannot read the run's"):
            evaluate_workdir(str(trained), "test")
    finally:
        config_path.write_text(saved)
    tally["bad_inputs_tried"] += 2
