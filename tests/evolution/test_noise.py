"""Member noise: reproducible from (key, index), N(0, 1), table slices, and the
chunked weighted sum equal to the explicit sum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nic_jax.errors import InputError
from nic_jax.evolution import noise as noise_lib


def _noise(source, key, indices, num_params):
    fn = jax.jit(
        jax.vmap(lambda i: noise_lib.standard_noise(source, key, i, num_params))
    )
    return np.asarray(fn(jnp.asarray(indices)))


@pytest.mark.parametrize("chunk_size", [0, 1000])
def test_generated_noise_is_standard_normal_and_reproducible(chunk_size):
    source = noise_lib.generated(chunk_size)
    key = jax.random.key(0)
    eps = _noise(source, key, [0, 1, 2, 3], 5000)
    np.testing.assert_array_equal(eps, _noise(source, key, [0, 1, 2, 3], 5000))
    assert abs(eps.mean()) < 0.03 and abs(eps.std() - 1) < 0.03
    # Distinct members and distinct generation keys are uncorrelated.
    other = _noise(source, jax.random.key(1), [0], 5000)[0]
    for a, b in [(eps[0], eps[1]), (eps[0], other)]:
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.05


def test_chunked_draw_fills_every_parameter():
    eps = _noise(noise_lib.generated(chunk_size=300), jax.random.key(0), [7], 1001)
    assert eps.shape == (1, 1001)
    # Chunks come from different keys: no chunk repeats another.
    assert not np.allclose(eps[0, :300], eps[0, 300:600])


def test_table_noise_is_a_slice_of_the_table():
    source = noise_lib.shared_table(seed=0, size=2000)
    table = np.asarray(source.table)
    eps = _noise(source, jax.random.key(3), np.arange(6), 150)
    for row in eps:
        offsets = [
            o for o in range(2000 - 150 + 1) if np.array_equal(table[o : o + 150], row)
        ]
        assert len(offsets) == 1
    assert len({tuple(r[:3]) for r in eps}) == 6  # different offsets per member


def test_table_smaller_than_model_is_refused():
    source = noise_lib.shared_table(seed=0, size=10)
    with pytest.raises(InputError, match="noise table has 10 floats"):
        noise_lib.standard_noise(source, jax.random.key(0), 0, 11)


@pytest.mark.parametrize("source_name", ["generated", "table"])
@pytest.mark.parametrize("chunk_size", [1, 3, 32])
def test_weighted_noise_sum_equals_explicit_sum(source_name, chunk_size):
    source = {
        "generated": noise_lib.generated(),
        "table": noise_lib.shared_table(seed=1, size=400),
    }[source_name]
    key = jax.random.key(2)
    indices = jnp.array([4, 0, 9, 2, 5, 11, 3])
    weights = jax.random.normal(jax.random.key(5), (7,))
    got = jax.jit(noise_lib.weighted_noise_sum, static_argnums=(4, 5))(
        source, key, indices, weights, 100, chunk_size
    )
    eps = _noise(source, key, indices, 100)
    np.testing.assert_allclose(got, np.asarray(weights) @ eps, rtol=1e-5, atol=1e-5)
