"""The vocabulary projection with its bias folded into the matmul."""

import jax
import numpy as np
from flax import nnx
from jax import lax

from nic_jax.models.layers import output_logits


def _layer():
    layer = nnx.Linear(24, 1000, rngs=nnx.Rngs(0))
    layer.bias[...] = jax.random.normal(jax.random.key(1), (1000,))
    return layer


def test_output_logits_are_the_layer_with_the_bias_inside_the_matmul():
    layer = _layer()
    x = jax.random.normal(jax.random.key(2), (3, 5, 24))
    got = output_logits(layer, x)
    want = np.asarray(x) @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got.shape == (3, 5, 1000)
    if jax.default_backend() == "cpu":  # one dot over the stacked matrix
        hlo = str(jax.make_jaxpr(lambda v: output_logits(layer, v))(x))
        assert "concatenate" in hlo and "add" not in hlo


def test_a_layer_with_its_own_dot_general_is_called_as_it_is():
    layer = _layer()
    layer.dot_general = lambda lhs, rhs, *args, **kwargs: (
        2.0 * lax.dot_general(lhs, rhs, *args, **kwargs)
    )
    x = jax.random.normal(jax.random.key(3), (4, 24))
    np.testing.assert_allclose(output_logits(layer, x), layer(x), rtol=1e-6)
    np.testing.assert_allclose(
        output_logits(layer, x),
        2.0 * x @ layer.kernel[...] + layer.bias[...],
        rtol=1e-5,
        atol=1e-5,
    )
