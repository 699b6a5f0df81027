"""The metrics as pure jax: jit, vmap over a population, no callbacks, no retrace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nic_jax.metrics import bleu, cider, ngrams
from nic_jax.metrics import df as df_lib

B, R, T, P = 4, 5, 17, 3
ciderd = jax.jit(cider.ciderd, static_argnames="include_eos")
bleu_stats = jax.jit(bleu.bleu_stats)


def _batch(seed, vocab=9):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T, (B,))
    cands = rng.integers(1, vocab, (B, T)) * (np.arange(T) < lengths[:, None])
    ref_len = rng.integers(1, T + 1, (B, R))  # some refs fill every column: no EOS
    refs = rng.integers(1, vocab, (B, R, T)) * (np.arange(T) < ref_len[..., None])
    mask = np.arange(R) < rng.integers(1, R + 1, (B, 1))
    return cands.astype(np.int32), refs.astype(np.int32), mask


@pytest.fixture(scope="module")
def table():
    _, refs, mask = _batch(100)
    return df_lib.from_references(refs, mask, include_eos=True).to_table()


def test_no_host_callbacks(table):
    cands, refs, mask = _batch(0)
    for fn, args in [
        (cider.ciderd, (cands, refs, mask, table)),
        (cider.cider, (cands, refs, mask)),
        (bleu.bleu_stats, (cands, refs, mask)),
    ]:
        printed = str(jax.make_jaxpr(fn)(*args))  # sub-jaxprs (scan, ...) included
        assert "callback" not in printed and "infeed" not in printed


def test_no_recompilation_across_batches_of_one_shape(table):
    traces = []

    def reward(cands, refs, mask, table):
        traces.append(1)
        return cider.ciderd(cands, refs, mask, table, include_eos=True)

    fn = jax.jit(reward)
    for seed in range(4):
        jax.block_until_ready(fn(*_batch(seed), table))
    assert len(traces) == 1 and fn._cache_size() == 1


def test_vmap_over_a_population_equals_a_loop(table):
    _, refs, mask = _batch(1)
    population = jnp.stack([_batch(10 + p)[0] for p in range(P)])  # (P, B, T)
    stats = jax.jit(cider.prepare_refs, static_argnames="include_eos")(
        refs, mask, table, include_eos=True
    )
    score = jax.jit(
        jax.vmap(lambda c: cider.ciderd_prepared(c, stats, table, include_eos=True))
    )
    looped = [
        ciderd(population[p], refs, mask, table, include_eos=True) for p in range(P)
    ]
    np.testing.assert_allclose(score(population), np.stack(looped), rtol=1e-6)


def test_masked_references_equal_the_subset(table):
    cands, refs, mask = _batch(2)
    mask[:, 2:] = False
    full = ciderd(cands, refs, mask, table)
    subset = ciderd(cands, refs[:, :2], mask[:, :2], table)
    np.testing.assert_allclose(full, subset, rtol=1e-6)
    np.testing.assert_array_equal(
        bleu_stats(cands, refs, mask).correct,
        bleu_stats(cands, refs[:, :2], mask[:, :2]).correct,
    )


def test_lengths_and_extra_padding_change_nothing(table):
    cands, refs, mask = _batch(3)
    lengths = np.asarray(ngrams.effective_lengths(cands))
    noisy = np.where(np.arange(T) < lengths[:, None], cands, 7)
    want = ciderd(cands, refs, mask, table, include_eos=True)
    got = jax.jit(cider.ciderd, static_argnames="include_eos")(
        noisy, refs, mask, table, include_eos=True, lengths=lengths
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)
    wide = np.pad(cands, ((0, 0), (0, 5)))
    got = ciderd(wide, np.pad(refs, ((0, 0), (0, 0), (0, 5))), mask, table)
    np.testing.assert_allclose(got, ciderd(cands, refs, mask, table), rtol=1e-6)


def test_eos_is_a_word_only_when_it_fits():
    full = np.arange(1, T + 1, dtype=np.int32)[None]  # no 0 within T columns
    short = np.array([[5, 6, 0] + [0] * (T - 3)], np.int32)
    np.testing.assert_array_equal(ngrams.effective_lengths(full, include_eos=True), [T])
    np.testing.assert_array_equal(
        ngrams.effective_lengths(short, include_eos=True), [3]
    )


def test_ids_that_cannot_be_keyed_give_nan(table):
    cands, refs, mask = _batch(4)
    cands[1, 0] = ngrams.MAX_ID + 1
    scores = np.asarray(ciderd(cands, refs, mask, table))
    assert np.isnan(scores[1]) and not np.isnan(np.delete(scores, 1)).any()
    assert np.isnan(np.asarray(jax.jit(cider.cider)(cands, refs, mask))).all()
