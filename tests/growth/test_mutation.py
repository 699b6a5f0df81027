"""Width buckets: padded members compute their bucket's decoder, architecture
mutations are function-preserving, masked GA mutations never wake the padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from ml_collections import ConfigDict

from nic_jax.decoding import teacher_forced_logprobs
from nic_jax.evolution import noise as noise_lib
from nic_jax.evolution import population as population_lib
from nic_jax.evolution.ga import GA
from nic_jax.growth import num_params
from nic_jax.growth.mutation import (
    WidthBuckets,
    mutate_architectures,
    mutation_scale,
    row_buckets,
)
from nic_jax.models.functional import build_decoder, init_params

VOCAB = 9


def buckets_for(name="in5400_lstm", layer=1, method="r2r"):
    config = ConfigDict(
        dict(
            name=name,
            fc_feat_size=5,
            att_feat_size=5,
            input_encoding_size=6,
            rnn_size=6,
            nn_map_size=4,
            drop_prob_lm=0.5,
        )
    )
    base = init_params(config, VOCAB, jax.random.key(0))
    out = "logit" if "logit" in base else "output_layer"
    base = base | {out: jax.tree.map(lambda x: 5 * x, base[out])}  # peaked outputs
    return WidthBuckets(base, config, layer, step=2, num_buckets=3, method=method)


def logprobs_fn(config):
    decoder = build_decoder(config, VOCAB)
    rng = np.random.default_rng(0)
    feats = {"fc": jnp.asarray(rng.normal(size=(2, 5)), jnp.float32)}
    labels = jnp.asarray(rng.integers(1, VOCAB + 1, (2, 2, 10)))
    return jax.jit(lambda p: teacher_forced_logprobs(decoder, p, feats, labels))


def test_masks_pad_and_unpad():
    buckets = buckets_for()
    masks = buckets.masks
    for k in range(3):
        assert masks[k].sum() == num_params(buckets.params_at(k))
        row = buckets.pad(buckets.params_at(k), k)
        assert row.shape == (masks.shape[1],) and not row[masks[k] == 0].any()
        back = buckets.unpad(row, k)
        for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(buckets.params_at(k))):
            np.testing.assert_array_equal(a, b)
    assert list(buckets.padded_config().hidden_sizes) == [6, 10]


@pytest.mark.parametrize("method", ["r2r", "net2net"])
def test_padded_and_widened_rows_compute_their_bucket_decoder(method):
    buckets = buckets_for(method=method)
    _, unravel = ravel_pytree(buckets.params_at(2))
    padded = logprobs_fn(buckets.padded_config())
    reference = logprobs_fn(buckets.model_config)(buckets.base)
    row0 = buckets.pad(buckets.base, 0)
    row1 = buckets.widen_row(row0, 0, seed=1)
    row2 = buckets.widen_row(row1, 1, seed=2)
    rows = np.stack([row0, row1, row2])
    np.testing.assert_array_equal(row_buckets(rows, buckets.masks), [0, 1, 2])
    for row in rows:  # one compiled decoder for every width
        np.testing.assert_allclose(padded(unravel(row)), reference, atol=1e-5)
    old = buckets.masks[0] > 0
    if method == "r2r":  # old entries untouched; net2net divides outgoing rows
        np.testing.assert_array_equal(row1[old], row0[old])


def test_masked_mutations_keep_each_member_in_its_bucket():
    buckets = buckets_for("fc", layer=0)
    row0 = buckets.pad(buckets.base, 0)
    rows = np.stack([row0, buckets.widen_row(row0, 0, 1)])
    scale = mutation_scale(rows, buckets.masks)
    noisy = rows + 0.1 * np.random.default_rng(0).normal(size=rows.shape) * scale
    np.testing.assert_array_equal(row_buckets(noisy, buckets.masks), [0, 1])
    _, unravel = ravel_pytree(buckets.params_at(2))
    padded = logprobs_fn(buckets.padded_config())(unravel(noisy[0]))
    alone = logprobs_fn(buckets.config_at(0))(buckets.unpad(noisy[0], 0))
    np.testing.assert_allclose(padded, alone, atol=1e-5)  # a bucket-0 decoder
    # through the GA: children of masked parents keep their parent's bucket
    ga = GA(unravel(row0), population_size=6, num_parents=3, num_elites=1)
    state = ga.init(unravel(row0), sigma=0.1)
    state = state.replace(parents=jnp.asarray(np.stack([row0, rows[1], row0])))
    population, _ = ga.ask(
        jax.random.key(0), state, mutation_scale(state.parents, buckets.masks)
    )
    children = jnp.stack(
        [
            population_lib.member_params(population, noise_lib.generated(), m)
            for m in range(6)
        ]
    )
    expected = row_buckets(state.parents, buckets.masks)[population.parent]
    np.testing.assert_array_equal(row_buckets(children, buckets.masks), expected)
    assert float(jnp.abs(children - state.parents[population.parent]).max()) > 0


def test_mutate_architectures_widens_with_the_probability():
    buckets = buckets_for("fc", layer=0)
    row0 = buckets.pad(buckets.base, 0)
    rows = np.stack([row0, row0, buckets.widen_row(buckets.widen_row(row0, 0), 1)])
    same, kept = mutate_architectures(buckets, rows, [0, 0, 2], 0.0, seed=0)
    np.testing.assert_array_equal(same, rows)
    np.testing.assert_array_equal(kept, [0, 0, 2])
    grown, widths = mutate_architectures(buckets, rows, [0, 0, 2], 1.0, seed=0)
    np.testing.assert_array_equal(widths, [1, 1, 2])
    np.testing.assert_array_equal(row_buckets(grown, buckets.masks), widths)
    assert (grown[0] != grown[1]).any()  # each row draws its own new weights
