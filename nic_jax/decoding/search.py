"""Greedy and sampled caption decoding with `lax.scan`, one row per image.

Matches self-critical.pytorch's `AttModel._sample`: BOS (0) first, then up to
`max_len` words; once a row emits EOS (0) it stays 0 and its later log-probs are 0,
so a caption's log-prob sums over its words and its EOS.

The decoding options users rely on (`DecodeOptions`) are applied to each step's
log-probs by `constrain_logprobs`, here and in beam search (`decoding/beam.py`):
`remove_bad_endings` (no EOS right after "a", "the", "with", ...; the word list of
self-critical.pytorch's `misc/utils.py`), UNK suppression, and trigram blocking
(self-critical's `block_trigrams`: each earlier occurrence of the trigram a
candidate would complete costs 2 ln 2; the hard form forbids it).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import lax

from nic_jax.errors import InputError
from nic_jax.models.layers import kernels_for_steps

BAD_ENDINGS = (
    "with", "in", "on", "of", "a", "at", "to", "for", "an", "this", "his", "her",
    "that", "the",
)  # fmt: skip
SOFT_TRIGRAM_PENALTY = 0.693 * 2.0  # self-critical's ln(1/2) * alpha, alpha = 2
HARD_TRIGRAM_PENALTY = float("inf")
LENGTH_PENALTIES = ("avg", "wu")


def bad_ending_ids(ix_to_word: dict) -> tuple[int, ...]:
    """Ids of the vocabulary words a caption must not end with, sorted."""
    return tuple(sorted(int(i) for i, w in ix_to_word.items() if w in BAD_ENDINGS))


def parse_length_penalty(spec: str) -> tuple[str, float]:
    """'' -> ('', 0); 'avg_1' -> ('avg', 1.0); 'wu_0.7' -> ('wu', 0.7)."""
    if spec == "":
        return "", 0.0
    kind, _, alpha = spec.partition("_")
    try:
        value = float(alpha)
    except ValueError:
        value = None
    if kind not in LENGTH_PENALTIES or value is None:
        raise InputError(
            f"length_penalty={spec!r} is not understood; expected '' (none), "
            "'avg_<alpha>' (mean log-prob) or 'wu_<alpha>' (Wu et al. 2016), "
            "e.g. 'wu_0.7'"
        )
    return kind, value


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """Step constraints and beam ranking; hashable, so it can be a static argument.

    bad_endings: word ids after which EOS is forbidden (`bad_ending_ids`).
    trigram_penalty: log-prob cost per earlier occurrence of a trigram; 0 off,
      `SOFT_TRIGRAM_PENALTY` as self-critical.pytorch, `HARD_TRIGRAM_PENALTY` forbids.
    suppress_unk: forbid the last word id V (self-critical's `UNK`).
    length_penalty: beam search ranking of finished captions ('', 'avg_a', 'wu_a').
    """

    bad_endings: tuple[int, ...] = ()
    trigram_penalty: float = 0.0
    suppress_unk: bool = False
    length_penalty: str = ""

    def __post_init__(self):
        parse_length_penalty(self.length_penalty)
        if not self.trigram_penalty >= 0.0:
            raise InputError(
                f"trigram_penalty={self.trigram_penalty} must be >= 0 (0 is off)"
            )
        if 0 in self.bad_endings:
            raise InputError("bad_endings holds word ids 1..V; 0 is EOS")


def _trigram_counts(history, t, num_outputs: int):
    """(R, V + 1): how often each word would repeat a trigram of `history`.

    history (R, L) holds the words chosen at steps < t. Counts the earlier trigrams
    (h[s], h[s+1], h[s+2]), s + 2 < t, that start with (h[t-2], h[t-1]).
    """
    rows, length = history.shape
    last_two = lax.dynamic_slice_in_dim(history, jnp.maximum(t - 2, 0), 2, axis=1)
    starts = jnp.arange(length - 2)
    match = (
        (history[:, :-2] == last_two[:, :1])
        & (history[:, 1:-1] == last_two[:, 1:])
        & (starts + 2 < t)[None]
    )
    row_ids = jnp.broadcast_to(jnp.arange(rows)[:, None], match.shape)
    counts = jnp.zeros((rows, num_outputs), jnp.float32)
    return counts.at[row_ids, history[:, 2:]].add(match.astype(jnp.float32))


def constrain_logprobs(logprobs, history, t, options: DecodeOptions):
    """Applies `options` to one step's log-probs.

    Args:
      logprobs: (R, V + 1) of the step that chooses word t.
      history: (R, L) int words chosen at steps < t (anything after).
      t: step index (may be traced).

    Returns:
      (R, V + 1) log-probs with forbidden words at -inf and trigram costs paid.
    """
    num_outputs = logprobs.shape[-1]
    if options.bad_endings:
        prev = jnp.where(t > 0, jnp.take(history, jnp.maximum(t - 1, 0), axis=1), 0)
        bad = jnp.isin(prev, jnp.asarray(options.bad_endings))
        logprobs = logprobs.at[:, 0].set(jnp.where(bad, -jnp.inf, logprobs[:, 0]))
    if options.suppress_unk:
        logprobs = logprobs.at[:, num_outputs - 1].set(-jnp.inf)
    if options.trigram_penalty > 0.0 and history.shape[1] >= 3:
        counts = _trigram_counts(history, t, num_outputs)
        if options.trigram_penalty == HARD_TRIGRAM_PENALTY:
            logprobs = jnp.where(counts > 0, -jnp.inf, logprobs)
        else:
            logprobs = logprobs - options.trigram_penalty * counts
    return logprobs


_EXACT_FLOAT_INDEX = 2**23  # float32 holds every integer up to 2^24 = 2 * this
_SMALL_TOP = 2.0**-50  # rows whose maximum is this small are compared scaled up
_RESCALE = 2.0**100  # by this: exact (a power of two), and their gaps turn normal
_MIN_BLOCK = 64  # entries of a block whose maximum the first pass keeps


def first_argmax(x: jax.Array) -> jax.Array:
    """`jnp.argmax(x, -1)`: the first index of the maximum, in one pass over x
    (exactly so for finite floats; +inf and NaN: `_flat_first_argmax`).

    The pass keeps the maximum of each block of `block_size(n)` entries; the
    first block holding the row's maximum is found among those, and the index
    within it by `_flat_first_argmax` over that block alone. At a vocabulary of
    9,488 (blocks of 593) this reads the logits once instead of twice
    (BENCHMARKS.md, NIC-NES throughput). Rows without a divisor to block by, and
    float64 and integer rows, are searched whole (`jnp.argmax`)."""
    size = x.shape[-1]
    beyond_f32 = (
        not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits > 32
    )
    if beyond_f32 or block_size(size) == size:  # integers, float64
        return _flat_first_argmax(x)
    block = block_size(size)
    lead = x.shape[:-1]
    rows = x.reshape(-1, size)
    block_max = jnp.max(rows.reshape(rows.shape[0], size // block, block), axis=-1)
    first_block = _flat_first_argmax(block_max)
    start = first_block * block
    window = jax.vmap(lambda row, at: lax.dynamic_slice_in_dim(row, at, block))
    index = start + _flat_first_argmax(window(rows, start))
    return index.reshape(lead)


def block_size(size: int) -> int:
    """The smallest divisor of `size` that is at least `_MIN_BLOCK` (or `size`)."""
    if size < _MIN_BLOCK:
        return size
    pairs = ((d, size // d) for d in range(1, math.isqrt(size) + 1) if size % d == 0)
    return min(d for pair in pairs for d in pair if d >= _MIN_BLOCK)


def _flat_first_argmax(x: jax.Array) -> jax.Array:
    """`jnp.argmax(x, -1)` as arithmetic and two plain float reductions: XLA:CPU
    runs compares and selects over a row ~8x slower than arithmetic, and a
    (value, index) reduction ~15x slower than a value one.

    An entry's gap to its row's maximum is zero exactly at the maxima and at
    least 2^-75 elsewhere (rows whose maximum lies below 2^-50 in magnitude are
    scaled by 2^100 first, exactly), so `min(gap * 2^100, 1)` is 0 at a maximum
    and 1 elsewhere, with or without denormals flushed; the first maximum is the
    smallest `index + size * behind`, an exact float below 2^24 (float64 and
    longer rows, and integers, take `jnp.argmax`). Where it differs from
    `jnp.argmax`: +inf counts as the largest finite float (only a row holding
    both tells); a row holding NaN gives a valid index but not necessarily the
    NaN's (`jnp.argmax` gives the first NaN), a row of only NaN gives 0. A row
    of -inf gives 0, as `jnp.argmax`."""
    size = x.shape[-1]
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    if size > _EXACT_FLOAT_INDEX or not floating or jnp.finfo(x.dtype).bits > 32:
        return jnp.argmax(x, axis=-1)
    x = jnp.minimum(x.astype(jnp.float32), jnp.finfo(jnp.float32).max)
    top = jnp.max(x, axis=-1, keepdims=True)
    scale = jnp.where(jnp.abs(top) < _SMALL_TOP, _RESCALE, 1.0)
    behind = jnp.minimum((top * scale - x * scale) * _RESCALE, 1.0)
    index = jnp.arange(size, dtype=jnp.float32) + size * behind
    first = jnp.min(index, axis=-1)
    return jnp.where(first < size, first, 0).astype(jnp.int32)  # NaN rows: 0


def _select(logprobs, key, method: str, temperature: float):
    if method == "greedy":
        return first_argmax(logprobs)
    if method == "sample":
        return jax.random.categorical(key, logprobs / temperature, axis=-1)
    raise ValueError(f"decoding method {method!r} is unknown; valid: greedy, sample")


def decode(
    decoder,
    params,
    feats: dict,
    key=None,
    method: str = "greedy",
    temperature: float = 1.0,
    max_len: int = 16,
    options: DecodeOptions | None = None,
    early_stop: bool = True,
    with_logprobs: bool = True,
):
    """Decodes one caption per image.

    Args:
      decoder: a `models.functional.Decoder`; params: its params.
      feats: per-image features, leading dim B.
      key: PRNG key for `method="sample"`.
      method: "greedy" or "sample" (from softmax(log-probs / temperature)).
      options: step constraints (`DecodeOptions`); None applies none.
      early_stop: stop stepping once every row has ended (a `lax.while_loop`;
        under `vmap`, once every row of every member has); False always runs
        `max_len` steps (a `lax.scan`). Both give the same outputs.
      with_logprobs: False chooses from the logits (`decoder.step_logits`) and
        skips the log-softmax: the same argmax and sampling distribution (the
        log-softmax shifts a row by a constant) for callers that need the tokens
        only (greedy CIDEr-D fitness), without an exp over the vocabulary per
        row and step. Tokens may differ where the shift rounds two logits of a
        row to the same log-prob (a near-tie the logits still order).

    Returns:
      tokens (B, max_len) int32, 0 after the end; logprobs (B, max_len): the
      model's log-probs of the chosen tokens (EOS included, 0 after it), before
      constraints and temperature (None when not `with_logprobs`).
    """
    options = options or DecodeOptions()
    ctx = decoder.encode(params, feats)
    state = decoder.init_state(params, ctx)
    batch = jax.tree.leaves(state)[0].shape[0]
    keys = jax.random.split(key if key is not None else jax.random.key(0), max_len)
    step_params = kernels_for_steps(params)  # cast once, not in every step

    def step(state, history, done, t, step_key):
        token = jnp.where(t > 0, jnp.take(history, jnp.maximum(t - 1, 0), 1), 0)
        step_fn = decoder.step if with_logprobs else decoder.step_logits
        scores, state = step_fn(step_params, ctx, state, token)
        allowed = constrain_logprobs(scores, history, t, options)
        token = _select(allowed, step_key, method, temperature).astype(jnp.int32)
        token_logprob = (
            jnp.take_along_axis(scores, token[:, None], -1)[:, 0]
            if with_logprobs
            else jnp.zeros(token.shape, jnp.float32)  # logits: nothing to return
        )
        token = jnp.where(done, 0, token)
        token_logprob = jnp.where(done, 0.0, token_logprob)
        history = history.at[:, t].set(token)
        return state, history, done | (token == 0), token_logprob

    history = jnp.zeros((batch, max_len), jnp.int32)
    done = jnp.zeros((batch,), bool)
    if not early_stop:

        def scan_body(carry, xs):
            *carry, token_logprob = step(*carry, *xs)
            return tuple(carry), token_logprob

        init = (state, history, done)
        (_, tokens, _), logprobs = lax.scan(
            scan_body, init, (jnp.arange(max_len), keys)
        )
        return tokens, (logprobs.T if with_logprobs else None)

    def loop_body(carry):
        t, state, history, done, logprobs = carry
        state, history, done, token_logprob = step(state, history, done, t, keys[t])
        return t + 1, state, history, done, logprobs.at[:, t].set(token_logprob)

    def running(carry):
        t, _, _, done, _ = carry
        return (t < max_len) & ~jnp.all(done)

    logprobs = jnp.zeros((batch, max_len), jnp.float32)
    init = (jnp.int32(0), state, history, done, logprobs)
    _, _, tokens, _, logprobs = lax.while_loop(running, loop_body, init)
    return tokens, (logprobs if with_logprobs else None)
