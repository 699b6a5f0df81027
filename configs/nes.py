r"""NIC-NES fine-tuning of an XE-trained FC captioner on the synthetic dataset.

es-img-captioning's `nic_nes` on configs/default.py's data, model and evals:
mirrored pairs around theta, centered ranks, Adam on the rank-weighted noise sum
(+ L2), fitness CIDEr-D (train df, EOS counted) of greedy captions, one batch of
unique images per generation. Train XE first, then continue from its workdir:

  python -m nic_jax.main --config=configs/default.py --workdir=/tmp/nic_xe
  python -m nic_jax.main --config=configs/nes.py --workdir=/tmp/nic_nes \
    --config.ckpt.init_from=/tmp/nic_xe
  python -m nic_jax.main --config=configs/nes.py:tiny --workdir=/tmp/nic_nes_tiny

Safe mutations: `--config.es.safe_mutation=SM-G-SUM` (or SM-PROPORTIONAL, SM-G-ABS,
SM-VECTOR with `--config.es.sensitivity_file=s.npy`); annealing:
`--config.es.patience=5 --config.es.stdev_divisor=2 --config.es.bs_multiplier=2`.
"""

from nic_jax.config_args import parse_arg, sibling_config


def get_config(arg: str | None = None):
    """Returns the config; `arg` presets: `tiny` (tests and CI), `seed=N`."""
    arg = parse_arg(arg, tiny=False, seed=0)
    preset = ",".join(["tiny"] * arg.tiny + [f"seed={arg.seed}"])
    config = sibling_config(__file__, "es.py", preset)
    with config.unlocked():
        config.trainer = "nes"
    config.lock()
    return config
