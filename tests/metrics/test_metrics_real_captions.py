"""On-device metrics against pycocoevalcap on 2,400 real COCO images.

Leave-one-out as ../shared/data/captions/README.md sets it up: candidate = refs[0],
references = refs[1:5]; the PTB tokens are the stored Java run of the tokenizer.
"""

import gzip
import json
import pathlib
import re

import jax
import numpy as np
import pytest

from nic_jax.metrics import bleu, cider, rouge, text
from nic_jax.metrics import df as df_lib

FIXTURE = pathlib.Path(__file__).with_name("ptb_public_java.json.gz")


@pytest.fixture(scope="module")
def real(shared_data):
    public = json.loads((shared_data / "captions" / "public.json").read_text())
    scores = json.loads((shared_data / "captions" / "scores.json").read_text())
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        ptb = json.load(f)["captions"]
    images = public["images"]
    rows = [ptb[5 * i : 5 * i + 5] for i in range(len(images))]
    return images, rows, scores


def _arrays(cands, refs, length=None):
    vocab = text.build_vocab([s for r in refs for s in r] + cands)
    r, m = text.encode_references(refs, vocab, length)
    return text.encode(cands, vocab, r.shape[-1]), r, m


def _per_image(scores, images, name):
    return np.array([scores["per_image"][name][str(im["id"])] for im in images])


@pytest.fixture(scope="module")
def ptb_arrays(real):
    _, rows, _ = real
    cands = [row[0].split() for row in rows]
    refs = [[s.split() for s in row[1:5]] for row in rows]
    return _arrays(cands, refs)


def test_cider_matches_pycocoevalcap_per_image_and_corpus(real, ptb_arrays):
    images, _, scores = real
    got = np.asarray(jax.jit(cider.cider)(*ptb_arrays))
    want = _per_image(scores, images, "cider")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert abs(got.mean() - scores["corpus"]["CIDEr"]) <= 1e-4


def test_ciderd_with_a_df_table_matches_the_stored_ciderd(real, ptb_arrays):
    images, _, scores = real
    cands, refs, mask = ptb_arrays
    table = df_lib.from_references(refs, mask).to_table()
    got = np.asarray(jax.jit(cider.ciderd)(cands, refs, mask, table))
    np.testing.assert_allclose(got, _per_image(scores, images, "ciderd"), atol=1e-4)


def _prepro(raw):
    return re.sub(r"[^a-z0-9]", " ", raw.lower()).split()


def test_ciderd_with_eos_matches_the_stored_training_style_values(real):
    images, _, scores = real
    cands = [_prepro(im["refs"][0]) for im in images]
    refs = [[_prepro(s) for s in im["refs"][1:5]] for im in images]
    longest = max(len(s) for s in cands + [s for r in refs for s in r])
    c, r, m = _arrays(cands, refs, longest + 1)  # room for the EOS word
    want = _per_image(scores, images, "ciderd_prepro_eos")
    table = df_lib.from_references(r, m, include_eos=True).to_table()
    fn = jax.jit(cider.ciderd, static_argnames="include_eos")
    np.testing.assert_allclose(fn(c, r, m, table, include_eos=True), want, atol=1e-4)


def test_bleu_matches_pycocoevalcap_corpus(real, ptb_arrays):
    _, _, scores = real
    stats = jax.jit(bleu.bleu_stats)(*ptb_arrays)
    got = np.asarray(bleu.bleu_corpus(stats))
    want = [scores["corpus"][f"Bleu_{n}"] for n in range(1, 5)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_rouge_l_matches_pycocoevalcap_corpus(real, ptb_arrays):
    _, _, scores = real
    got = float(jax.jit(rouge.rouge_l)(*ptb_arrays).mean())
    assert abs(got - scores["corpus"]["ROUGE_L"]) <= 1e-6
