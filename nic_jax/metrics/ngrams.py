"""Exact n-gram matching over token ids, on device, for CIDEr (Vedantam et al. 2015)
and BLEU (Papineni et al. 2002).

Sequences are int32 word ids, (..., T); 0 is EOS and padding. A sequence ends at its
first 0. With `include_eos` the 0 itself is one more word, as self-critical training
scores "w1 w2 ... 0" strings (Rennie et al. 2017); a row with no 0 has no EOS word,
exactly as self-critical's `array_to_str` does with rows that fill all T columns.

How n-grams are matched exactly, with no hashing and no x64:
* Inside one image (candidate vs itself, candidate vs each reference) n-grams are
  compared word by word: the n-gram at i equals the one at j iff the runs of equal
  words starting at (i, j) reach length n, so for n = 1..4 one equality test per word
  pair and three ANDs give all four orders. Counts for the four orders are packed in
  the four bytes of one int32 (SWAR), so one reduction sums all orders at once.
  This is O(T^2 R) cheap integer work per image that XLA fuses into one loop.
* Against a document-frequency table (`df.DfTable`) an n-gram is a lossless key:
  four 16-bit slots (word id + 1, 0 for unused) in two uint32 words `(hi, lo)`. The
  table stores full keys and compares both words, so nothing collides silently; ids
  above `MAX_ID` cannot be packed and make the score NaN instead (see `cider.py`).
  Corpus df (pycocoevalcap's CIDEr) sorts all keys of the batch once instead.

Why this way (measured on the 2-core CPU, 5,000 images x 5 references): matching
inside an image needs no global key at all, and the packed compare-and-count runs
at the machine's SIMD integer rate (~5 G word pairs/s); per-image sorting or
hashing of keys would be slower on XLA CPU. For the df table, a verified two-slot
cuckoo lookup costs ~4-7 ns per n-gram (six gathers, at the gather limit), against
~45 ns for a binary search of sorted (hi, lo) keys (`searchsorted`, 21 steps).
Long sequences are processed in blocks of `CHUNK` positions: XLA CPU stops
vectorising these fused loops when either side exceeds ~32.
"""

import jax.numpy as jnp

MAX_N = 4
MAX_ID = 0xFFFE  # ids 0..MAX_ID pack into 16 bits as id + 1
MAX_T = 255  # counts are packed in bytes
CHUNK = 32  # block side for `packed_matches` (see the module docstring)
_CAND_PAD = -1
_REF_PAD = -2


def effective_lengths(tokens, lengths=None, include_eos: bool = False):
    """Number of words of each sequence, (..., T) -> (...,) int32.

    Words run up to the first 0 (or `lengths`, when given); with `include_eos` the 0
    that ends the sequence counts as one more word when it lies within the T columns.
    `include_eos` is a Python bool (static under jit), here and in every metric.
    """
    tokens = mask_after(tokens, lengths)
    t = tokens.shape[-1]
    is_zero = tokens == 0
    first = jnp.where(is_zero.any(-1), jnp.argmax(is_zero, -1), t).astype(jnp.int32)
    if include_eos:
        first = first + (first < t).astype(jnp.int32)
    return first


def mask_after(tokens, lengths=None):
    """Zeroes the positions at or after `lengths` (..., ) of tokens (..., T)."""
    tokens = jnp.asarray(tokens, jnp.int32)
    if lengths is None:
        return tokens
    pos = jnp.arange(tokens.shape[-1], dtype=jnp.int32)
    return jnp.where(pos < jnp.asarray(lengths)[..., None], tokens, 0)


def words(tokens, lengths, pad: int):
    """Tokens (..., T) with every position >= lengths (...,) replaced by `pad`."""
    pos = jnp.arange(tokens.shape[-1], dtype=jnp.int32)
    return jnp.where(pos < lengths[..., None], tokens, pad)


def candidate_words(tokens, lengths):
    return words(tokens, lengths, _CAND_PAD)


def reference_words(tokens, lengths):
    return words(tokens, lengths, _REF_PAD)


def ngram_valid(lengths, t: int):
    """(..., MAX_N, T) bool: an n-gram starts at position i (i + n <= length)."""
    n = jnp.arange(1, MAX_N + 1, dtype=jnp.int32)[:, None]
    pos = jnp.arange(t, dtype=jnp.int32)
    return pos + n <= lengths[..., None, None]


