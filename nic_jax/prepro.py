"""Preprocessing command line, compatible with self-critical.pytorch's scripts.

  python -m nic_jax.prepro labels --input_json data/dataset_coco.json \
      --output_json data/cocotalk.json --output_h5 data/cocotalk
  python -m nic_jax.prepro shapes --out_dir /tmp/shapes [--num_train 8000 ...]
  python -m nic_jax.prepro feats --images_root data/images \
      --weights data/imagenet_weights/resnet101.pth --output_dir data/cocotalk
  python -m nic_jax.prepro ngrams --dict_json data/cocotalk.json \
      --input_json data/dataset_coco.json --output_pkl data/coco-train

`labels` is `scripts/prepro_labels.py` (vocabulary with UNK for words seen <= 5
times, `<output_h5>_label.h5` with 1-based start/end indices); `shapes` generates the
synthetic dataset of the default config into a directory of your choice; `ngrams`
is `scripts/prepro_ngrams.py` (CIDEr-D document frequencies of a split's references,
from the dataset json or, with `--label_h5`, from the cocotalk labels); `feats` is
`scripts/prepro_feats.py` (ResNet `<output_dir>_fc/<id>.npy` and `_att/<id>.npz`,
weights from a local file only; ids from `--input_json` as upstream, else file names).
"""

import argparse
import sys

from nic_jax.errors import InputError


def _labels(args) -> None:
    from nic_jax.data.prepro_labels import prepro_labels

    prepro_labels(
        args.input_json,
        args.output_json,
        args.output_h5,
        max_length=args.max_length,
        word_count_threshold=args.word_count_threshold,
        images_root=args.images_root,
    )
    print(f"wrote {args.output_json} and {args.output_h5}_label.h5")


def _shapes(args) -> None:
    from nic_jax.data import shapes

    spec = shapes.ShapesSpec(
        num_train=args.num_train,
        num_val=args.num_val,
        num_test=args.num_test,
        feat_dim=args.feat_dim,
        seed=args.seed,
    )
    print(shapes.generate(spec, args.out_dir))


def _ngrams(args) -> None:
    from nic_jax.data.prepro_ngrams import prepro_ngrams

    paths = prepro_ngrams(
        args.dict_json,
        args.output_pkl,
        split=args.split,
        input_json=args.input_json,
        label_h5=args.label_h5,
    )
    print("wrote " + " ".join(paths))


def _add_ngrams(sub) -> None:
    ngrams = sub.add_parser(
        "ngrams", help="CIDEr-D document frequencies (prepro_ngrams.py)"
    )
    ngrams.add_argument("--dict_json", required=True, help="cocotalk json (vocabulary)")
    ngrams.add_argument("--input_json", default="", help="Karpathy dataset json")
    ngrams.add_argument("--label_h5", default="", help="or: cocotalk _label.h5")
    ngrams.add_argument(
        "--output_pkl",
        required=True,
        help="prefix; writes <prefix>.npz, <prefix>-words.p, <prefix>-idxs.p",
    )
    ngrams.add_argument(
        "--split", default="train", help="train (+restval), val, test, all"
    )
    ngrams.set_defaults(run=_ngrams)


def _feats(args) -> None:
    from nic_jax.encoders import write_feature_dirs

    dirs = write_feature_dirs(
        args.images_root,
        args.weights,
        args.output_dir,
        model=args.model,
        variant=args.variant,
        att_size=args.att_size,
        input_json=args.input_json,
        image_size=args.image_size,
        batch_size=args.batch_size,
    )
    print("wrote " + " ".join(dirs))


def _add_feats(sub) -> None:
    feats = sub.add_parser(
        "feats", help="ResNet fc/att features of raw images (prepro_feats.py)"
    )
    feats.add_argument("--images_root", required=True, help="folder of images")
    feats.add_argument(
        "--weights", required=True, help="local .npz or torchvision-layout .pth"
    )
    feats.add_argument("--output_dir", required=True, help="writes <dir>_fc, <dir>_att")
    feats.add_argument("--model", default="resnet101", help="resnet50/101/152")
    feats.add_argument(
        "--variant",
        default="caffe",
        choices=("caffe", "torchvision"),
        help="caffe: self-critical's misc/resnet.py and its imagenet_weights; "
        "torchvision: torchvision's ImageNet .pth files",
    )
    feats.add_argument("--att_size", type=int, default=14, help="14x14 or 7x7 grid")
    feats.add_argument(
        "--input_json", default="", help="Karpathy json: images and ids (cocoid)"
    )
    feats.add_argument("--image_size", type=int, default=0, help="resize; 0: none")
    feats.add_argument("--batch_size", type=int, default=8, help="same-size images")
    feats.set_defaults(run=_feats)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nic_jax.prepro",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    labels = sub.add_parser("labels", help="Karpathy json -> cocotalk json + _label.h5")
    labels.add_argument("--input_json", required=True)
    labels.add_argument("--output_json", required=True)
    labels.add_argument(
        "--output_h5", required=True, help="prefix; writes <prefix>_label.h5"
    )
    labels.add_argument("--max_length", type=int, default=16)
    labels.add_argument("--word_count_threshold", type=int, default=5)
    labels.add_argument("--images_root", default="")
    labels.set_defaults(run=_labels)
    gen = sub.add_parser("shapes", help="generate the synthetic shapes dataset")
    gen.add_argument(
        "--out_dir", required=True, help="cache directory to generate into"
    )
    gen.add_argument("--num_train", type=int, default=8000)
    gen.add_argument("--num_val", type=int, default=1000)
    gen.add_argument("--num_test", type=int, default=1000)
    gen.add_argument("--feat_dim", type=int, default=2048)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(run=_shapes)
    _add_ngrams(sub)
    _add_feats(sub)
    return parser


def run(argv=None) -> None:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
