"""Evaluates a trained workdir: `python -m nic_jax.evaluate --workdir=W --split=test`.

Restores params only (the best validation checkpoint unless `--step` names one),
decodes the split (greedy, or beam search with `--beam_size=N`; the decoding
options default to the run's `config.evals`), writes `W/eval_<split>[_<step>].json`
(metrics, captions and the decoding used) and prints the metrics as one JSON line.

  python -m nic_jax.evaluate --workdir=/tmp/nic_xe --split=test --beam_size=3 \
    --max_len=20 --remove_bad_endings --length_penalty=wu_0.7
"""

from absl import flags

from nic_jax import app
from nic_jax.evaluation.workdir import evaluate_workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir to evaluate.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to decode: train, val or test.")
_STEP = flags.DEFINE_integer(
    "step", None, "Checkpoint step; default: best, else latest."
)
_NUM_IMAGES = flags.DEFINE_integer("num_images", -1, "Images to decode; -1 = all.")
_DECODING = {
    "beam_size": flags.DEFINE_integer(
        "beam_size", None, "Beam size (1 = greedy); default: config.evals."
    ),
    "max_len": flags.DEFINE_integer(
        "max_len", None, "Most words per caption; default: config (16)."
    ),
    "remove_bad_endings": flags.DEFINE_boolean(
        "remove_bad_endings", None, "No EOS right after 'a', 'the', 'with', ..."
    ),
    "block_trigrams": flags.DEFINE_boolean(
        "block_trigrams", None, "self-critical.pytorch's soft trigram blocking."
    ),
    "length_penalty": flags.DEFINE_string(
        "length_penalty", None, "Beam ranking: '', 'avg_1' or 'wu_0.7'."
    ),
}


def main(argv) -> None:
    del argv
    decoding = {k: f.value for k, f in _DECODING.items() if f.value is not None}
    evaluate_workdir(
        _WORKDIR.value, _SPLIT.value, _STEP.value, _NUM_IMAGES.value, decoding=decoding
    )


def run() -> None:
    flags.mark_flags_as_required(["workdir"])
    app.run(main)


if __name__ == "__main__":
    run()
