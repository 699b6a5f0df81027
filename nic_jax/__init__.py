"""nic_jax: image-caption decoders trained by gradient and by evolution, in JAX.

Cross-entropy (XE), self-critical sequence training (SCST, Rennie et al. 2017),
NIC-NES and NIC-ES (es-img-captioning) over one pure decoder; see DESIGN.md.
"""

__version__ = "0.1.0"

from nic_jax import xla_flags as _xla_flags

# Before JAX starts its backend (which reads XLA_FLAGS once): importing nic_jax
# first is enough, in a program or a notebook (nic_jax/xla_flags.py says why).
_xla_flags.add_default_xla_flags()
