"""Trivial captioners that set the floor a trained model must clear.

`most_frequent_caption`: always emit the training split's most frequent reference
(ties broken by first occurrence), the usual "prior only" baseline.
"""

import collections

from nic_jax.evaluation.coco import coco_scores


def most_frequent_caption(split) -> str:
    """The reference string seen most often among the split's references."""
    counts = collections.Counter(ref for refs in split.ref_texts for ref in refs)
    return counts.most_common(1)[0][0]


def constant_caption_scores(caption: str, split, metrics=("Bleu", "ROUGE_L", "CIDEr")):
    """Corpus scores of emitting `caption` for every image of `split`."""
    refs = {int(i): r for i, r in zip(split.image_ids, split.ref_texts)}
    return coco_scores(refs, dict.fromkeys(refs, caption), metrics)
