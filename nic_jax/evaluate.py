"""Evaluates a trained workdir: `python -m nic_jax.evaluate --workdir=W --split=test`.

Restores params only (the best validation checkpoint unless `--step` names one),
decodes the split greedily, writes `W/eval_<split>[_<step>].json` (metrics and
captions) and prints the metrics as one JSON line.
"""

from absl import flags

from nic_jax import app
from nic_jax.errors import InputError
from nic_jax.evaluation.workdir import evaluate_workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir to evaluate.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to decode: train, val or test.")
_STEP = flags.DEFINE_integer(
    "step", None, "Checkpoint step; default: best, else latest."
)
_BEAM = flags.DEFINE_integer("beam_size", 1, "Beam size (1 = greedy).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", -1, "Images to decode; -1 = all.")


def main(argv) -> None:
    del argv
    if _BEAM.value != 1:
        raise InputError(
            "--beam_size > 1 needs beam search, which is not built yet; use 1"
        )
    evaluate_workdir(_WORKDIR.value, _SPLIT.value, _STEP.value, _NUM_IMAGES.value)


def run() -> None:
    flags.mark_flags_as_required(["workdir"])
    app.run(main)


if __name__ == "__main__":
    run()
