"""Growing trained decoders: function-preserving widening of a recurrent layer
(R2WiderR and Net2WiderNet) for every registered decoder, with the optimizer state
carried over. `nic_jax.grow` is the command; `widen` the library function."""

from nic_jax.growth.families import layer_widening, layer_widths, num_layers
from nic_jax.growth.transforms import METHODS, Consumer, Producer, Widening, apply
from nic_jax.growth.widen import (
    grown_config,
    lr_ratio,
    num_params,
    plan,
    widen,
    widen_optimizer_state,
)

__all__ = [
    "METHODS",
    "Consumer",
    "Producer",
    "Widening",
    "apply",
    "grown_config",
    "layer_widening",
    "layer_widths",
    "lr_ratio",
    "num_layers",
    "num_params",
    "plan",
    "widen",
    "widen_optimizer_state",
]
