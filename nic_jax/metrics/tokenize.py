"""PTB tokenization of captions, exactly as pycocoevalcap's PTBTokenizer.

pycocoevalcap (Chen et al. 2015) runs Stanford CoreNLP 3.4.1's PTBTokenizer
(`-preserveLines -lowerCase`, Java) on every caption and then drops the tokens in
its PUNCTUATIONS list. `ptb_tokenize` does the same through Java when it is on the
PATH, and otherwise through `tokenize_line`, a pure-Python port of the JFlex lexer
rules that English captions exercise (words, contractions, hyphens, numbers,
abbreviations, acronyms, quotes, brackets, URLs and symbols): longest match first,
the earlier rule on ties, trailing context counted in the match as JFlex does. It
gives the Java tokens on every caption of the shared COCO sample (tested against a
stored Java run) and on generated caption-like text (tested live where Java runs).
"""

import os
import re
import shutil
import subprocess
import tempfile

from nic_jax.metrics import ptb_rules

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS (compared after lower-casing,
# so "-lrb-" and friends survive, as they do there)
# line breaks inside a caption would shift every later caption by a line
_BREAKS = re.compile("[\r\n\u000b\u000c\u0085\u2028\u2029]")

PUNCTUATIONS = frozenset(
    [
        "''",
        "'",
        "``",
        "`",
        "-LRB-",
        "-RRB-",
        "-LCB-",
        "-RCB-",
        ".",
        "?",
        "!",
        ",",
        ":",
        "-",
        "--",
        "...",
        ";",
    ]
)


def java_available() -> bool:
    return shutil.which("java") is not None


def python_tokenize_lines(lines) -> list:
    """Captions -> pycocoevalcap's tokenized strings, without Java.

    The captions are lexed as one text, one per line, as pycocoevalcap feeds Java
    (a rule's trailing context may look into the next line).
    """
    lines = [_BREAKS.sub(" ", line) for line in lines]
    out, row = [], []
    for token in ptb_rules.lex("\n".join(lines)) + ["\n"]:
        if token == "\n":
            out.append(" ".join(w for w in row if w not in PUNCTUATIONS))
            row = []
        else:
            row.append(token.lower())
    return out[: len(lines)]


def tokenize_line(text: str) -> str:
    """One caption -> pycocoevalcap's tokenized string, without Java."""
    return python_tokenize_lines([text])[0]


def _jar() -> str:
    from pycocoevalcap.tokenizer import ptbtokenizer

    here = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
    return os.path.join(here, ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)


def java_tokenize_lines(lines) -> list:
    """Captions -> tokenized strings through CoreNLP's Java PTBTokenizer."""
    lines = [_BREAKS.sub(" ", line) for line in lines]
    with tempfile.NamedTemporaryFile(
        "w", suffix=".txt", delete=False, encoding="utf-8"
    ) as f:
        f.write("\n".join(lines))
    try:
        cmd = [
            "java",
            "-cp",
            _jar(),
            "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines",
            "-lowerCase",
            f.name,
        ]
        out = subprocess.run(cmd, capture_output=True, check=True).stdout
    finally:
        os.remove(f.name)
    rows = out.decode("utf-8").split("\n")
    rows += [""] * (len(lines) - len(rows))
    return [
        " ".join(w for w in row.rstrip().split(" ") if w not in PUNCTUATIONS)
        for row in rows[: len(lines)]
    ]


def ptb_tokenize(captions: dict, use_java: bool | None = None) -> dict:
    """{key: [caption, ...]} -> {key: [tokenized caption, ...]} (PTB rules).

    Java is used when present unless `use_java` says otherwise; both give the same
    strings. Words are then `caption.split()`, as the scorers split them.
    """
    use_java = java_available() if use_java is None else use_java
    keys = [k for k, caps in captions.items() for _ in caps]
    flat = [c for caps in captions.values() for c in caps]
    if use_java and flat:
        out = java_tokenize_lines(flat)
    else:
        out = python_tokenize_lines(flat)
    result = {k: [] for k in captions}
    for k, line in zip(keys, out):
        result[k].append(line)
    return result
