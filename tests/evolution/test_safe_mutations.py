"""Safe mutations against brute-force per-group / per-sample gradients, and the
SM-PROPORTIONAL / SM-VECTOR definitions of es-img-captioning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from ml_collections import ConfigDict

from nic_jax.errors import InputError
from nic_jax.evolution import safe_mutations as sm
from nic_jax.models.functional import build_decoder, init_params

X = jax.random.normal(jax.random.key(7), (4, 5))


def _params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"w1": jax.random.normal(k1, (5, 6)), "w2": jax.random.normal(k2, (6, 12))}


def _outputs(params, x=X):
    """(B, 12) log-softmax outputs, as three groups of four: (B, 3, 4)."""
    logits = jnp.tanh(x @ params["w1"]) @ params["w2"]
    return jax.nn.log_softmax(logits).reshape(x.shape[0], 3, 4)


def _group_norms(params, x=X):
    return jnp.sqrt(jnp.sum(_outputs(params, x) ** 2, axis=-1))


def _flat_grad(fn, params):
    return ravel_pytree(jax.grad(fn)(params))[0]


@pytest.mark.parametrize("group_chunk", [1, 2, 16])
def test_grad_sum_equals_brute_force_per_group(group_chunk):
    params = _params()
    got = jax.jit(sm.grad_sum_sensitivity, static_argnums=(0, 2))(
        _outputs, params, group_chunk
    )
    rows = [
        _flat_grad(lambda p, k=k: _group_norms(p)[:, k].sum(), params) for k in range(3)
    ]
    expected = np.sqrt(np.sum(np.stack(rows) ** 2, axis=0)) / 4
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_grad_abs_equals_brute_force_per_sample_forward():
    params = _params()
    got = sm.grad_abs_sensitivity(_outputs, params)
    total = 0.0
    for k in range(3):
        per_sample = [
            np.abs(
                _flat_grad(
                    lambda p, i=i, k=k: _group_norms(p, X[i : i + 1])[0, k], params
                )
            )
            for i in range(4)
        ]
        total = total + np.mean(per_sample, axis=0) ** 2
    np.testing.assert_allclose(got, np.sqrt(total), rtol=1e-5, atol=1e-7)


def test_two_dim_outputs_are_used_as_groups():
    params = _params()
    flat_out = lambda p: _outputs(p).reshape(4, 12)
    got = sm.grad_sum_sensitivity(flat_out, params)
    rows = [
        _flat_grad(lambda p, k=k: flat_out(p)[:, k].sum(), params) for k in range(12)
    ]
    np.testing.assert_allclose(
        got, np.sqrt(np.sum(np.stack(rows) ** 2, 0)) / 4, rtol=1e-5, atol=1e-7
    )


def test_mutation_scale_floors_and_inverts():
    params = _params()
    raw = sm.grad_sum_sensitivity(_outputs, params)
    underflow = float(np.median(raw))
    scale = sm.mutation_scale("SM-G-SUM", params, _outputs, underflow)
    np.testing.assert_allclose(scale, underflow / np.maximum(raw, underflow), rtol=1e-6)
    assert float(scale.max()) == pytest.approx(1.0)


def test_proportional_replaces_exact_zeros_by_mean_magnitude():
    theta = jnp.array([0.0, -2.0, 0.5, 0.0, 1.5])
    np.testing.assert_allclose(
        sm.proportional_scale(theta), [0.8, 2.0, 0.5, 0.8, 1.5], rtol=1e-6
    )
    params = {"a": theta}
    np.testing.assert_allclose(
        sm.mutation_scale("SM-PROPORTIONAL", params), sm.proportional_scale(theta)
    )
    assert sm.mutation_scale("", params) is None


def test_sensitivity_vector_file(tmp_path):
    path = tmp_path / "sens.npy"
    np.save(path, np.array([0.5, 0.01, 2.0, 0.1], np.float32))
    vector = sm.load_sensitivity_vector(str(path), 4, underflow=0.1)
    np.testing.assert_allclose(vector, [5.0, 1.0, 20.0, 1.0], rtol=1e-6)
    scale = sm.mutation_scale("SM-VECTOR", {"a": jnp.zeros(4)}, vector=vector)
    np.testing.assert_allclose(scale, [0.2, 1.0, 0.05, 1.0], rtol=1e-6)
    with pytest.raises(InputError, match=r"has 4 entries but the model has 5"):
        sm.load_sensitivity_vector(str(path), 5, underflow=0.1)
    with pytest.raises(InputError, match="cannot read"):
        sm.load_sensitivity_vector(str(tmp_path / "missing.npy"), 4, 0.1)


def test_unknown_kind_and_missing_outputs_fn():
    with pytest.raises(InputError, match="SM-G-MAX"):
        sm.mutation_scale("SM-G-MAX", _params())
    with pytest.raises(InputError, match="needs an outputs_fn"):
        sm.mutation_scale("SM-G-SUM", _params())


def test_caption_outputs_after_greedy_steps_on_fc_decoder():
    config = ConfigDict(
        dict(
            name="fc",
            fc_feat_size=6,
            input_encoding_size=5,
            rnn_size=5,
            drop_prob_lm=0.5,
        )
    )
    decoder = build_decoder(config, vocab_size=20)
    params = init_params(config, 20, jax.random.key(0))
    feats = {"fc": jax.random.normal(jax.random.key(1), (3, 6))}
    outputs_fn = sm.greedy_logprob_groups(decoder, feats, steps=5, group_size=8)
    out = outputs_fn(params)
    assert out.shape == (3, 3, 8)  # 21 log-probs padded to 24
    np.testing.assert_array_equal(out[:, 2, 5:], 0.0)
    np.testing.assert_allclose(
        jnp.exp(out.reshape(3, 24)[:, :21]).sum(-1), 1.0, rtol=1e-5
    )

    got = sm.grad_sum_sensitivity(outputs_fn, params, group_chunk=2)
    norms = lambda p: jnp.sqrt(jnp.sum(outputs_fn(p) ** 2, -1))
    rows = [_flat_grad(lambda p, k=k: norms(p)[:, k].sum(), params) for k in range(3)]
    expected = np.sqrt(np.sum(np.stack(rows) ** 2, 0)) / 3
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert np.all(np.isfinite(got))


def test_scale_rows_per_parent():
    rows = jax.random.normal(jax.random.key(3), (3, 102))
    unravel = ravel_pytree(_params())[1]
    got = sm.scale_rows("SM-G-SUM", unravel, rows, outputs_fn=_outputs, underflow=0.1)
    for row, scale in zip(rows, got):
        expected = sm.mutation_scale("SM-G-SUM", unravel(row), _outputs, 0.1)
        np.testing.assert_allclose(scale, expected, rtol=1e-5)
    assert sm.scale_rows("", unravel, rows) is None
