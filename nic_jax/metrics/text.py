"""Tokenized captions to the int32 id arrays the on-device metrics read.

Word ids start at 1; 0 is EOS and padding, as in cocotalk files. Shapes: B images,
R references, T tokens.
"""

import numpy as np


def build_vocab(sentences) -> dict:
    """{word: id} over token lists, ids 1.. in order of first appearance."""
    vocab = {}
    for tokens in sentences:
        for word in tokens:
            if word not in vocab:
                vocab[word] = len(vocab) + 1
    return vocab


def encode(sentences, vocab: dict, length: int | None = None):
    """(N, T) int32 ids of token lists, 0-padded; T = longest unless given.

    A sentence longer than `length` is clipped, as cocotalk labels are.
    """
    sentences = [list(s) for s in sentences]
    t = length if length is not None else max([len(s) for s in sentences] + [1])
    out = np.zeros((len(sentences), t), np.int32)
    for i, tokens in enumerate(sentences):
        ids = [vocab[w] for w in tokens[:t]]
        out[i, : len(ids)] = ids
    return out


def encode_references(references, vocab: dict, length: int | None = None):
    """refs (B, R, T) int32 and mask (B, R) bool from B lists of token lists."""
    references = [list(r) for r in references]
    r = max([len(refs) for refs in references] + [1])
    flat = [s for refs in references for s in refs]
    t = length if length is not None else max([len(s) for s in flat] + [1])
    out = np.zeros((len(references), r, t), np.int32)
    mask = np.zeros((len(references), r), bool)
    for i, refs in enumerate(references):
        if refs:
            out[i, : len(refs)] = encode(refs, vocab, t)
            mask[i, : len(refs)] = True
    return out, mask
