"""Registry of decoder classes by config name (`config.model.name`)."""

from nic_jax.errors import InputError
from nic_jax.models.fc import FCModel

MODELS = {"fc": FCModel}


def get_model_class(name: str):
    """Returns the NNX decoder class registered as `name`."""
    if name not in MODELS:
        raise InputError(
            f"config model.name={name!r} is unknown; valid: {sorted(MODELS)}"
        )
    return MODELS[name]
