"""Fitness functions: es-img-captioning's formulas, and a vmapped population of
perturbed decoders scores as a Python loop over explicitly perturbed copies."""

import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from nic_jax import rewards
from nic_jax.decoding import decode
from nic_jax.errors import InputError
from nic_jax.evolution import fitness
from nic_jax.models.functional import build_decoder, init_params

CONFIG = ConfigDict(
    dict(name="fc", fc_feat_size=6, input_encoding_size=8, rnn_size=8, drop_prob_lm=0.5)
)
V, N, B, T = 7, 10, 4, 6


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    labels = np.zeros((N, 3, T), np.int32)
    for i in range(N):
        for j in range(3):
            n = rng.integers(2, T)
            labels[i, j, :n] = rng.integers(1, V + 1, n)
    split = types.SimpleNamespace(labels=labels, num_refs=np.full(N, 3, np.int32))
    reward = rewards.build_reward(split, V)
    decoder = build_decoder(CONFIG, V)
    params = init_params(CONFIG, V, jax.random.key(1))
    # a bias towards the reference words makes captions (and rewards) non-trivial
    params["logit"]["bias"] = jnp.asarray(rng.normal(0, 2.0, V + 1), jnp.float32)
    rows = np.array([1, 4, 6, 9])
    batch = {"fc": jnp.asarray(rng.normal(0, 3.0, (N, 6))[rows]), "index": rows}
    return decoder, reward, params, batch


def _all_fitness(decoder, reward):
    """One function giving every registered fitness (one compilation for all)."""
    fns = {
        name: fitness.make_fitness(name, decoder, reward, max_len=T)
        for name in fitness.FITNESS
    }
    return lambda params, key, batch: {n: f(params, key, batch) for n, f in fns.items()}


@functools.partial(jax.jit, static_argnames=("decoder", "method"))
def _decode(decoder, params, fc, key, method):
    return decode(decoder, params, {"fc": fc}, key, method, max_len=T)


def _upstream_criterion(weight, logprobs, tokens, scores):
    """es-img-captioning's *FitnessCriterion.forward, in numpy."""
    mask = np.concatenate([np.ones((len(tokens), 1)), tokens[:, :-1] > 0], 1)
    out = weight(np.exp(logprobs)) * scores[:, None] * mask
    return out.sum() / mask.sum()


WEIGHTS = {
    "greedy_logprob": lambda p: np.log10(p + 1 / 9) + np.log10(9),
    "greedy_avgprob": lambda p: 0.5 + 0.5 * (np.log10(p + 1 / 9) + np.log10(9)),
    "greedy_expprob": lambda p: (np.exp(p) - 1) / (math.e - 1),
    "greedy_linprob": lambda p: p,
}


def test_every_fitness_follows_its_upstream_formula(setup):
    decoder, reward, params, batch = setup
    key = jax.random.key(3)
    got = jax.jit(_all_fitness(decoder, reward))(params, key, batch)
    score = jax.jit(reward)
    rows = batch["index"]
    greedy_tokens, greedy_lp = _decode(decoder, params, batch["fc"], key, "greedy")
    sampled, _ = _decode(decoder, params, batch["fc"], key, "sample")
    greedy_scores = np.asarray(score(greedy_tokens, rows))
    sample_scores = np.asarray(score(sampled, rows))
    assert greedy_scores.max() > 0 and sample_scores.mean() != greedy_scores.mean()
    expected = {
        "greedy": 100 * greedy_scores.mean(),
        "sample": 100 * sample_scores.mean(),
        "self_critical": 100 * (sample_scores - greedy_scores).mean(),
    }
    for name, weight in WEIGHTS.items():
        expected[name] = _upstream_criterion(
            weight, np.asarray(greedy_lp), np.asarray(greedy_tokens), greedy_scores
        )
        assert 0 <= got[name] <= greedy_scores.max()  # f(p) in [0, 1]
    for name in fitness.FITNESS:
        assert float(got[name]) == pytest.approx(expected[name], rel=1e-5, abs=1e-4)


def test_vmapped_population_equals_a_loop_over_perturbed_copies(setup):
    decoder, reward, params, batch = setup
    fn = _all_fitness(decoder, reward)
    leaves, treedef = jax.tree.flatten(params)
    noise_keys = jax.random.split(jax.random.key(7), len(leaves))
    population = jax.tree.unflatten(
        treedef,
        [
            leaf + 0.6 * jax.random.normal(k, (3,) + leaf.shape)
            for leaf, k in zip(leaves, noise_keys)
        ],
    )
    keys = jax.random.split(jax.random.key(8), 3)
    batched = jax.jit(jax.vmap(fn, in_axes=(0, 0, None)))(population, keys, batch)
    one = jax.jit(fn)
    for i in range(3):
        member = jax.tree.map(lambda x, i=i: x[i], population)
        looped = one(member, keys[i], batch)
        for name in fitness.FITNESS:
            np.testing.assert_allclose(
                batched[name][i], looped[name], rtol=1e-5, atol=1e-5, err_msg=name
            )
    for name in fitness.FITNESS:
        assert len(set(np.round(np.asarray(batched[name]), 4))) > 1, name


def test_weights_rise_from_their_floor_to_one():
    p = jnp.linspace(0.0, 1.0, 11)
    for weight, floor in (
        (fitness.log_weight, 0.0),
        (fitness.avg_weight, 0.5),  # half the reward is kept whatever p is
        (fitness.exp_weight, 0.0),
        (fitness.lin_weight, 0.0),
    ):
        values = np.asarray(weight(p))
        np.testing.assert_allclose(values[[0, -1]], [floor, 1.0], atol=1e-6)
        assert np.all(np.diff(values) > 0)


def test_unknown_fitness_lists_the_valid_names():
    with pytest.raises(InputError, match="greedy_logprob"):
        fitness.get_fitness("greedy_log")
