"""Document frequencies of reference n-grams: the idf of CIDEr / CIDEr-D.

Vedantam et al. 2015 weight each n-gram by log(N / df), N the number of images and
df the number of images whose references contain it. Self-critical training
(Rennie et al. 2017) takes df and N from the training references once
(self-critical.pytorch `scripts/prepro_ngrams.py`, a pickle
`{'document_frequency': {ngram tuple: count}, 'ref_len': N}`); pycocoevalcap takes
them from the evaluated references themselves.

`DocumentFrequency` is the host-side table (numpy, saved as .npz, read from that
pickle too); `DfTable` is its device form: unigrams in an array indexed by word id,
longer n-grams in a two-choice cuckoo hash table over the lossless `(hi, lo)` keys of
`ngrams.ngram_keys`. Every slot stores the full key, a lookup reads the key's two
candidate slots and compares both words, so a lookup is six gathers, exact, with no
probing loop. The table keeps its load under 0.45 (<= 48 bytes per n-gram; COCO's
~4 M training n-grams take 200 MB and build in ~3 s); the build retries with a
larger table in the rare case that insertion does not converge.
"""

import dataclasses
import pickle
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from nic_jax.errors import InputError
from nic_jax.metrics import ngrams as ng

_SEEDS = ((0x9E3779B1, 0x7F4A7C15), (0x85EBCA77, 0x165667B1))
_MAX_LOAD = 0.45


class DfTable(NamedTuple):
    """Device document-frequency table (a pytree): log(max(1, df)) and log(N).

    Unigrams are read directly by word id; longer n-grams from cuckoo slots.
    """

    unigram_log_df: jnp.ndarray  # (V + 1,) float32, by word id
    hi: jnp.ndarray  # (M,) uint32 key word 0; (0, 0) marks an empty slot
    lo: jnp.ndarray  # (M,) uint32 key word 1
    log_df: jnp.ndarray  # (M,) float32
    log_ref_len: jnp.ndarray  # () float32 log(number of reference images)


def _fmix(h, xp):
    """murmur3's 32-bit finaliser; identical in numpy and jax (uint32 wraps)."""
    h = h ^ (h >> 16)
    h = h * xp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * xp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _slots(hi, lo, size: int, xp):
    """The two candidate slots of each key; a mix of both words, then fmix."""
    mask = xp.uint32(size - 1)
    return [
        (_fmix(hi * xp.uint32(a) + (lo ^ xp.uint32(b)), xp) & mask).astype(xp.int32)
        for a, b in _SEEDS
    ]


def _lookup_long(table: DfTable, hi, lo):
    s1, s2 = _slots(hi, lo, table.hi.shape[0], jnp)
    in1 = (table.hi[s1] == hi) & (table.lo[s1] == lo)
    in2 = (table.hi[s2] == hi) & (table.lo[s2] == lo)
    found = jnp.where(in1, table.log_df[s1], jnp.where(in2, table.log_df[s2], 0.0))
    return jnp.where((hi == 0) & (lo == 0), 0.0, found)


def lookup_log_df(table: DfTable, hi, lo):
    """log(max(1, df)) of the keys (hi, lo), each (..., 4, T) as `ngram_keys` gives.

    0 for n-grams not in the table (df 0 and df 1 weigh the same).
    """
    word = (hi[..., 0, :] >> 16).astype(jnp.int32) - 1  # -1 for invalid positions
    size = table.unigram_log_df.shape[0]
    uni = table.unigram_log_df[jnp.clip(word, 0, size - 1)]
    uni = jnp.where((word >= 0) & (word < size), uni, 0.0)
    longer = _lookup_long(table, hi[..., 1:, :], lo[..., 1:, :])
    return jnp.concatenate([uni[..., None, :], longer], axis=-2)


