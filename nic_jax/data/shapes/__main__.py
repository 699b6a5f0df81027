"""Generates the shapes dataset from the command line and prints its directory.

  python -m nic_jax.data.shapes --out DIR [--num_train 8000 --feat_dim 2048 ...]

Every `ShapesSpec` field is a flag; DIR is the cache directory (default
`$NIC_JAX_CACHE` or `~/.cache/nic_jax`), the dataset lands in DIR/shapes-<hash>/.
"""

import argparse
import dataclasses

from nic_jax.data.shapes.generate import generate
from nic_jax.data.shapes.spec import LAYOUTS, ShapesSpec


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nic_jax.data.shapes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default=None, help="cache directory")
    parser.add_argument("--workers", type=int, default=None)
    for field in dataclasses.fields(ShapesSpec):
        if field.type in (bool, "bool"):
            kwargs = {"action": argparse.BooleanOptionalAction}
        elif field.name == "layout":
            kwargs = {"choices": LAYOUTS}
        else:
            kwargs = {"type": type(field.default)}
        parser.add_argument(f"--{field.name}", default=field.default, **kwargs)
    return parser


def main(argv=None) -> None:
    args = vars(_parser().parse_args(argv))
    out, workers = args.pop("out"), args.pop("workers")
    print(generate(ShapesSpec(**args), out, workers))


if __name__ == "__main__":
    main()