def _pad_right(x, k: int, value: int):
    pad = [(0, 0)] * (x.ndim - 1) + [(0, k)]
    return jnp.pad(x, pad, constant_values=value)


def packed_matches(a, b, pad_a: int, pad_b: int, strictly_before: bool = False):
    """Per position i of a, how many n-grams of b equal a's n-gram at i, n = 1..4.

    a (..., Ta) and b (..., Tb) broadcast in their leading axes; returns (..., Ta)
    int32 with the count of order n in byte n - 1. With `strictly_before` (a is b)
    only positions j < i count, which marks first occurrences.
    """
    ta, tb = a.shape[-1], b.shape[-1]
    if max(ta, tb) > MAX_T:
        raise ValueError(f"sequences longer than {MAX_T} tokens are not supported")
    a = _pad_right(a, MAX_N - 1, pad_a)
    b = _pad_right(b, MAX_N - 1, pad_b)
    # blocks of at most CHUNK x CHUNK positions: see CHUNK
    blocks = [
        sum(
            _block(
                a, b, i0, min(ta, i0 + CHUNK), j0, min(tb, j0 + CHUNK), strictly_before
            )
            for j0 in range(0, tb, CHUNK)
        )
        for i0 in range(0, ta, CHUNK)
    ]
    return jnp.concatenate(blocks, -1)


def _block(a, b, i0, i1, j0, j1, strictly_before):
    """Packed counts for a-positions [i0, i1) against b-positions [j0, j1)."""
    run, packed = None, 0
    for k in range(MAX_N):
        eq = a[..., i0 + k : i1 + k, None] == b[..., None, j0 + k : j1 + k]
        run = eq if run is None else run & eq
        packed = packed + (run.astype(jnp.int32) << (8 * k))
    if strictly_before:
        before = jnp.arange(j0, j1)[None, :] < jnp.arange(i0, i1)[:, None]
        packed = jnp.where(before, packed, 0)
    return packed.sum(-1)


def unpack(packed):
    """(..., T) packed byte counts -> (..., MAX_N, T) int32 counts per order."""
    shifts = 8 * jnp.arange(MAX_N, dtype=jnp.int32)[:, None]
    return (packed[..., None, :] >> shifts) & 0xFF


def term_freq(w):
    """(..., MAX_N, T) int32: how often the n-gram at each position occurs in w."""
    return unpack(packed_matches(w, w, _CAND_PAD, _CAND_PAD))


def self_counts(w):
    """Term frequency and first-occurrence flag of each n-gram of w (..., T).

    Returns (tf, first): (..., MAX_N, T) int32 and bool. w must be `words(...)`.
    """
    tf = term_freq(w)
    before = unpack(packed_matches(w, w, _CAND_PAD, _CAND_PAD, strictly_before=True))
    return tf, before == 0


def cross_counts(cand_w, ref_w):
    """Count of each candidate n-gram in each reference.

    cand_w (B, T) from `candidate_words`, ref_w (B, R, T') from `reference_words`;
    returns (B, R, MAX_N, T) int32.
    """
    packed = packed_matches(cand_w[:, None, :], ref_w, _CAND_PAD, _REF_PAD)
    return unpack(packed)


def ngram_keys(w, lengths):
    """Lossless keys of every n-gram: (hi, lo), each (..., MAX_N, T) uint32.

    Slot k of an n-gram holds (word k) + 1 for k < n and 0 otherwise; hi packs slots
    0-1, lo slots 2-3. Invalid n-grams get (0, 0), which no real n-gram has.
    """
    t = w.shape[-1]
    slots = _pad_right(w.astype(jnp.uint32) + 1, MAX_N - 1, 0)
    s = [slots[..., None, k : k + t] for k in range(MAX_N)]  # (..., 1, T) each
    n = jnp.arange(1, MAX_N + 1)[:, None]  # (MAX_N, 1): broadcasting, no stacking
    zero = jnp.uint32(0)
    hi = (s[0] << 16) | jnp.where(n >= 2, s[1], zero)
    lo = jnp.where(n >= 3, s[2] << 16, zero) | jnp.where(n >= 4, s[3], zero)
    valid = ngram_valid(lengths, t)
    return jnp.where(valid, hi, zero), jnp.where(valid, lo, zero)


def ids_in_range(tokens):
    """(...,) bool: every id of the row fits the 16-bit key slots."""
    tokens = jnp.asarray(tokens)
    return ((tokens >= 0) & (tokens <= MAX_ID)).all(-1)
