"""The FLOP count behind the decode and xe_step rooflines: 2 m n k a dot,
counted on the program before the backend's passes (XLA:GPU's compiled count
leaves out the dots it hands to cuBLAS)."""

import jax.numpy as jnp

from nic_jax.benchmarks import workload


def test_xla_flops_counts_each_dot_as_2mnk_before_the_backend_passes():
    """Two equal dots: the program as written has both; a compiled one, after
    common-subexpression elimination, one (so a compiled count would fail)."""
    a, b = jnp.ones((64, 256)), jnp.ones((256, 1000))
    flops = workload.xla_flops(lambda a, b: jnp.tanh(a @ b) + (a @ b), a, b)
    dots = 2 * (2 * 64 * 256 * 1000)
    assert dots <= flops <= dots + 64 * 1000  # and the add's 64,000
