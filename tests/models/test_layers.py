"""Linear layers with their bias folded into the matmul (the vocabulary
projection, the FC model's gates), in f32 and at bfloat16 precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from nic_jax.models.layers import folded_linear, kernels_for_steps


def _layer():
    layer = nnx.Linear(24, 1000, rngs=nnx.Rngs(0))
    layer.bias[...] = jax.random.normal(jax.random.key(1), (1000,))
    return layer


def test_folded_linear_is_the_layer_with_the_bias_inside_the_matmul():
    layer = _layer()
    x = jax.random.normal(jax.random.key(2), (3, 5, 24))
    got = folded_linear(layer, x)
    want = np.asarray(x) @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got.shape == (3, 5, 1000)
    if jax.default_backend() == "cpu":  # one dot over the stacked matrix
        jaxpr = jax.make_jaxpr(lambda v: folded_linear(layer, v))(x).jaxpr
        primitives = {eqn.primitive.name for eqn in jaxpr.eqns}
        assert "concatenate" in primitives and "add" not in primitives


@pytest.mark.parametrize("precision", ["default", "bfloat16"])
def test_a_layer_with_its_own_dot_general_is_called_as_it_is(precision):
    """Also at "bfloat16": such a function may not take preferred_element_type
    (flax calls it without), so it gets f32 operands and no extra keyword."""
    layer = _layer()
    layer.dot_general = lambda lhs, rhs, dims, precision=None, out_sharding=None: (
        2.0 * lax.dot_general(lhs, rhs, dims, precision=precision)
    )
    x = jax.random.normal(jax.random.key(3), (4, 24))
    with jax.default_matmul_precision(precision):
        np.testing.assert_allclose(folded_linear(layer, x), layer(x), rtol=1e-6)
    np.testing.assert_allclose(
        folded_linear(layer, x),
        2.0 * x @ layer.kernel[...] + layer.bias[...],
        rtol=1e-5,
        atol=1e-5,
    )


def test_layers_without_a_bias_or_with_settings_of_their_own_are_called_as_they_are():
    x = jax.random.normal(jax.random.key(4), (4, 24))
    for layer in (
        nnx.Linear(24, 100, use_bias=False, rngs=nnx.Rngs(0)),
        nnx.Linear(24, 100, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)),
        nnx.Linear(24, 100, precision=lax.Precision.HIGHEST, rngs=nnx.Rngs(0)),
    ):
        got = folded_linear(layer, x)
        assert got.dtype == layer(x).dtype
        np.testing.assert_array_equal(got, layer(x))


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_bfloat16_precision_multiplies_bf16_operands_into_f32_sums(
    backend, monkeypatch
):
    """On a CPU the bias is folded in (rounded to bf16 with the kernel); on a
    GPU (the backend's name stubbed: only the choice of ops is under test) it
    is added in f32 after the bf16 product, which XLA:GPU alone would run as
    TF32."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    layer = _layer()
    x = jax.random.normal(jax.random.key(5), (6, 24))
    with jax.default_matmul_precision("bfloat16"):
        got = folded_linear(layer, x)
        jaxpr = jax.make_jaxpr(lambda v: folded_linear(layer, v))(x).jaxpr
    assert got.dtype == jnp.float32
    [dot] = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "dot_general"]
    assert [v.aval.dtype for v in dot.invars] == [jnp.bfloat16] * 2
    rounded = lambda a: np.asarray(jnp.asarray(a).astype(jnp.bfloat16), np.float64)
    bias = layer.bias[...]
    bias = rounded(bias) if backend == "cpu" else np.asarray(bias, np.float64)
    want = rounded(x) @ rounded(layer.kernel[...]) + bias
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    exact = np.asarray(x, np.float64) @ np.asarray(layer.kernel[...], np.float64)
    exact += np.asarray(layer.bias[...], np.float64)
    assert np.abs(np.asarray(got) - exact).max() > 1e-3  # bf16 rounding shows


def test_a_dot_general_that_adds_the_bias_gets_it():
    """The low-rank population's dot_general (`adds_bias`) adds the layer's
    bias itself (inside its product, in the grouped form): folded_linear hands
    it over and adds none of its own."""
    layer = _layer()
    calls = []

    def dot_general(lhs, rhs, dims, precision=None, bias=None, **kwargs):
        calls.append(bias)
        return lax.dot_general(lhs, rhs, dims, precision=precision) + 3.0 * bias

    dot_general.adds_bias = True
    dot_general.stacks_rows = lambda rows: False
    layer.dot_general = dot_general
    x = jax.random.normal(jax.random.key(6), (4, 24))
    got = folded_linear(layer, x)
    np.testing.assert_array_equal(calls[0], layer.bias[...])
    want = x @ layer.kernel[...] + 3.0 * layer.bias[...]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_kernels_for_steps_casts_the_vocabulary_projections_at_bfloat16_only():
    """By the keys of a leaf's path: dict keys, attribute names, an nnx.State's
    trailing "value"; other kernels stay f32 (layers that read them as
    `layer(x)` would otherwise see them rounded)."""
    import dataclasses

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class Holder:
        kernel: jax.Array

    params = {
        "logit": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
        "core": {"i2h": {"kernel": jnp.ones((3, 4))}},
        "embed": {"embedding": jnp.ones((5, 3))},
        "members": [{"output_layer": {"kernel": jnp.ones((3, 4))}}],
        "stacked": {"logit": {"kernel": jnp.ones((2, 3, 4))}},
        "output_layer": Holder(jnp.ones((3, 2))),
    }
    assert kernels_for_steps(params) is params
    with jax.default_matmul_precision("bfloat16"):
        cast = kernels_for_steps(params)
        linear = nnx.state(nnx.Linear(3, 4, rngs=nnx.Rngs(0)))
        state = kernels_for_steps(linear)
        logit = kernels_for_steps({"logit": linear})
    dtypes = jax.tree.map(lambda leaf: leaf.dtype, cast)
    assert dtypes["logit"] == {"kernel": jnp.bfloat16, "bias": jnp.float32}
    assert dtypes["core"]["i2h"]["kernel"] == jnp.float32
    assert dtypes["embed"]["embedding"] == jnp.float32
    assert dtypes["members"][0]["output_layer"]["kernel"] == jnp.bfloat16
    assert dtypes["stacked"]["logit"]["kernel"] == jnp.float32  # not 2-D
    assert dtypes["output_layer"].kernel == jnp.bfloat16
    assert state["kernel"][...].dtype == jnp.float32  # no projection's name
    assert logit["logit"]["kernel"][...].dtype == jnp.bfloat16
    np.testing.assert_array_equal(cast["logit"]["kernel"], params["logit"]["kernel"])
