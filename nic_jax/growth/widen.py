"""Widening a decoder: params, model config and optimizer state together.

`widen` adds units to one recurrent layer of any registered decoder so that the
grown decoder computes the same log-probs (R2WiderR or Net2WiderNet, see
`growth.transforms`); its model config records the new per-layer widths in
`model.hidden_sizes`, which every decoder reads. `widen_optimizer_state` carries an
optax state over (Adam's moments get zeros for the new entries), and `lr_ratio`
gives the parameter-count ratio to rescale a learning rate by.
"""

import jax
import numpy as np
from ml_collections import ConfigDict

from nic_jax.growth import families, transforms


def _resolved(model_config) -> ConfigDict:
    config = model_config.copy_and_resolve_references()
    config.unlock()
    return config


def grown_config(model_config, widths: tuple, layer: int, extra: int) -> ConfigDict:
    """`model_config` with `hidden_sizes` = `widths`, layer `layer` + `extra`."""
    config = _resolved(model_config)
    sizes = list(widths)
    sizes[layer] += extra
    config.hidden_sizes = tuple(sizes)
    return config


def plan(params: dict, model_config, layer: int, extra: int):
    """(Widening, grown model config) for adding `extra` units to `layer`."""
    widening = families.layer_widening(params, model_config.name, layer, extra)
    widths = families.layer_widths(params, model_config.name)
    return widening, grown_config(model_config, widths, layer, extra)


def widen(params, model_config, layer: int, extra: int, method="r2r", seed: int = 0):
    """Adds `extra` hidden units to recurrent layer `layer` (0 = bottom).

    Args:
      params: the decoder's params dict.
      model_config: its `config.model`.
      method: "r2r" (pairs cancelling exactly; `extra` even; old entries kept bit
        for bit) or "net2net" (copies of random units, outgoing rows shared).
      seed: of the new weights (r2r) or of the copied units (net2net).

    Returns:
      (params of the grown decoder, its model config). Evaluation-mode outputs are
      unchanged up to float rounding; dropout masks differ per unit in training.
    """
    widening, config = plan(params, model_config, layer, extra)
    return transforms.apply(params, widening, method, seed), config


def _map_params_like(fn, tree, structure):
    """Applies fn to every subtree of `tree` with the params' tree structure."""
    if jax.tree.structure(tree) == structure:
        return fn(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # optax NamedTuples
        return type(tree)(*(_map_params_like(fn, x, structure) for x in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map_params_like(fn, x, structure) for x in tree)
    if isinstance(tree, dict):
        return {k: _map_params_like(fn, v, structure) for k, v in tree.items()}
    return tree


def widen_optimizer_state(opt_state, params: dict, widening):
    """An optax state for the grown params: every params-shaped part (Adam's mu and
    nu, momentum) keeps its entries and gets zeros for the new ones; counts stay."""
    structure = jax.tree.structure(params)
    fill = lambda tree: transforms.apply(tree, widening, "zeros")
    return _map_params_like(fill, opt_state, structure)


def num_params(params) -> int:
    """Number of scalars in a params pytree."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def lr_ratio(old_params, new_params) -> float:
    """old / new parameter count: the factor `nic_jax.grow --rescale_lr` applies."""
    return num_params(old_params) / num_params(new_params)
