"""Caption metrics through pycocoevalcap (Chen et al. 2015, the COCO caption server).

The reference scorers: BLEU-1..4 (Papineni et al. 2002), METEOR 1.5 (Java),
ROUGE-L and CIDEr (Vedantam et al. 2015, df from the evaluated references).
"""

import contextlib
import io
import shutil

from nic_jax.errors import InputError

METRIC_GROUPS = ("Bleu", "METEOR", "ROUGE_L", "CIDEr")


def java_available() -> bool:
    """METEOR and the PTB tokenizer run a Java jar."""
    return shutil.which("java") is not None


def _scorer(name: str):
    if name == "Bleu":
        from pycocoevalcap.bleu.bleu import Bleu

        return Bleu(4)
    if name == "METEOR":
        from pycocoevalcap.meteor.meteor import Meteor

        return Meteor()
    if name == "ROUGE_L":
        from pycocoevalcap.rouge.rouge import Rouge

        return Rouge()
    if name == "CIDEr":
        from pycocoevalcap.cider.cider import Cider

        return Cider()
    raise InputError(f"metric {name!r} is unknown; valid: {list(METRIC_GROUPS)}")


def ptb_tokenize(captions: dict) -> dict:
    """{id: [str]} through pycocoevalcap's PTBTokenizer (Stanford CoreNLP, Java)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize(
        {k: [{"caption": c} for c in v] for k, v in captions.items()}
    )


def coco_scores(
    references: dict, candidates: dict, metrics=METRIC_GROUPS, tokenize=False
):
    """Corpus scores of `candidates` {id: str} against `references` {id: [str]}.

    METEOR is skipped, not failed, where Java is absent. With `tokenize`, both sides
    go through the PTB tokenizer first, as COCOEvalCap does; without, the strings
    must already be lower-cased space-separated tokens.
    """
    gts = {k: list(v) for k, v in references.items()}
    res = {k: [candidates[k]] for k in gts}
    if tokenize and java_available():
        gts, res = ptb_tokenize(gts), ptb_tokenize(res)
    scores = {}
    for name in metrics:
        if name == "METEOR" and not java_available():
            continue
        with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its counts
            value, _ = _scorer(name).compute_score(gts, res)
        if name == "Bleu":
            scores.update({f"Bleu_{n + 1}": float(v) for n, v in enumerate(value)})
        else:
            scores[name] = float(value)
    return scores
