"""The embedded synthetic "shapes" captioning dataset (no download needed).

Scenes of 1-3 coloured shapes on cluttered gray backgrounds, 5 paraphrased reference
captions per image (colours, shapes, sizes, counts, spatial relations), rendered PNGs
and bottom-up-style region features; see `generate` for the files and `ShapesSpec`
for the settings.

    root = generate(ShapesSpec(num_train=800, num_val=100, num_test=100))
"""

from nic_jax.data.shapes.cache import default_cache_dir
from nic_jax.data.shapes.generate import generate
from nic_jax.data.shapes.spec import ShapesSpec

__all__ = ["ShapesSpec", "default_cache_dir", "generate"]
