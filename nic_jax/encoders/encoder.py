"""The image encoder as pure functions of a params dict: images -> fc and att features.

Mirrors self-critical.pytorch `misc/resnet_utils.py` `myResnet.forward`: run the
ResNet to its last stage, then `fc` = the spatial mean (B, 2048) and `att` =
`adaptive_avg_pool2d(x, [att_size, att_size])` laid out region-major
(B, att_size**2, 2048), the (K, D) layout the feature loaders read (upstream saves
(att_size, att_size, 2048) and its loader reshapes it to this).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nic_jax.encoders.resnet import FEATURE_SIZE, ResNet
from nic_jax.errors import InputError

MODELS = {"resnet50": 50, "resnet101": 101, "resnet152": 152}


def model_depth(name: str) -> int:
    """50, 101 or 152 for 'resnet50', 'resnet101', 'resnet152'."""
    if name not in MODELS:
        raise InputError(f"--model={name!r} is unknown; valid: {sorted(MODELS)}")
    return MODELS[name]


def adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging weights of torch's adaptive_avg_pool over one axis:
    output i averages inputs floor(i * size / out) .. ceil((i + 1) * size / out) - 1.
    """
    weights = np.zeros((out, size), np.float32)
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def pool_features(fmap: jax.Array, att_size: int):
    """fmap (B, h, w, C) -> fc (B, C), att (B, att_size**2, C) (None if att_size 0)."""
    fc = fmap.mean(axis=2).mean(axis=1)  # upstream: x.mean(3).mean(2)
    if att_size <= 0:
        return fc, None
    rows = jnp.asarray(adaptive_pool_matrix(fmap.shape[1], att_size))
    cols = jnp.asarray(adaptive_pool_matrix(fmap.shape[2], att_size))
    att = jnp.einsum(
        "ih,jw,bhwc->bijc", rows, cols, fmap, precision=jax.lax.Precision.HIGHEST
    )
    return fc, att.reshape(fmap.shape[0], att_size * att_size, fmap.shape[-1])


@dataclasses.dataclass(frozen=True)
class ImageEncoder:
    """Pure view of a ResNet; `graphdef` is static and hashable."""

    name: str
    variant: str
    graphdef: nnx.GraphDef
    feature_size: int = FEATURE_SIZE

    def feature_map(self, params, images):
        """Normalised images (B, H, W, 3) -> (B, h, w, 2048)."""
        return nnx.merge(self.graphdef, params)(images)

    @functools.partial(jax.jit, static_argnames=("self", "att_size"))
    def features(self, params, images, att_size: int = 14):
        """Normalised images (B, H, W, 3) -> fc (B, 2048), att (B, att_size**2,
        2048); one compilation per image shape and att_size."""
        return pool_features(self.feature_map(params, images), att_size)


def _make(name: str, variant: str, key) -> ResNet:
    return ResNet(model_depth(name), variant, nnx.Rngs(params=key))


def build_encoder(name: str = "resnet101", variant: str = "caffe") -> ImageEncoder:
    """The pure encoder for --model `name` (resnet50/101/152) and `variant`."""
    abstract = nnx.eval_shape(lambda: _make(name, variant, jax.random.key(0)))
    graphdef, _ = nnx.split(abstract)
    return ImageEncoder(name, variant, graphdef)


@functools.lru_cache(maxsize=8)
def abstract_params(name: str, variant: str = "caffe") -> dict:
    """The params tree of `name` as jax.ShapeDtypeStruct leaves (no memory);
    cached, so treat it as read-only."""
    abstract = nnx.eval_shape(lambda: _make(name, variant, jax.random.key(0)))
    return nnx.to_pure_dict(nnx.state(abstract))


def init_params(name: str, variant: str = "caffe", seed: int = 0) -> dict:
    """Random params for tests and shape checks (never for users' features):
    kernels He-normal over fan-out as torchvision initialises, biases 0. Drawn with
    numpy, which is ~100x faster here than tracing 100+ initialisers."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        if len(leaf.shape) == 1:
            return np.zeros(leaf.shape, np.float32)
        kh, kw, _, out = leaf.shape
        std = np.sqrt(2.0 / (kh * kw * out))
        return (rng.standard_normal(leaf.shape) * std).astype(np.float32)

    return jax.tree.map(draw, abstract_params(name, variant))
