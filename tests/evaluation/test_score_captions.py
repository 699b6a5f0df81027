"""Validation scores: the on-device backend equals pycocoevalcap's on real captions."""

import json

import pytest

from nic_jax.errors import InputError
from nic_jax.evaluation.captioning import score_captions
from nic_jax.metrics import tokenize


@pytest.fixture(scope="module")
def captions(shared_data):
    public = json.loads((shared_data / "captions" / "public.json").read_text())
    images = public["images"][:60]
    refs = {im["id"]: im["refs"][1:] for im in images}
    cands = {im["id"]: im["refs"][0] for im in images}
    refs = tokenize.ptb_tokenize(refs, use_java=False)
    cands = {k: tokenize.tokenize_line(c) for k, c in cands.items()}
    return refs, cands


def test_jax_backend_equals_coco_backend(captions):
    groups = ("Bleu", "ROUGE_L", "CIDEr")
    on_device = score_captions(*captions, groups, "jax")
    coco = score_captions(*captions, groups, "coco")
    assert sorted(on_device) == sorted(coco)
    assert sorted(on_device) == [f"Bleu_{n}" for n in range(1, 5)] + [
        "CIDEr",
        "ROUGE_L",
    ]
    for name, value in coco.items():
        assert abs(on_device[name] - value) <= 1e-6, name


def test_only_the_requested_groups_are_reported(captions):
    assert sorted(score_captions(*captions, ("CIDEr",), "jax")) == ["CIDEr"]


def test_unknown_backend_names_the_field(captions):
    with pytest.raises(InputError, match="evals.backend"):
        score_captions(*captions, ("CIDEr",), "torch")
