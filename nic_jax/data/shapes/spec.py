"""`ShapesSpec`: every setting that changes the generated shapes dataset."""

import dataclasses

from nic_jax.errors import InputError

SPLITS = ("train", "val", "test")
LAYOUTS = ("h5", "dirs", "both")


@dataclasses.dataclass(frozen=True)
class ShapesSpec:
    """What to generate; the dataset's cache directory is named by its hash.

    Attributes:
      num_train, num_val, num_test: images per split (ids 0..N-1 in that order).
      image_size: side of the square images, pixels.
      num_regions: K, regions per image (objects, distractors, background crops).
      feat_dim: D, feature width.
      noise: std of the Gaussian noise added to every region feature before ReLU
        (the noiseless signal has std about 1 per dimension).
      seed: the dataset seed: scenes, captions, images, features and projection.
      write_images: render `images/<id>.png`.
      layout: features as one h5 per split ("h5"), cocobu directories ("dirs"),
        or both.
    """

    num_train: int = 8000
    num_val: int = 1000
    num_test: int = 1000
    image_size: int = 128
    num_regions: int = 10
    feat_dim: int = 2048
    noise: float = 0.5
    seed: int = 0
    write_images: bool = True
    layout: str = "h5"

    def __post_init__(self):
        object.__setattr__(self, "noise", float(self.noise))  # 1 and 1.0: one hash
        for name in ("num_train", "num_val", "num_test"):
            _check(getattr(self, name) >= 0, name, "must be >= 0")
        _check(self.image_size >= 32, "image_size", "must be >= 32")
        _check(self.num_regions >= 3, "num_regions", "must be >= 3 (max objects)")
        _check(self.feat_dim >= 1, "feat_dim", "must be >= 1")
        _check(self.noise >= 0, "noise", "must be >= 0")
        _check(self.layout in LAYOUTS, "layout", f"must be one of {LAYOUTS}")

    @property
    def split_sizes(self) -> tuple[int, int, int]:
        return (self.num_train, self.num_val, self.num_test)

    @property
    def num_images(self) -> int:
        return sum(self.split_sizes)


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise InputError(f"shapes spec: {field} {message}")