def _cuckoo(hi, lo, size: int, max_rounds: int = 500):
    """Slot of every key, or None when insertion does not settle."""
    choices = np.stack(_slots(hi, lo, size, np), 1)
    owner = np.full(size, -1, np.int64)
    side = np.zeros(len(hi), np.int64)
    pending = np.arange(len(hi))
    for _ in range(max_rounds):
        if not len(pending):
            return choices[np.arange(len(hi)), side]
        target = choices[pending, side[pending]]
        previous = owner[target]
        owner[target] = pending  # with repeats, numpy keeps the last write
        lost = pending[owner[target] != pending]
        evicted = np.unique(previous[(previous >= 0) & (owner[target] != previous)])
        pending = np.union1d(lost, evicted)
        side[pending] ^= 1
    return None


def build_table(
    grams, log_df, num_images: int, min_slots: int = 16, num_words: int = 0
) -> DfTable:
    """Device table of distinct n-grams (N, 4) ids (-1 padded) with values (N,).

    Shapes grow with the table; `min_slots` and `num_words` (ids 0..num_words - 1)
    set lower bounds, so that tables of one size class share one compilation.
    """
    grams = np.asarray(grams, np.int64).reshape(-1, ng.MAX_N)
    single = grams[:, 1] < 0
    unigram = np.zeros(
        max(int(grams[single, 0].max(initial=-1)) + 1, num_words), np.float32
    )
    unigram[grams[single, 0]] = log_df[single]
    hi, lo, _ = _key_words(_grams_to_keys(grams[~single]))
    size = max(min_slots, 1 << int(np.ceil(np.log2(max(len(hi), 1) / _MAX_LOAD))))
    size = 1 << int(np.ceil(np.log2(size)))
    while (slot := _cuckoo(hi, lo, size)) is None:
        size *= 2
    table = [np.zeros(size, np.uint32), np.zeros(size, np.uint32)]
    values = np.zeros(size, np.float32)
    table[0][slot], table[1][slot], values[slot] = hi, lo, log_df[~single]
    log_n = np.log(float(num_images)) if num_images > 0 else 0.0
    return DfTable(
        jnp.asarray(np.r_[unigram, np.float32(0)]),
        *map(jnp.asarray, table),
        jnp.asarray(values),
        jnp.float32(log_n),
    )


def _np_keys(tokens, lengths):
    """numpy twin of `ngram_keys`: uint64 keys (M, MAX_N, T), 0 where invalid."""
    m, t = tokens.shape
    slots = np.zeros((m, t + ng.MAX_N - 1), np.uint64)
    slots[:, :t] = tokens.astype(np.uint64) + 1
    keys = np.zeros((m, ng.MAX_N, t), np.uint64)
    for n in range(1, ng.MAX_N + 1):
        for k in range(n):
            keys[:, n - 1] |= slots[:, k : k + t] << np.uint64(16 * (3 - k))
        keys[:, n - 1] *= np.arange(t) + n <= lengths[:, None]
    return keys


def _key_words(keys):
    """uint64 keys (N,) -> (hi, lo) uint32 and n-gram ids (N, MAX_N), -1 padded."""
    hi = (keys >> np.uint64(32)).astype(np.uint32)
    lo = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    shifts = np.uint64(16) * np.arange(3, -1, -1, dtype=np.uint64)
    grams = ((keys[:, None] >> shifts) & np.uint64(0xFFFF)).astype(np.int32) - 1
    return hi, lo, grams


def _grams_to_keys(grams):
    """(N, MAX_N) ids, -1 padded -> (N,) uint64 keys."""
    slots = (np.asarray(grams, np.int64) + 1).astype(np.uint64)
    shifts = np.uint64(16) * np.arange(3, -1, -1, dtype=np.uint64)
    return np.bitwise_or.reduce(slots << shifts, axis=1)


