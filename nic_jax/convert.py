r"""Imports a PyTorch captioner checkpoint: `python -m nic_jax.convert`.

  python -m nic_jax.convert --source=sc_fc --model=log_fc/model-best.pth \
    --infos=log_fc/infos_fc-best.pkl --workdir=workdirs/fc_imported \
    --config=configs/default.py --config.data.name=cocotalk \
    --config.data.input_json=data/cocotalk.json ...

Sources: `sc_fc` and `sc_topdown` (self-critical.pytorch `model.pth` +
`infos_<id>.pkl`), `es_fc` (es-img-captioning `fc_caption` state_dict + the run's
`experiment.json` as `--infos`, vocabulary from its cocotalk json or `--vocab`).
The workdir is complete: `python -m nic_jax.evaluate --workdir=...` evaluates it and
`--config.ckpt.init_from=...` starts training from it. Needs torch
(`pip install "nic_jax[torch]"`).
"""

import os

from absl import flags
from ml_collections import config_flags

from nic_jax import app
from nic_jax.conversion import SOURCES, convert_checkpoint

_SOURCE = flags.DEFINE_enum("source", None, sorted(SOURCES), "Checkpoint family.")
_MODEL = flags.DEFINE_string("model", None, "PyTorch state_dict file (model.pth).")
_INFOS = flags.DEFINE_string(
    "infos", None, "infos_<id>.pkl (sc_*) or experiment.json (es_fc)."
)
_VOCAB = flags.DEFINE_string(
    "vocab", "", "es_fc: the run's cocotalk json (default: its caption_options)."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "New workdir to write.")
_DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "default.py"
)
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    _DEFAULT_CONFIG,
    "Config file (data, evals, ckpt groups).",
    lock_config=True,
)
flags.mark_flags_as_required(["source", "model", "infos", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.InputError(f"unexpected arguments: {argv[1:]}")
    convert_checkpoint(
        _CONFIG.value,
        _SOURCE.value,
        _MODEL.value,
        _INFOS.value,
        _WORKDIR.value,
        _VOCAB.value,
    )


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
