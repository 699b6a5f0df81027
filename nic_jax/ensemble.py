"""Decodes with an ensemble of trained decoders: `python -m nic_jax.ensemble
--workdirs=W1,W2,... [--podium=W_es] --split=test [--combine=mean_prob]`.

Members: the best validation checkpoint of each `--workdirs` entry and/or the
podium (the E best models ever) of a NIC-ES workdir. Every member advances its own
state on the shared previous word; per-step log-probs are combined as the log of
the mean probability (self-critical.pytorch's AttEnsemble) or as the renormalised
mean log-prob. Prints one JSON line: the ensemble's metrics, the mean and the best
of its members' (each decoded alone the same way); `--out` writes the captions too.

  python -m nic_jax.ensemble --workdirs=/tmp/nic_xe,/tmp/nic_xe_seed1 \
    --split=test --beam_size=3
  python -m nic_jax.ensemble --podium=/tmp/nic_es --split=test
"""

import json

from absl import flags

from nic_jax import app
from nic_jax.decoding.ensemble import COMBINES
from nic_jax.evaluation.ensemble import (
    evaluate_ensemble,
    podium_members,
    workdir_members,
)

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Training workdirs, one member each.")
_PODIUM = flags.DEFINE_string("podium", "", "NIC-ES workdir whose podium joins.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to decode: train, val or test.")
_COMBINE = flags.DEFINE_enum("combine", "mean_prob", COMBINES, "Log-prob combination.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", -1, "Images to decode; -1 = all.")
_BEAM_SIZE = flags.DEFINE_integer("beam_size", None, "Beam size; default: config.")
_MAX_LEN = flags.DEFINE_integer("max_len", None, "Most words; default: config.")
_OUT = flags.DEFINE_string("out", "", "JSON file for metrics and captions.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.InputError(f"unexpected arguments: {argv[1:]}")
    members, reference = [], None
    if _WORKDIRS.value:
        members, reference = workdir_members(_WORKDIRS.value)
    if _PODIUM.value:
        podium, model = podium_members(_PODIUM.value)
        members, reference = members + podium, reference or model
    if reference is None:
        raise app.InputError("name members with --workdirs and/or --podium")
    decoding = {"beam_size": _BEAM_SIZE.value, "max_len": _MAX_LEN.value}
    result = evaluate_ensemble(
        members,
        reference,
        _SPLIT.value,
        _COMBINE.value,
        {k: v for k, v in decoding.items() if v is not None},
        num_images=_NUM_IMAGES.value,
        out=_OUT.value,
    )
    summary = {k: result[k] for k in ("split", "combine", "ensemble")}
    summary |= {k: result[k] for k in ("member_mean", "member_best")}
    summary["members"] = [m["source"] for m in result["members"]]
    print(json.dumps(summary), flush=True)


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
