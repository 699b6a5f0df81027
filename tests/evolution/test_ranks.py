"""Centered ranks against a plain-numpy transcription of OpenAI ES's definition."""

import jax
import numpy as np
import pytest

from nic_jax.evolution.ranks import centered_ranks


def _numpy_centered_ranks(x):
    """evolution-strategies-starter's compute_centered_ranks, with a stable sort."""
    flat = x.ravel()
    ranks = np.empty(len(flat), dtype=int)
    ranks[flat.argsort(kind="stable")] = np.arange(len(flat))
    y = ranks.reshape(x.shape).astype(np.float32)
    return y / (x.size - 1) - 0.5


@pytest.mark.parametrize("shape", [(2,), (9,), (6, 2), (64,)])
def test_matches_numpy_definition(shape):
    x = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    got = jax.jit(centered_ranks)(x)
    np.testing.assert_allclose(got, _numpy_centered_ranks(x), atol=1e-7)


def test_ties_and_range():
    x = np.array([3.0, 1.0, 3.0, 3.0, -2.0, 1.0], np.float32)
    got = np.asarray(centered_ranks(x))
    np.testing.assert_allclose(got, _numpy_centered_ranks(x), atol=1e-7)
    assert got.min() == -0.5 and got.max() == 0.5
    np.testing.assert_allclose(np.sort(got), np.linspace(-0.5, 0.5, 6), atol=1e-7)


def test_invariant_to_monotone_transform_and_nan_is_worst():
    x = np.random.default_rng(0).normal(size=10).astype(np.float32)
    np.testing.assert_allclose(centered_ranks(x), centered_ranks(np.exp(3 * x) + 7))
    x[4] = np.nan
    assert float(centered_ranks(x)[4]) == -0.5
