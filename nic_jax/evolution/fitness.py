"""Fitness functions of NIC-ES / NIC-NES: how good a perturbed decoder is on a batch.

es-img-captioning's `Fitness` options (its `captioning/policies.py` and
`captioning/fitness.py`), on the on-device reward (`nic_jax.rewards`: CIDEr-D with
train-split df and EOS counted, as its `compute_ciders`) and one row per unique
image (there every image is decoded five times). Each function is
`fn(decoder, reward, params, key, batch, max_len=16) -> scalar` (higher is
better); `make_fitness` binds the decoder and the reward, leaving the
`fitness_fn(params, key, batch)` the engine vmaps over a population.

`batch` holds the features (`fc`, and `att`/`att_mask` for attention models),
each (B, ...), and `index` (B,): the images' rows in the split the reward was
built on. Functions of the tokens alone decode from the logits (no log-softmax,
`decode(with_logprobs=False)`). Scales differ, as in the original:

* `greedy`, `sample`, `self_critical`: 100 x the mean reward over the B images
  (CIDEr-D x 100: roughly 0..1000, ~100 for a good COCO model; `self_critical`
  is a difference, so it can be negative).
* `greedy_logprob`, `greedy_avgprob`, `greedy_expprob`, `greedy_linprob`: the
  reward (not x 100: 0..10) of each greedy caption weighted by f(p) of its chosen
  tokens' probabilities, averaged over all tokens up to and including each first
  EOS (a token-weighted mean, as `RewardCriterion`'s masking). f maps [0, 1] onto
  [0, 1], so these lie in [0, max reward] and never exceed the mean reward.
"""

import functools
import math

import jax
import jax.numpy as jnp

from nic_jax.decoding import decode
from nic_jax.errors import InputError
from nic_jax.rewards import policy_mask

FEATURE_KEYS = ("fc", "att", "att_mask")


def _feats(batch) -> dict:
    return {k: batch[k] for k in FEATURE_KEYS if k in batch}


def _captions(decoder, params, batch, key, method, max_len, with_logprobs=False):
    return decode(
        decoder,
        params,
        _feats(batch),
        key,
        method=method,
        max_len=max_len,
        with_logprobs=with_logprobs,
    )


def greedy(decoder, reward, params, key, batch, max_len=16):
    """100 x mean reward of the greedy (eval mode) captions; `key` is unused."""
    del key
    tokens, _ = _captions(decoder, params, batch, None, "greedy", max_len)
    return 100.0 * reward(tokens, batch["index"]).mean()


def sample(decoder, reward, params, key, batch, max_len=16):
    """100 x mean reward of one caption per image sampled with `key`."""
    tokens, _ = _captions(decoder, params, batch, key, "sample", max_len)
    return 100.0 * reward(tokens, batch["index"]).mean()


def self_critical(decoder, reward, params, key, batch, max_len=16):
    """100 x mean over images of (reward of a sample - reward of the greedy caption).

    Positive when sampling finds better captions than the model's own argmax.
    """
    return sample(decoder, reward, params, key, batch, max_len) - greedy(
        decoder, reward, params, None, batch, max_len
    )


def _probability_weighted(weight_fn, decoder, reward, params, key, batch, max_len=16):
    """sum_{b,t} mask * weight_fn(p_bt) * reward_b / sum mask, greedy captions."""
    del key
    tokens, logprobs = _captions(
        decoder, params, batch, None, "greedy", max_len, with_logprobs=True
    )
    rewards = reward(tokens, batch["index"])
    mask = policy_mask(tokens)
    weighted = weight_fn(jnp.exp(logprobs)) * rewards[:, None]
    return jnp.sum(jnp.where(mask, weighted, 0.0)) / jnp.sum(mask)


def log_weight(prob):
    """log10(p + 1/9) + log10(9): 0 at p = 0, 1 at p = 1 (`AltLogFitnessCriterion`)."""
    return jnp.log10(prob + 1.0 / 9.0) + math.log10(9.0)


def avg_weight(prob):
    """(1 + log_weight(p)) / 2: the reward and its log-weighted form averaged."""
    return 0.5 + 0.5 * log_weight(prob)


def exp_weight(prob):
    """(e^p - 1) / (e - 1): 0 at p = 0, 1 at p = 1 (`ExpFitnessCriterion`)."""
    return jnp.expm1(prob) / (math.e - 1.0)


def lin_weight(prob):
    """p itself (`LinFitnessCriterion`)."""
    return prob


FITNESS = {
    "greedy": greedy,
    "sample": sample,
    "self_critical": self_critical,
    "greedy_logprob": functools.partial(_probability_weighted, log_weight),
    "greedy_avgprob": functools.partial(_probability_weighted, avg_weight),
    "greedy_expprob": functools.partial(_probability_weighted, exp_weight),
    "greedy_linprob": functools.partial(_probability_weighted, lin_weight),
}


def get_fitness(name: str):
    """The fitness function registered as `name` (unbound)."""
    if name not in FITNESS:
        raise InputError(f"fitness {name!r} is unknown; valid: {sorted(FITNESS)}")
    return FITNESS[name]


def make_fitness(name: str, decoder, reward, max_len: int = 16):
    """`fitness_fn(params, key, batch) -> scalar` for a decoder and a reward.

    Jit-able and vmap-able over params (and key) with the batch shared:
    `jax.vmap(fitness_fn, in_axes=(0, 0, None))`.
    """
    return functools.partial(get_fitness(name), decoder, reward, max_len=max_len)


def pair_batch_rows(key, num_images: int, batch_size: int) -> jax.Array:
    """(batch_size,) distinct rows of a split of `num_images` (a uniform random
    subset), drawn from a member's fitness key (one key per antithetic pair: both
    signs score the same images).

    Floyd's algorithm: batch_size draws and a batch_size-long membership test
    each, where `jax.random.choice(replace=False)` shuffles the whole split
    (54 ms a member at COCO's 113k images against 0.04 ms)."""

    def draw(i, rows):
        top = num_images - batch_size + i  # draw from 0..top
        pick = jax.random.randint(jax.random.fold_in(key, i), (), 0, top + 1)
        return rows.at[i].set(jnp.where(jnp.any(rows == pick), top, pick))

    empty = jnp.full((batch_size,), -1, jnp.int32)
    return jax.lax.fori_loop(0, batch_size, draw, empty)


def on_own_batches(fitness_fn, table: dict):
    """es-img-captioning's `single_batch: false`: `fitness_fn(params, key, batch)`
    scored on a batch each antithetic pair draws from the whole split.

    table: the split's features on the device (`fc`, ...; leading dim the number
    of images). The returned function reads only the batch size from `batch`
    (its `index`), draws that many rows with `pair_batch_rows` from the member's
    key and scores the pair on those images (their `index` for the reward).
    """

    def fitness_on_own_batch(params, key, batch):
        rows_key, key = jax.random.split(key)
        num_images = jax.tree.leaves(table)[0].shape[0]
        rows = pair_batch_rows(rows_key, num_images, batch["index"].shape[0])
        own = {k: v[rows] for k, v in table.items()}
        return fitness_fn(params, key, dict(own, index=rows))

    return fitness_on_own_batch
