"""Image encoders: ResNet features from raw images, as self-critical.pytorch's
`prepro_feats.py` computes them (`python -m nic_jax.prepro feats ...`)."""

from nic_jax.encoders.encoder import (
    MODELS,
    ImageEncoder,
    abstract_params,
    build_encoder,
    init_params,
    pool_features,
)
from nic_jax.encoders.extract import iter_features, write_feature_dirs
from nic_jax.encoders.images import list_images, load_image, normalize
from nic_jax.encoders.weights import from_torchvision, load_weights, save_npz

__all__ = [
    "MODELS",
    "ImageEncoder",
    "abstract_params",
    "build_encoder",
    "from_torchvision",
    "init_params",
    "iter_features",
    "list_images",
    "load_image",
    "load_weights",
    "normalize",
    "pool_features",
    "save_npz",
    "write_feature_dirs",
]
