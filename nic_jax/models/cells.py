"""Recurrent cells of the IN5400 captioning handout (UiO IN5400, 2022 Mandatory 2).

Pure functions over params dicts keyed and laid out as the handout's `RNNsimpleCell`,
`GRUCell` and `LSTMCell` parameters, so its unit-test cases (../shared/data/in5400)
load unchanged: one weight (I + H, H) per gate applied to the row concatenation
[x; h] (x first) and one bias (1, H).

* simplified RNN (task 1): h' = tanh([x; h] W + b)
* GRU (task 2; Cho et al. 2014): u = sig([x; h] W_u + b_u), r = sig([x; h] W_r + b_r),
  cand = tanh([x; r * h] W + b) (the reset gate multiplies h *before* the product,
  unlike cuDNN/PyTorch's reset-after form), h' = u * h + (1 - u) * cand
* LSTM (task 3; Hochreiter & Schmidhuber 1997, no peepholes): f, i, o =
  sig([x; h] W_k + b_k), g = tanh([x; h] W + b), c' = f * c + i * g,
  h' = o * tanh(c'); the state is [h; c] on the last axis, (..., 2H).

Initialisation follows the handout: "variance scaling with zero mean, Var[W] = 1/n"
with n = I + H, i.e. W ~ N(0, 1 / (I + H)); biases zero, except the LSTM's, which the
handout initialises to two. Leading batch dims are free everywhere.
"""

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from nic_jax.models.layers import pad_units

LSTM_BIAS_INIT = 2.0  # the handout's LSTMCell: "bias ... Initialized to two"

GATE_SUFFIXES = {"rnn": ("",), "gru": ("_u", "_r", ""), "lstm": ("_f", "_i", "_o", "")}


def _affine(params: dict, suffix: str, xh: jax.Array) -> jax.Array:
    return xh @ params["weight" + suffix] + params["bias" + suffix]


def rnn_cell(params: dict, x: jax.Array, h: jax.Array) -> jax.Array:
    """Simplified RNN: x (..., I), h (..., H) -> h' (..., H) = tanh([x; h] W + b)."""
    return jnp.tanh(_affine(params, "", jnp.concatenate([x, h], -1)))


def gru_cell(params: dict, x: jax.Array, h: jax.Array) -> jax.Array:
    """GRU with the reset gate applied to h before the product: -> h' (..., H)."""
    xh = jnp.concatenate([x, h], -1)
    update = jax.nn.sigmoid(_affine(params, "_u", xh))
    reset = jax.nn.sigmoid(_affine(params, "_r", xh))
    cand = jnp.tanh(_affine(params, "", jnp.concatenate([x, reset * h], -1)))
    return update * h + (1.0 - update) * cand


def lstm_cell(params: dict, x: jax.Array, hc: jax.Array) -> jax.Array:
    """LSTM: x (..., I), hc = [h; c] (..., 2H) -> [h'; c'] (..., 2H)."""
    h, c = jnp.split(hc, 2, axis=-1)
    xh = jnp.concatenate([x, h], -1)
    forget = jax.nn.sigmoid(_affine(params, "_f", xh))
    inp = jax.nn.sigmoid(_affine(params, "_i", xh))
    out = jax.nn.sigmoid(_affine(params, "_o", xh))
    cand = jnp.tanh(_affine(params, "", xh))
    c = forget * c + inp * cand
    return jnp.concatenate([out * jnp.tanh(c), c], -1)


CELLS: dict[str, Callable] = {"rnn": rnn_cell, "gru": gru_cell, "lstm": lstm_cell}


def state_size(kind: str, hidden_size: int) -> int:
    """Width S of one layer's state: 2H for the LSTM ([h; c]), H otherwise."""
    return 2 * hidden_size if kind == "lstm" else hidden_size


def stack_step(
    cell_fn: Callable, layers: Sequence[dict], x: jax.Array, state: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One step of L stacked cells; layer l > 0 reads the h of layer l - 1.

    Args:
      cell_fn: `rnn_cell`, `gru_cell` or `lstm_cell`.
      layers: L params dicts, bottom first.
      x: (..., I) input of layer 0.
      state: (..., L, S) per-layer states (S = H, or 2H = [h; c] for the LSTM);
        layers of unequal widths H_l use the first S_l entries of the widest S.

    Returns:
      (h of the top layer (..., H), new state (..., L, S)).
    """
    new_states = []
    inputs = x
    for layer, params in enumerate(layers):
        hidden = params["bias"].shape[-1]
        size = 2 * hidden if cell_fn is lstm_cell else hidden
        layer_state = cell_fn(params, inputs, state[..., layer, :size])
        new_states.append(pad_units(layer_state, state.shape[-1]))
        inputs = layer_state[..., :hidden]  # h leads the state
    return inputs, jnp.stack(new_states, -2)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def init_cell_params(
    key: jax.Array, kind: str, input_size: int, hidden_size: int, dtype=jnp.float32
) -> dict:
    """Fresh params of one cell: weights (I + H, H) ~ N(0, 1/(I + H)), biases (1, H).

    Jitted so that building a model compiles once per cell shape, not once per op.
    """
    suffixes = GATE_SUFFIXES[kind]
    fan_in = input_size + hidden_size
    bias = LSTM_BIAS_INIT if kind == "lstm" else 0.0
    params = {}
    for suffix, gate_key in zip(suffixes, jax.random.split(key, len(suffixes))):
        normal = jax.random.normal(gate_key, (fan_in, hidden_size), dtype)
        params["weight" + suffix] = normal / jnp.sqrt(jnp.asarray(fan_in, dtype))
        params["bias" + suffix] = jnp.full((1, hidden_size), bias, dtype)
    return params


def init_stack_params(
    key: jax.Array, kind: str, input_size: int, hidden_size: int, num_layers: int
) -> list[dict]:
    """Params of L stacked cells: layer 0 reads I features, the others H."""
    sizes = [input_size] + [hidden_size] * (num_layers - 1)
    keys = jax.random.split(key, num_layers)
    return [
        init_cell_params(k, kind, size, hidden_size) for k, size in zip(keys, sizes)
    ]
