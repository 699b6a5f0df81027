r"""SCST fine-tuning (Rennie et al. 2017) of an XE-trained FC captioner.

configs/default.py's data, model, evals and checkpoints with the trainer "scst" and
self-critical.pytorch's RL recipe: Adam at 5e-5 without decay, gradients clipped
to +-0.1, 5 captions sampled per image, reward CIDEr-D with the train split's df
and EOS counted, greedy baseline decoded without dropout. Train XE first, then
continue from its workdir:

  python -m nic_jax.main --config=configs/default.py --workdir=/tmp/nic_xe
  python -m nic_jax.main --config=configs/scst.py --workdir=/tmp/nic_scst \
    --config.ckpt.init_from=/tmp/nic_xe
  python -m nic_jax.main --config=configs/scst.py:tiny --workdir=/tmp/nic_scst_tiny

"new self-critical" (the mean of the other samples as baseline, Luo 2020):
`--config.scst.baseline=mean`. self-critical's cached df file instead of the train
labels' df: `--config.scst.cached_tokens=data/coco-train-idxs.p`.
"""

import importlib.util
import pathlib

from ml_collections import ConfigDict

from nic_jax.config_args import parse_arg


def _default_module():
    """configs/default.py, found beside this file wherever the configs live."""
    path = pathlib.Path(__file__).with_name("default.py")
    spec = importlib.util.spec_from_file_location("_nic_configs_default", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config(arg: str | None = None) -> ConfigDict:
    """Returns the config; `arg` presets: `tiny` (tests and CI), `seed=N`."""
    arg = parse_arg(arg, tiny=False, seed=0)
    config = _default_module().get_config("tiny" if arg.tiny else None)
    with config.unlocked():
        config.seed = arg.seed
        config.trainer = "scst"
        config.finetune.trainer = ""
        del config["xe"]
        config.scst = _scst(arg.tiny)
        config.optim.learning_rate = 5e-5
        config.optim.lr_decay_start_epoch = -1
    config.lock()
    return config


def _scst(tiny: bool) -> ConfigDict:
    return ConfigDict(
        dict(
            num_epochs=2 if tiny else 3,
            num_samples=5,  # captions per image (self-critical's train_sample_n)
            baseline="greedy",  # "greedy" (Rennie et al.) or "mean" (new self-critical)
            cider_reward_weight=1.0,
            bleu_reward_weight=0.0,  # BLEU-4 weight added to the reward
            include_eos=True,  # score "... <eos>" strings, as self-critical does
            cached_tokens="",  # df file of word ids; "" counts the train references
        )
    )
