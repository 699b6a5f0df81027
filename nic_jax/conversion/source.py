"""What every checkpoint source yields: model config, vocabulary, tensors, origin."""

import dataclasses

import numpy as np

from nic_jax.data.cocotalk import _parse_ix_to_word
from nic_jax.errors import InputError

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class SourceModel:
    """A PyTorch captioner read from disk, ready to be mapped onto nic_jax params.

    `model` holds the `config.model` fields (name and sizes); `renames` maps nic_jax
    module paths to upstream module names (see `layout.torch_layout`); `state_dict`
    is already rewritten into the parameters nic_jax has (batch norms folded).
    """

    model: dict
    ix_to_word: dict  # {1..V: word}
    state_dict: dict  # {torch name: np.ndarray}
    renames: dict
    origin: dict  # recorded in the checkpoint's meta


def option(options, field: str, where: str, default=_MISSING):
    """`options.field` (a Namespace or a dict) or `default`; InputError if absent."""
    value = (
        options.get(field, _MISSING)
        if isinstance(options, dict)
        else getattr(options, field, _MISSING)
    )
    if value is _MISSING:
        if default is _MISSING:
            raise InputError(f"{where}: has no {field!r}, needed to size the model")
        return default
    return value


def sizes(options, fields: tuple, where: str) -> dict:
    """Positive integer sizes `fields` of `options`, checked."""
    result = {}
    for field in fields:
        value = option(options, field, where)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{where}: {field} is {value!r}, expected an integer")
        if value <= 0:
            raise InputError(f"{where}: {field} is {value}, expected > 0")
        result[field] = int(value)
    return result


def vocabulary(raw, where: str) -> dict:
    """`{1..V: word}` from an upstream `ix_to_word` table (string keys '1'..'V')."""
    if isinstance(raw, dict) and raw and all(isinstance(k, int) for k in raw):
        raw = {str(k): v for k, v in raw.items()}
    return _parse_ix_to_word(where, raw)
