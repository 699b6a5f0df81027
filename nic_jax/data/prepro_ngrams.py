"""Document frequencies of the training references, for the CIDEr-D reward.

The equivalent of self-critical.pytorch's `scripts/prepro_ngrams.py` (Rennie et al.
2017): every reference sentence plus "<eos>" (id 0), words outside the vocabulary
as UNK, n = 1..4, df = the number of images whose references hold the n-gram and
`ref_len` = the number of images. It writes that script's two pickles,
`<out>-words.p` and `<out>-idxs.p` ({'document_frequency': {n-gram tuple of str:
count}, 'ref_len': images}), and `<out>.npz`, the fast form `metrics.df.load` reads.

References come from the Karpathy dataset json, whole, as the original reads them
(`df_from_karpathy`), or from the cocotalk labels, clipped to their L columns
(`df_from_cocotalk`).
"""

import pickle

import numpy as np

from nic_jax.data import cocotalk as cocotalk_lib
from nic_jax.data import karpathy
from nic_jax.errors import InputError
from nic_jax.metrics import df as df_lib

EOS_WORD = "<eos>"


def _pad(sentences_per_image):
    """Ragged lists of id lists -> refs (N, R, T + 1) int32 (a 0 always fits), mask."""
    n = len(sentences_per_image)
    r = max([len(s) for s in sentences_per_image] + [1])
    t = max([len(x) for s in sentences_per_image for x in s] + [0]) + 1
    refs = np.zeros((n, r, t), np.int32)
    mask = np.zeros((n, r), bool)
    for i, sents in enumerate(sentences_per_image):
        for j, ids in enumerate(sents):
            refs[i, j, : len(ids)] = ids
            mask[i, j] = True
    return refs, mask


def _in_split(split_of_image: str, split: str) -> bool:
    if split == "all":
        return True
    return split_of_image == split or (split == "train" and split_of_image == "restval")


def vocabulary(ix_to_word: dict) -> list:
    """words[id] for ids 0..V, words[0] = "<eos>"."""
    words = [EOS_WORD] + [""] * max(ix_to_word, default=0)
    for i, w in ix_to_word.items():
        words[int(i)] = w
    return words


def df_from_cocotalk(talk, split: str = "train") -> df_lib.DocumentFrequency:
    """df of the cocotalk label rows of `split` ('train' includes restval), + EOS."""
    if split == "all":
        rows = np.arange(len(talk.images))
    else:
        rows = cocotalk_lib.split_indices(talk, split)
    sents = []
    for row in rows:
        labels = cocotalk_lib.references(talk, int(row))
        sents.append([[int(w) for w in lab if w != 0] for lab in labels])
    refs, mask = _pad(sents)
    return df_lib.from_references(
        refs, mask, include_eos=True, words=vocabulary(talk.ix_to_word)
    )


def df_from_karpathy(images, ix_to_word: dict, split: str = "train"):
    """df of whole Karpathy sentences of `split`, words mapped by the cocotalk vocab."""
    wtoi = {w: int(i) for i, w in ix_to_word.items()}
    unk = wtoi.get("UNK")
    sents = []
    for img in images:
        if not _in_split(img["split"], split):
            continue
        image_sents = []
        for sent in img["sentences"]:
            ids = [wtoi.get(w, unk) for w in sent["tokens"]]
            if None in ids:
                raise InputError(
                    f"image {karpathy.image_id(img)}: word outside the vocabulary, "
                    "and the vocabulary has no UNK"
                )
            image_sents.append(ids)
        sents.append(image_sents)
    if not sents:
        raise InputError(f"split {split!r} has no images")
    refs, mask = _pad(sents)
    return df_lib.from_references(
        refs, mask, include_eos=True, words=vocabulary(ix_to_word)
    )


def write(df: df_lib.DocumentFrequency, output_prefix: str) -> list:
    """Writes `<prefix>.npz`, `<prefix>-words.p` and `<prefix>-idxs.p`."""
    paths = [
        output_prefix + ".npz",
        output_prefix + "-words.p",
        output_prefix + "-idxs.p",
    ]
    df.save(paths[0])
    for path, words in ((paths[1], df.words), (paths[2], None)):
        data = {"document_frequency": df.as_dict(words), "ref_len": df.num_images}
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    return paths


def prepro_ngrams(
    dict_json: str,
    output_prefix: str,
    split: str = "train",
    input_json: str = "",
    label_h5: str = "",
) -> list:
    """Builds the df of `split` and writes it; returns the written paths.

    `dict_json` is the cocotalk json (vocabulary); references come from
    `input_json` (a Karpathy dataset json) or else from `label_h5`.
    """
    if bool(input_json) == bool(label_h5):
        raise InputError("give exactly one of --input_json and --label_h5")
    if input_json:
        talk_json = karpathy.read_json(dict_json)
        if not isinstance(talk_json, dict) or "ix_to_word" not in talk_json:
            raise InputError(f"{dict_json}: expected an object with 'ix_to_word'")
        try:
            ix_to_word = {int(i): w for i, w in talk_json["ix_to_word"].items()}
        except (AttributeError, TypeError, ValueError):
            raise InputError(f"{dict_json}: ix_to_word keys must be ids") from None
        df = df_from_karpathy(karpathy.load_karpathy(input_json), ix_to_word, split)
    else:
        df = df_from_cocotalk(cocotalk_lib.load_cocotalk(dict_json, label_h5), split)
    return write(df, output_prefix)
