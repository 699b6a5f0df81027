"""Reading images as self-critical.pytorch's `prepro_feats.py` / `DataLoaderRaw` do.

RGB (a grayscale image is repeated over three channels), float32 in [0, 1], then
normalised per channel with the ImageNet mean and std torchvision's ResNets were
trained with. No resize unless asked: upstream feeds each image at its own size.
"""

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from nic_jax.errors import InputError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".gif", ".webp")


def list_images(folder: str) -> list[str]:
    """Image files under `folder` (recursively), as sorted paths relative to it."""
    if not os.path.isdir(folder):
        raise InputError(f"--image_folder={folder!r} is not a directory")
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    if not found:
        raise InputError(
            f"{folder}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return sorted(found)


def load_image(path: str, image_size: int = 0) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]; bilinear-resized to (image_size,) * 2 if > 0."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image_size > 0:
                image = image.resize((image_size, image_size), Image.BILINEAR)
            pixels = np.asarray(image, np.uint8)
    except FileNotFoundError:
        raise InputError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable image ({error})") from None
    return pixels.astype(np.float32) / 255.0


def normalize(image: np.ndarray) -> np.ndarray:
    """(..., 3) in [0, 1] -> (x - mean) / std per channel, float32."""
    return (image - IMAGENET_MEAN) / IMAGENET_STD
