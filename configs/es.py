r"""NIC-ES (es-img-captioning's GA with validation elitism) on the synthetic dataset.

configs/default.py's data, model and evals with the trainer "es" and an `es`
group shared with configs/nes.py (keys of the other strategy are ignored). The
best model is the best validation CIDEr-D ever (podium row 0).

  python -m nic_jax.main --config=configs/es.py --workdir=/tmp/nic_es \
    --config.ckpt.init_from=/tmp/nic_xe
  python -m nic_jax.main --config=configs/es.py:tiny --workdir=/tmp/nic_es_tiny
"""

from ml_collections import ConfigDict

from nic_jax.config_args import parse_arg, sibling_config


def get_config(arg: str | None = None) -> ConfigDict:
    """Returns the config; `arg` presets: `tiny` (tests and CI), `seed=N`."""
    arg = parse_arg(arg, tiny=False, seed=0)
    config = sibling_config(__file__, "default.py", "tiny" if arg.tiny else None)
    with config.unlocked():
        config.seed = arg.seed
        config.trainer = "es"
        del config["xe"]
        del config["optim"]  # the GA has no optimizer; NES reads es.optimizer
        config.finetune.trainer = ""
        config.evals.every_steps = 10 if arg.tiny else 25
        config.evals.best_metric = "CIDEr-D"
        config.ckpt.every_steps = 5 if arg.tiny else 25
        config.log.every_steps = 2 if arg.tiny else 5
    config.lock()
    return config
