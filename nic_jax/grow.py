"""Grows a trained decoder: `python -m nic_jax.grow --workdir=W --out=W2 --layer=L
--extra=N --method=r2r|net2net`.

Adds N hidden units to recurrent layer L (0 = bottom) of W's latest checkpoint (or
`--step`) with a function-preserving transform (R2WiderR pairs or Net2WiderNet
copies, `nic_jax.growth`), carries the optimizer state over (zeros for the new
entries) and writes W2: it evaluates with `nic_jax.evaluate --workdir=W2`, serves as
`--config.ckpt.init_from=W2`, and training resumes in it with the printed model
override, e.g.

  python -m nic_jax.grow --workdir=/tmp/nic_xe --out=/tmp/nic_xe_wide --layer=0 \
    --extra=64 --method=r2r --rescale_lr
  python -m nic_jax.main --config=configs/default.py --workdir=/tmp/nic_xe_wide \
    --config.model.hidden_sizes=320 --config.xe.num_epochs=30
"""

import json

from absl import flags

from nic_jax import app
from nic_jax.growth import METHODS
from nic_jax.growth.workdir import grow_workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained workdir to grow.")
_OUT = flags.DEFINE_string("out", None, "New workdir for the grown decoder.")
_LAYER = flags.DEFINE_integer("layer", 0, "Recurrent layer to widen; 0 = bottom.")
_EXTRA = flags.DEFINE_integer("extra", None, "Hidden units to add (even for r2r).")
_METHOD = flags.DEFINE_enum("method", "r2r", METHODS, "Widening transform.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the new weights / copied units.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
_RESCALE_LR = flags.DEFINE_boolean(
    "rescale_lr", False, "Multiply learning rates by old / new parameter count."
)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.InputError(f"unexpected arguments: {argv[1:]}")
    summary = grow_workdir(
        _WORKDIR.value,
        _OUT.value,
        _LAYER.value,
        _EXTRA.value,
        _METHOD.value,
        _SEED.value,
        _STEP.value,
        _RESCALE_LR.value,
    )
    print(json.dumps(summary), flush=True)


def run() -> None:
    flags.mark_flags_as_required(["workdir", "out", "extra"])
    app.run(main)


if __name__ == "__main__":
    run()