@dataclasses.dataclass
class DocumentFrequency:
    """Host df table: n-grams of word ids, image counts and the image total."""

    ngrams: np.ndarray  # (N, MAX_N) int32 word ids, -1 after the n-gram's end
    counts: np.ndarray  # (N,) float64 images whose references hold the n-gram
    num_images: int  # N of log(N / df): `ref_len` of self-critical's pickle
    words: list | None = None  # optional vocabulary, words[id]; 0 is EOS

    def to_table(self, min_slots: int = 16, num_words: int = 0) -> DfTable:
        """The device table; see `build_table` for the two size bounds."""
        log_df = np.log(np.maximum(1.0, self.counts)).astype(np.float32)
        return build_table(self.ngrams, log_df, self.num_images, min_slots, num_words)

    def as_dict(self, words=None) -> dict:
        """{n-gram tuple of str: count}; id strings, or words from `words`."""
        name = (lambda i: str(i)) if words is None else (lambda i: words[i])
        return {
            tuple(name(i) for i in row if i >= 0): float(c)
            for row, c in zip(self.ngrams.tolist(), self.counts.tolist())
        }

    def remap(self, word_to_id: dict) -> "DocumentFrequency":
        """The table over another vocabulary, matched by word; needs `words`.

        N-grams holding a word outside `word_to_id` are dropped: they cannot occur.
        """
        if self.words is None:
            raise InputError("this df table has word ids but no vocabulary to map")
        lut = np.array([word_to_id.get(w, -2) for w in self.words] + [-1], np.int64)
        grams = lut[self.ngrams]  # -1 stays -1 through the last entry
        keep = ~(grams == -2).any(1)
        words = [""] * (max(word_to_id.values(), default=0) + 1)
        for w, i in word_to_id.items():
            words[i] = w
        return DocumentFrequency(
            grams[keep].astype(np.int32), self.counts[keep], self.num_images, words
        )

    def save(self, path: str) -> None:
        extra = {} if self.words is None else {"words": np.asarray(self.words)}
        with open(path, "wb") as f:
            np.savez(
                f,
                ngrams=self.ngrams,
                counts=self.counts,
                num_images=np.int64(self.num_images),
                **extra,
            )


def _np_lengths(tokens, include_eos: bool):
    """numpy twin of `ngrams.effective_lengths` for rows (M, T)."""
    t = tokens.shape[-1]
    is_zero = tokens == 0
    first = np.where(is_zero.any(-1), is_zero.argmax(-1), t)
    return first + (include_eos & (first < t))


def _count_images(keys, image):
    """Distinct keys (nonzero) and the number of distinct images holding each."""
    order = np.argsort(keys, kind="stable")  # stable: images stay ascending
    k, im = keys[order], image[order]
    new_key = np.r_[True, k[1:] != k[:-1]]
    new_pair = new_key | np.r_[True, im[1:] != im[:-1]]
    starts = np.flatnonzero(new_key)
    uniq, counts = k[starts], np.add.reduceat(new_pair, starts)
    keep = uniq != 0
    return uniq[keep], counts[keep]


def from_references(refs, mask=None, include_eos: bool = False, words=None):
    """df over images of refs (N, R, T) int ids (0 = EOS/pad), mask (N, R)."""
    refs = np.asarray(refs, np.int64)
    n_img, n_ref, t = refs.shape
    mask = np.ones((n_img, n_ref), bool) if mask is None else np.asarray(mask, bool)
    if refs.size and (refs.min() < 0 or refs.max() > ng.MAX_ID):
        raise InputError(f"word ids must lie in 0..{ng.MAX_ID} to be keyed exactly")
    rows = refs.reshape(-1, t)
    lengths = _np_lengths(rows, include_eos) * mask.reshape(-1)
    keys = _np_keys(rows, lengths).reshape(-1)
    image = np.repeat(np.arange(n_img), n_ref * ng.MAX_N * t)
    uniq, counts = _count_images(keys, image)
    _, _, grams = _key_words(uniq)
    num_images = int(mask.any(1).sum())
    return DocumentFrequency(grams, counts.astype(np.float64), num_images, words)


def load(path: str, word_to_id: dict | None = None) -> DocumentFrequency:
    """Reads a df table saved by `DocumentFrequency.save` or a prepro_ngrams pickle.

    Without `word_to_id` the table is over word ids (an .npz, or an `-idxs.p` pickle
    of id strings "12", "0"). With it, n-grams are matched by word (an .npz that
    holds its vocabulary, or a `-words.p` pickle); n-grams with a word outside
    `word_to_id` are dropped, since no caption can contain them. Pickles are
    unpickled: read only files you trust.
    """
    try:
        with open(path, "rb") as f:
            is_npz = f.read(2) == b"PK"
            f.seek(0)
            if is_npz:
                df = _load_npz(f, path)
            else:
                data = pickle.load(f, encoding="latin1")
                df = from_pickle_dict(data, path, word_to_id)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: df file not found") from None
    except Exception as error:  # a corrupt zip or pickle can raise almost anything
        raise InputError(
            f"{path}: not a df table (.npz or pickle): {type(error).__name__}: {error}"
        ) from None
    _check_table(path, df)
    return df.remap(word_to_id) if is_npz and word_to_id is not None else df


