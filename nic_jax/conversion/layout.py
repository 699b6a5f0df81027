"""Matches nic_jax params to a PyTorch state_dict: names, shapes, layouts.

nic_jax decoders keep upstream's attribute names, so a param at path
`('core', 'i2h', 'kernel')` is the tensor `core.i2h.weight`. Only the layouts differ:
an NNX kernel is (in, out) where a torch Linear weight is (out, in); embedding
tables agree; params declared in torch layout under torch's names (`weight_ih` of
an LSTMCell port) are taken as they are. A source may rename module prefixes
(nic_jax `embed` is `embed.0` inside an upstream nn.Sequential). The state_dict
must match exactly: a missing, unexpected or wrongly shaped tensor is an
`InputError` naming each one.
"""

import dataclasses

import numpy as np
from flax import traverse_util

from nic_jax.errors import InputError

# NNX leaf name -> (torch leaf name, transpose)
_LEAVES = {"kernel": ("weight", True), "bias": ("bias", False)}
_LEAVES["embedding"] = ("weight", False)
_SHOWN = 8  # names listed per kind of mismatch


@dataclasses.dataclass(frozen=True)
class TorchTensor:
    """Where one nic_jax param comes from in the state_dict."""

    path: tuple  # nic_jax params path
    shape: tuple  # expected torch shape
    transpose: bool


def torch_layout(abstract_params: dict, renames: dict) -> dict[str, TorchTensor]:
    """`{torch name: TorchTensor}` for every leaf of `abstract_params` (a dict of
    arrays or ShapeDtypeStructs); `renames` maps nic_jax module paths ('embed') to
    torch module names ('embed.0')."""
    layout = {}
    for path, leaf in traverse_util.flatten_dict(abstract_params).items():
        module = ".".join(path[:-1])
        torch_leaf, transpose = _LEAVES.get(path[-1], (path[-1], False))
        name = f"{renames.get(module, module)}.{torch_leaf}"
        shape = tuple(leaf.shape[::-1] if transpose else leaf.shape)
        layout[name] = TorchTensor(path, shape, transpose)
    return layout


def _listing(names: list) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def check_state_dict(state_dict: dict, layout: dict, where: str) -> None:
    """Raises InputError naming missing, unexpected and wrongly shaped tensors."""
    missing = sorted(set(layout) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(layout))
    wrong = sorted(
        f"{k} is {tuple(state_dict[k].shape)}, expected {layout[k].shape}"
        for k in set(layout) & set(state_dict)
        if tuple(state_dict[k].shape) != layout[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches: {_listing(wrong)}")
    if problems:
        raise InputError(f"{where}: " + "; ".join(problems))


def params_from_state_dict(state_dict: dict, layout: dict) -> dict:
    """Nested nic_jax params dict (float32 numpy) from a checked state_dict."""
    flat = {}
    for name, spec in layout.items():
        value = np.asarray(state_dict[name], np.float32)
        flat[spec.path] = np.ascontiguousarray(value.T if spec.transpose else value)
    return traverse_util.unflatten_dict(flat)
