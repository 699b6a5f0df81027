"""`es.single_batch=False`: every antithetic pair (every GA child) scores a batch
it draws from the whole split; both signs of a pair see the same images."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nic_jax.errors import InputError
from nic_jax.evolution import fitness
from nic_jax.evolution import nes as nes_lib
from nic_jax.train import evolution
from tests.evolution.test_fitness import setup  # noqa: F401 (the fixture)
from tests.reliability import harness

NUM_IMAGES, PAIRS = 10, 6


def _table(batch, rng):
    fc = jnp.asarray(rng.normal(0, 3.0, (NUM_IMAGES, batch["fc"].shape[1])))
    return {"fc": fc}


def test_pair_rows_are_a_uniform_subset_of_distinct_images():
    draw = jax.jit(jax.vmap(lambda k: fitness.pair_batch_rows(k, 10, 4)))
    rows = np.asarray(draw(jax.random.split(jax.random.key(0), 4000)))
    assert rows.min() >= 0 and rows.max() < 10
    assert all(len(set(r)) == 4 for r in rows)  # distinct within a batch
    counts = np.bincount(rows.ravel(), minlength=10)  # 1,600 expected each
    assert np.abs(counts - 1600).max() < 5 * np.sqrt(1600 * 0.6)
    assert len({tuple(sorted(r)) for r in rows}) == 210  # every 4-subset of 10


def test_with_no_noise_pairs_tie_and_pairs_differ(setup):  # noqa: F811
    """sigma = 0: every member is theta, so fitness differs only by the images.
    One batch: all equal; own batches: equal within each pair, not across."""
    decoder, reward, params, batch = setup
    table = _table(batch, np.random.default_rng(3))
    strategy = nes_lib.NES(params, PAIRS, optax.sgd(0.1))
    population, _ = strategy.ask(jax.random.key(0), strategy.init(params, 0.0))
    greedy = fitness.make_fitness("greedy", decoder, reward, max_len=6)
    shared_batch = dict(table, index=np.arange(NUM_IMAGES))
    score = lambda fn: np.asarray(
        jax.jit(functools.partial(strategy.evaluate, fn))(population, jax.random.key(1))
    )
    shared = score(functools.partial(greedy, batch=shared_batch))
    np.testing.assert_allclose(shared, shared[0], rtol=1e-6)
    own_batch = dict(index=np.arange(4))  # only its size is read
    own = score(
        functools.partial(fitness.on_own_batches(greedy, table), batch=own_batch)
    )
    np.testing.assert_allclose(own[0::2], own[1::2], rtol=1e-6)
    assert len(set(np.round(own[0::2], 4))) > 2


def test_own_batch_scores_the_drawn_images(setup):  # noqa: F811
    decoder, reward, params, batch = setup
    table = _table(batch, np.random.default_rng(4))
    greedy = fitness.make_fitness("greedy", decoder, reward, max_len=6)
    key = jax.random.key(5)
    got = fitness.on_own_batches(greedy, table)(params, key, dict(index=np.arange(4)))
    rows_key, fitness_key = jax.random.split(key)
    rows = np.asarray(fitness.pair_batch_rows(rows_key, NUM_IMAGES, 4))
    expected = greedy(params, fitness_key, {"fc": table["fc"][rows], "index": rows})
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_nes_on_pair_batches_resumes_exactly(tmp_path):
    settings = {"es.single_batch": False}
    whole = tmp_path / "whole"
    harness.train_in_process("nes", whole, **settings)
    parts = tmp_path / "parts"
    harness.train_in_process("nes", parts, **settings, **{"es.num_steps": 4})
    harness.train_in_process("nes", parts, **settings)
    harness.assert_same_run(whole, parts)
    shared = tmp_path / "shared"  # the setting acts: one batch gives other params
    harness.train_in_process("nes", shared)
    _, params_own, _, _ = harness.restore(whole)
    _, params_shared, _, _ = harness.restore(shared)
    assert not all(
        np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(params_own), jax.tree.leaves(params_shared))
    )


def test_a_table_too_large_for_the_device_is_refused(monkeypatch):
    split = type("Split", (), {})()
    split.image_ids = np.arange(3)
    split.fc = np.zeros((3, 4), np.float32)
    monkeypatch.setattr(evolution, "TABLE_LIMIT_BYTES", 16)
    with pytest.raises(InputError, match=r"es.single_batch=False .* 3 images"):
        evolution.train_table(split, need_att=False)