def _check_table(path: str, df: DocumentFrequency) -> None:
    """Refuses tables whose ids, counts or image total cannot be right."""
    grams, counts = df.ngrams, df.counts
    ids_ok = grams.size == 0 or (grams.min() >= -1 and (grams[:, 0] >= 0).all())
    padded = ((grams[:, 1:] >= 0) <= (grams[:, :-1] >= 0)).all()  # -1 only at ends
    if not (ids_ok and padded):
        raise InputError(f"{path}: ngrams must be word ids, -1 only after the last")
    if counts.shape != (len(grams),) or not np.isfinite(counts).all():
        raise InputError(
            f"{path}: counts has shape {counts.shape} (finite: "
            f"{bool(np.isfinite(counts).all())}); expected ({len(grams)},), finite"
        )
    if (counts < 0).any() or df.num_images < 0:
        raise InputError(f"{path}: negative counts or num_images={df.num_images}")
    if df.words is not None and grams.size and grams.max() >= len(df.words):
        raise InputError(
            f"{path}: word id {grams.max()} but the vocabulary has {len(df.words)}"
        )


def _load_npz(f, path: str) -> DocumentFrequency:
    with np.load(f, allow_pickle=False) as z:
        missing = {"ngrams", "counts", "num_images"} - set(z.files)
        if missing:
            raise InputError(f"{path}: df file lacks fields {sorted(missing)}")
        grams = z["ngrams"]
        if (
            grams.ndim != 2
            or grams.shape[1] != ng.MAX_N
            or grams.dtype.kind not in "iu"
            or grams.max(initial=0) > ng.MAX_ID
        ):
            raise InputError(f"{path}: ngrams must be (N, 4) ids in -1..{ng.MAX_ID}")
        words = z["words"].tolist() if "words" in z.files else None
        return DocumentFrequency(
            grams.astype(np.int32),
            z["counts"].astype(np.float64),
            int(z["num_images"]),
            words,
        )


def from_pickle_dict(data, path: str, word_to_id: dict | None = None):
    """DocumentFrequency from self-critical's {'document_frequency', 'ref_len'}."""
    if not isinstance(data, dict) or not {"document_frequency", "ref_len"} <= set(data):
        raise InputError(f"{path}: expected keys 'document_frequency' and 'ref_len'")
    table = data["document_frequency"]
    for gram in table:
        if not isinstance(gram, tuple) or not 1 <= len(gram) <= ng.MAX_N:
            raise InputError(f"{path}: n-gram {gram!r} is not a tuple of 1..4 words")
    ids_pickle = all(isinstance(w, str) and w.isdigit() for g in table for w in g)
    if ids_pickle == (word_to_id is not None):
        kind = "word ids (an -idxs.p)" if ids_pickle else "words (a -words.p)"
        need = "no vocabulary" if ids_pickle else "a vocabulary"
        raise InputError(f"{path}: n-grams are {kind}; this use needs {need}")
    lookup = (lambda w: int(w)) if ids_pickle else word_to_id.get
    grams, counts = [], []
    for gram, count in table.items():
        ids = [lookup(w) for w in gram]
        if None not in ids:
            grams.append(ids + [-1] * (ng.MAX_N - len(ids)))
            counts.append(float(count))
    grams = np.asarray(grams, np.int64).reshape(-1, ng.MAX_N)
    if grams.size and grams.max() > ng.MAX_ID:
        raise InputError(f"{path}: a word id is above {ng.MAX_ID}")
    return DocumentFrequency(
        grams.astype(np.int32), np.asarray(counts), int(data["ref_len"])
    )
