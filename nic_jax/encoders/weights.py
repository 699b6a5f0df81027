"""ResNet weights from local files: an npz of our params, or a torchvision state_dict.

Nothing is downloaded. Two formats:
* `.npz`: our params flattened to 'layer1/0/conv1/kernel'-style keys (`save_npz`).
* `.pth` / `.pt`: a `torch.save(model.state_dict())` with torchvision's names
  (conv1, bn1, layer{1-4}.{i}.conv{1-3}/bn{1-3}, downsample.{0,1}, fc), as both
  torchvision's ImageNet files and self-critical.pytorch's
  `data/imagenet_weights/resnet{101,152}.pth` are. Read through the optional torch
  extra (`pip install "nic_jax[torch]"`), with `weights_only=True`.

Each BatchNorm (gamma, beta, running mean m, running var v, eps 1e-5) is folded into
the convolution before it: kernel * s and bias beta - m * s, s = gamma / sqrt(v +
eps), computed in float64 (Ioffe & Szegedy 2015, inference mode). The classifier
`fc` is dropped: features are taken before it.
"""

import os

import jax
import numpy as np

from nic_jax.encoders.encoder import abstract_params
from nic_jax.errors import InputError

BN_EPS = 1e-5  # torch.nn.BatchNorm2d default
TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".bin")


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = value
    return flat


def _unflatten(flat: dict) -> dict:
    tree = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = [int(p) if p.isdigit() else p for p in path.split("/")]
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def save_npz(path: str, params: dict) -> None:
    """Writes params as an npz of float32 arrays keyed 'layer1/0/conv1/kernel'."""
    flat = {k: np.asarray(v, np.float32) for k, v in _flatten(params).items()}
    np.savez(path, **flat)


def _fold(state_dict: dict, conv: str, bn: str) -> dict:
    """{'kernel': (kh, kw, in, out), 'bias': (out,)} of torch conv `conv` + `bn`."""
    weight = np.asarray(state_dict[f"{conv}.weight"], np.float64)
    gamma, beta, mean, var = (
        np.asarray(state_dict[f"{bn}.{k}"], np.float64)
        for k in ("weight", "bias", "running_mean", "running_var")
    )
    scale = gamma / np.sqrt(var + BN_EPS)
    kernel = weight.transpose(2, 3, 1, 0) * scale
    return {
        "kernel": kernel.astype(np.float32),
        "bias": (beta - mean * scale).astype(np.float32),
    }


def _torch_pairs(template: dict) -> dict:
    """Our conv path -> (torch conv, torch bn) names, for every conv of `template`."""
    pairs = {"conv1": ("conv1", "bn1")}
    for stage in range(1, 5):
        for index, block in template[f"layer{stage}"].items():
            torch_block = f"layer{stage}.{index}"
            for conv in ("conv1", "conv2", "conv3"):
                pairs[f"layer{stage}/{index}/{conv}"] = (
                    f"{torch_block}.{conv}",
                    f"{torch_block}.bn{conv[-1]}",
                )
            if block.get("downsample") is not None:
                pairs[f"layer{stage}/{index}/downsample"] = (
                    f"{torch_block}.downsample.0",
                    f"{torch_block}.downsample.1",
                )
    return pairs


def from_torchvision(state_dict: dict, name: str, variant: str = "caffe") -> dict:
    """Our params for --model `name` from a torchvision-named ResNet state_dict
    ({name: array}), BatchNorms folded. Raises InputError on a missing tensor."""
    template = abstract_params(name, variant)
    flat = {}
    for path, (conv, bn) in _torch_pairs(template).items():
        needed = [f"{conv}.weight"] + [
            f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var")
        ]
        missing = [k for k in needed if k not in state_dict]
        if missing:
            raise InputError(
                f"the state_dict has no {missing[0]!r}: expected a torchvision-named "
                f"{name} (conv1, bn1, layer1.0.conv1, ...)"
            )
        for leaf, value in _fold(state_dict, conv, bn).items():
            flat[f"{path}/{leaf}"] = value
    return check_params(_unflatten(flat), name, variant, "the state_dict")


def check_params(params: dict, name: str, variant: str, where: str) -> dict:
    """`params` as float32 numpy arrays if its keys and shapes are those of `name`."""
    want = _flatten(abstract_params(name, variant))
    have = _flatten(params)
    for key in sorted(set(want) | set(have)):
        if key not in have:
            blocks = len(params.get("layer3", {}))
            raise InputError(
                f"{where} has no {key!r}: expected {name} weights (found "
                f"{blocks} blocks in layer3; resnet50: 6, resnet101: 23, resnet152: 36)"
            )
        if key not in want:
            raise InputError(f"{where} has {key!r}, which {name} does not have")
        if tuple(have[key].shape) != tuple(want[key].shape):
            raise InputError(
                f"{where}: {key} has shape {tuple(have[key].shape)}, "
                f"{name} expects {tuple(want[key].shape)}"
            )
    return jax.tree.map(lambda x: np.asarray(x, np.float32), params)


def _load_npz(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return _unflatten({k: data[k] for k in data.files})
    except Exception as error:  # zip, zlib, pickle and value errors alike
        raise InputError(f"--weights={path}: not a readable npz ({error})") from None


def _load_torch(path: str) -> dict:
    from nic_jax.conversion.torch_files import load_state_dict

    try:
        return load_state_dict(path)
    except InputError as error:
        raise InputError(
            f"--weights={path} is not a usable ResNet state_dict: {error}"
        ) from None


def load_weights(path: str, name: str, variant: str = "caffe") -> dict:
    """Params of `name` from an npz (ours) or a torchvision-layout .pth file."""
    if not path:
        raise InputError(
            "--weights is required: a local ResNet weights file (.npz of nic_jax "
            "params, or a torchvision-layout .pth state_dict); nothing is downloaded"
        )
    if not os.path.isfile(path):
        raise InputError(f"--weights={path}: no such file")
    if path.endswith(".npz"):
        return check_params(_load_npz(path), name, variant, f"--weights={path}")
    if path.endswith(TORCH_SUFFIXES):
        return from_torchvision(_load_torch(path), name, variant)
    raise InputError(
        f"--weights={path}: unknown format; expected .npz (nic_jax params) or "
        f"one of {TORCH_SUFFIXES} (a torchvision-layout state_dict)"
    )
