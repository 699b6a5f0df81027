"""Captions a folder of images with a trained workdir, as self-critical.pytorch's
`eval.py --image_folder`:

  python -m nic_jax.caption --workdir=/tmp/coco_fc --image_folder=photos/ \
    --weights=data/imagenet_weights/resnet101.pth [--beam_size=3] [--num_images=10]

Features come from the ResNet of `prepro_feats.py` (`--model`, `--variant`), with
weights from the local file `--weights` (required: the decoder only understands the
features it was trained on, so random ones are never substituted). Writes
`<workdir>/vis/vis.json` ([{image_id, file_name, caption}]) and
`<workdir>/vis/index.html` (each image with its caption, and the dataset's
references when the image is in the run's Karpathy json).
"""

from absl import flags

from nic_jax import app
from nic_jax.evaluation.folder import caption_folder

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir to caption with.")
_FOLDER = flags.DEFINE_string("image_folder", None, "Folder of images (recursive).")
_WEIGHTS = flags.DEFINE_string(
    "weights", "", "ResNet weights: .npz (nic_jax) or torchvision-layout .pth."
)
_MODEL = flags.DEFINE_enum(
    "model", "resnet101", ["resnet50", "resnet101", "resnet152"], "The CNN."
)
_VARIANT = flags.DEFINE_enum(
    "variant",
    "caffe",
    ["caffe", "torchvision"],
    "caffe: self-critical's misc/resnet.py and imagenet_weights; torchvision: "
    "torchvision's ImageNet files.",
)
_BEAM = flags.DEFINE_integer("beam_size", None, "Beam size; default: config.evals.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", -1, "Images to caption; -1: all.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default: best, else last.")
_ATT_SIZE = flags.DEFINE_integer("att_size", 14, "Region grid of attention models.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 0, "Resize to NxN first; 0: no.")
_OUTPUT = flags.DEFINE_string("output_dir", "", "Default: <workdir>/vis.")
_COPY = flags.DEFINE_boolean("copy_images", False, "Copy images beside the page.")


def main(argv) -> None:
    del argv
    entries = caption_folder(
        _WORKDIR.value,
        _FOLDER.value,
        _WEIGHTS.value,
        model=_MODEL.value,
        variant=_VARIANT.value,
        beam_size=_BEAM.value,
        num_images=_NUM_IMAGES.value,
        step=_STEP.value,
        att_size=_ATT_SIZE.value,
        image_size=_IMAGE_SIZE.value,
        output_dir=_OUTPUT.value,
        copy_images=_COPY.value,
    )
    for entry in entries:
        print(f"{entry['file_name']}: {entry['caption']}")


def run() -> None:
    flags.mark_flags_as_required(["workdir", "image_folder"])
    app.run(main)


if __name__ == "__main__":
    run()
