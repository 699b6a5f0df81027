"""The most-frequent-caption baseline and the pycocoevalcap wrapper."""

import numpy as np

from nic_jax.data.dataset import SplitData
from nic_jax.evaluation.baselines import constant_caption_scores, most_frequent_caption
from nic_jax.evaluation.coco import coco_scores


def _split(ref_texts):
    n = len(ref_texts)
    empty = np.zeros((n, 1, 1), np.int32)
    return SplitData("x", np.arange(n), None, None, empty, np.ones(n), ref_texts)


def test_most_frequent_caption_counts_every_reference():
    split = _split([["a red circle", "a blue square"], ["a blue square", "two stars"]])
    assert most_frequent_caption(split) == "a blue square"


def test_identical_candidates_score_perfect_bleu_and_rouge():
    refs = {1: ["a red circle"], 2: ["two blue squares left of a star"]}
    scores = coco_scores(
        refs,
        {1: "a red circle", 2: "two blue squares left of a star"},
        ("Bleu", "ROUGE_L"),
    )
    np.testing.assert_allclose(scores["Bleu_4"], 1.0, atol=1e-6)
    np.testing.assert_allclose(scores["ROUGE_L"], 1.0, atol=1e-9)


def test_constant_caption_scores_below_matching_captions():
    texts = ["a red circle", "a blue square", "two green stars"]
    split = _split([[t] * 2 for t in texts])
    const = constant_caption_scores("a red circle", split)
    refs = {i: r for i, r in enumerate(split.ref_texts)}
    perfect = coco_scores(refs, dict(enumerate(texts)), ("Bleu", "CIDEr"))
    assert const["CIDEr"] < perfect["CIDEr"] / 2
    assert const["Bleu_1"] < perfect["Bleu_1"]
