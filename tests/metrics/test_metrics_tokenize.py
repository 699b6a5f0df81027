"""The pure-Python PTB tokenizer gives pycocoevalcap's Java tokens."""

import gzip
import json
import pathlib
import random

import pytest

from nic_jax.metrics import tokenize

FIXTURE = pathlib.Path(__file__).with_name("ptb_public_java.json.gz")
needs_java = pytest.mark.skipif(not tokenize.java_available(), reason="no java")


@pytest.fixture(scope="module")
def captions(shared_data):
    public = json.loads((shared_data / "captions" / "public.json").read_text())
    return [c for image in public["images"] for c in image["refs"]]


def test_python_tokens_equal_the_stored_java_run_on_all_captions(captions):
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        java = json.load(f)["captions"]
    assert len(captions) == len(java) == 12000
    got = tokenize.python_tokenize_lines(captions)
    bad = [(c, j, g) for c, j, g in zip(captions, java, got) if j != g]
    assert not bad, bad[:3]


_PIECES = [
    "'s",
    "n't",
    "'",
    '"',
    "``",
    ".",
    ",",
    ";",
    ":",
    "!",
    "?",
    "...",
    "-",
    "--",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "&",
    "%",
    "$",
    "#",
    "@",
    "*",
    "/",
    "=",
    "St.",
    "Mr.",
    "U.S.",
    "T.V.",
    "a.m.",
    "etc.",
    "Inc.",
    "No.",
    "No. 5",
    "A.",
    "can't",
    "won't",
    "it's",
    "o'clock",
    "y'all",
    "'90s",
    "cannot",
    "gonna",
    "3.5",
    "1,000",
    "10:30",
    "1/2",
    "3-4",
    "t-shirt",
    "www.x.com",
    "a@b.com",
    "AT&T",
    "&amp;",
    "pole.A",
    "James'",
    "rock'n'roll",
    "'twas",
    "<b>",
    ":)",
]


def _fuzz_lines(words, n, seed):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        toks = [
            rng.choice(words) if rng.random() < 0.55 else rng.choice(_PIECES)
            for _ in range(rng.randint(1, 12))
        ]
        toks = [t.upper() if rng.random() < 0.1 else t for t in toks]
        lines.append("".join(t + rng.choice([" ", " ", ""]) for t in toks))
    return lines


@needs_java
def test_python_equals_java_live_on_captions_and_caption_like_text(captions):
    words = sorted({w for c in captions[:2000] for w in c.split()})
    lines = captions[::40] + _fuzz_lines(words, 400, seed=0) + ["", "  ", "a\nb"]
    assert tokenize.python_tokenize_lines(lines) == tokenize.java_tokenize_lines(lines)


def test_ptb_tokenize_keeps_keys_and_order():
    out = tokenize.ptb_tokenize(
        {7: ["A Dog's toy.", "Two cats"], "x": ["(Hi)"]}, use_java=False
    )
    assert out == {7: ["a dog 's toy", "two cats"], "x": ["-lrb- hi -rrb-"]}
