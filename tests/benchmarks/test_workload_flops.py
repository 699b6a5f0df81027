"""The FLOP count behind the decode and xe_step rooflines: 2 m n k a dot,
counted on the program before the backend's passes (XLA:GPU's compiled count
leaves out the dots it hands to cuBLAS)."""

import jax.numpy as jnp

from nic_jax.benchmarks import workload


def test_xla_flops_counts_each_dot_as_2mnk():
    a, b = jnp.ones((64, 256)), jnp.ones((256, 1000))
    flops = workload.xla_flops(lambda a, b: jnp.tanh(a @ b) @ b.T, a, b)
    assert flops == 2 * (2 * 64 * 256 * 1000)
