"""nic_jax: image-caption decoders trained by gradient and by evolution, in JAX.

Cross-entropy (XE), self-critical sequence training (SCST, Rennie et al. 2017),
NIC-NES and NIC-ES (es-img-captioning) over one pure decoder; see DESIGN.md.
"""

__version__ = "0.1.0"
