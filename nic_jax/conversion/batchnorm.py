"""Folds evaluation-mode BatchNorm1d layers into neighbouring linear maps.

self-critical.pytorch's AttModel with `use_bn` encodes regions as
`att_embed = [BatchNorm1d(D)], Linear(D, R), ReLU, Dropout, [BatchNorm1d(R) if
use_bn == 2]`. In evaluation a batch norm is the affine map x * s + t with
s = gamma / sqrt(running_var + eps) and t = beta - running_mean * s (Ioffe &
Szegedy 2015), so it folds exactly:

* before the Linear: W' = W diag(s), b' = b + W t;
* after the ReLU (on the embedded regions a_k): every consumer of a_k is affine in
  it. `ctx2att` folds like the Linear above; the attended context sum_k w_k a_k,
  whose weights sum to 1, becomes s * context + t, so the first R input columns of
  `core.lang_lstm` (it reads [context, h_att]) fold the same way.

nic_jax decoders carry no batch statistics (a population-vmapped model must not),
so the folded model is what nic_jax trains on from there.
"""

import numpy as np

_EPS = 1e-5  # torch.nn.BatchNorm1d default
_STATS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _affine(state_dict: dict, prefix: str):
    """(scale, shift) of the BatchNorm1d `prefix`; its tensors are removed."""
    bn = {k: state_dict.pop(f"{prefix}.{k}", None) for k in _STATS}
    mean = np.asarray(bn["running_mean"], np.float64)
    gamma = np.ones_like(mean) if bn["weight"] is None else bn["weight"]
    beta = np.zeros_like(mean) if bn["bias"] is None else bn["bias"]
    scale = np.asarray(gamma, np.float64) / np.sqrt(
        np.asarray(bn["running_var"], np.float64) + _EPS
    )
    return scale, np.asarray(beta, np.float64) - mean * scale


def _fold_into_inputs(state_dict, weight_key, bias_key, scale, shift, columns):
    """Folds x -> x * scale + shift into the first `columns` inputs of a layer."""
    weight = np.asarray(state_dict[weight_key], np.float64)
    part = weight[:, :columns]
    bias = np.asarray(state_dict[bias_key], np.float64) + part @ shift
    weight[:, :columns] = part * scale[None, :]
    state_dict[weight_key] = weight.astype(np.float32)
    state_dict[bias_key] = bias.astype(np.float32)


def _has_batchnorm(state_dict: dict, prefix: str) -> bool:
    return all(f"{prefix}.{k}" in state_dict for k in ("running_mean", "running_var"))


def fold_topdown_batchnorm(state_dict: dict) -> dict:
    """A copy of an AttModel state_dict with its region batch norms folded away;
    unchanged when it has none. Afterwards `att_embed.0` is the Linear."""
    state_dict = dict(state_dict)
    linear = "att_embed.1"
    if _has_batchnorm(state_dict, "att_embed.0") and f"{linear}.weight" in state_dict:
        scale, shift = _affine(state_dict, "att_embed.0")
        columns = state_dict[f"{linear}.weight"].shape[1]
        _fold_into_inputs(
            state_dict, f"{linear}.weight", f"{linear}.bias", scale, shift, columns
        )
        for leaf in ("weight", "bias"):
            state_dict[f"att_embed.0.{leaf}"] = state_dict.pop(f"{linear}.{leaf}")
    consumers = (("ctx2att.weight", "ctx2att.bias"),)
    consumers += (("core.lang_lstm.weight_ih", "core.lang_lstm.bias_ih"),)
    needed = [k for pair in consumers for k in pair]
    if _has_batchnorm(state_dict, "att_embed.4") and all(
        k in state_dict for k in needed
    ):
        scale, shift = _affine(state_dict, "att_embed.4")
        for weight_key, bias_key in consumers:
            _fold_into_inputs(
                state_dict, weight_key, bias_key, scale, shift, scale.shape[0]
            )
    return state_dict
