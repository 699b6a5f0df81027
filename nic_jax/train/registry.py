"""Registry of trainers by `config.trainer`: each is `fn(config, workdir) -> scores`,
restarted after a non-finite value as `config.numerics` allows (`rollback`)."""

from nic_jax.errors import InputError
from nic_jax.train import es, nes, rollback, scst, xe

TRAINERS = {
    "xe": xe.train_and_evaluate,
    "scst": scst.train_and_evaluate,
    "nes": nes.train_and_evaluate,
    "es": es.train_and_evaluate,
}


def get_trainer(name: str):
    if name not in TRAINERS:
        raise InputError(
            f"config trainer={name!r} is unknown; valid: {sorted(TRAINERS)}"
        )
    return rollback.with_rollbacks(TRAINERS[name])
