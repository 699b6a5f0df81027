"""Reads the files PyTorch captioners leave behind: state_dicts and infos pickles.

`model.pth` files are `torch.save(model.state_dict())` (self-critical.pytorch's
`train.py`, es-img-captioning's `PolicyNet.serialize`); they are loaded with
`weights_only=True`, so a checkpoint cannot run code. `infos_<id>.pkl` files are
pickled dicts whose `opt` is an `argparse.Namespace`; they are unpickled with an
allow-list of classes, anything else becoming an inert attribute bag. torch is an
optional dependency (`pip install "nic_jax[torch]"`) imported only here.
"""

import argparse
import codecs
import collections
import copyreg
import json
import pickle
import types

import numpy as np

from nic_jax.errors import InputError

_SAFE_CLASSES = {
    ("argparse", "Namespace"): argparse.Namespace,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,  # Python 2 pickles
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles
}
_SAFE_BUILTINS = {t.__name__: t for t in (set, frozenset, slice, complex, object)}
_NUMPY_NAMES = ("dtype", "ndarray", "scalar", "_reconstruct")


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise InputError(
            'reading a PyTorch checkpoint needs torch: pip install "nic_jax[torch]"'
        ) from error
    return torch


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """`{name: float32 array}` of a saved state_dict; a DataParallel `module.`
    prefix is dropped and integer buffers (BatchNorm's step count) are kept as is."""
    torch = _import_torch()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise InputError(f"--model={path}: no such file") from error
    except Exception as error:  # torch raises pickle/zip errors of many kinds
        raise InputError(
            f"--model={path}: not a PyTorch state_dict file ({error})"
        ) from error
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(
        isinstance(v, torch.Tensor) for v in raw.values()
    ):
        raise InputError(
            f"--model={path}: holds a {type(raw).__name__}, expected a state_dict "
            "(a dict of tensors, as saved by torch.save(model.state_dict()))"
        )
    if raw and all(k.startswith("module.") for k in raw):
        raw = {k[len("module.") :]: v for k, v in raw.items()}
    return {k: _to_numpy(v) for k, v in raw.items()}


def _to_numpy(tensor) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array.astype(np.float32) if array.dtype.kind == "f" else array


class _Opaque(types.SimpleNamespace):
    """Stand-in for a pickled object of a class we do not import: keeps its state."""

    def __init__(self, *args, **kwargs):
        super().__init__(**kwargs)
        self.args = args

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)


class _Unpickler(pickle.Unpickler):
    """Builds only plain containers, Namespace, OrderedDict and numpy values; other
    classes become `_Opaque` attribute bags instead of running their code."""

    def find_class(self, module, name):
        if (module, name) in _SAFE_CLASSES:
            return _SAFE_CLASSES[(module, name)]
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[name]
        if module.split(".")[0] == "numpy" and name in _NUMPY_NAMES:
            return super().find_class(module, name)
        return type(name, (_Opaque,), {"__module__": module})


def load_infos_pickle(path: str) -> dict:
    """The dict of a self-critical.pytorch `infos_<id>.pkl` (Python 2 or 3 pickle)."""
    try:
        with open(path, "rb") as f:
            infos = _Unpickler(f, encoding="latin1").load()
    except FileNotFoundError as error:
        raise InputError(f"--infos={path}: no such file") from error
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise InputError(f"--infos={path}: not a readable pickle ({error})") from error
    if not isinstance(infos, dict):
        raise InputError(
            f"--infos={path}: holds a {type(infos).__name__}, expected the infos "
            "dict of self-critical.pytorch (with 'opt' and 'vocab')"
        )
    return infos


def load_json(path: str, flag: str):
    """A JSON file named by command-line flag `flag`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as error:
        raise InputError(f"--{flag}={path}: no such file") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"--{flag}={path}: not valid JSON ({error})") from error
