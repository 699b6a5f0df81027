"""ShowTell of ruotianluo/self-critical.pytorch (models/ShowTellModel.py).

Vinyals et al. 2015, "Show and Tell: A Neural Image Caption Generator": the image
embedding is the LSTM's input at t=0 (its output discarded), then BOS and the
words. The core is `torch.nn.LSTM(E, R, num_layers, bias=False, dropout=p)` as
upstream; `TorchLSTM` / `TorchLSTMCell` here reproduce torch's equations, gate
order (i, f, g, o) and parameter names and layouts (`weight_ih_l0` (4R, E), ...),
so PyTorch state dicts convert 1:1. Dropout: between stacked layers (as nn.LSTM)
and on the output before `logit`; the word embedding has none.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from nic_jax.models.attention import split_key
from nic_jax.models.layers import (
    StepLogits,
    dropout,
    folded_linear,
    hidden_sizes,
    pad_units,
    torch_linear,
    uniform_embed,
    uniform_linear,
)


def _uniform_param(rngs: nnx.Rngs, shape: tuple, scale: float) -> nnx.Param:
    return nnx.Param(
        jax.random.uniform(rngs.params(), shape, jnp.float32, -scale, scale)
    )


def torch_lstm_update(x, h, c, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """torch's LSTM equations, gates (i, f, g, o); weights in torch layout (4H, in).

    x (..., in), h and c (..., H) -> (h', c').
    """
    gates = x @ weight_ih.T + h @ weight_hh.T
    if bias_ih is not None:
        gates = gates + bias_ih + bias_hh
    in_gate, forget_gate, cell_gate, out_gate = jnp.split(gates, 4, axis=-1)
    next_c = jax.nn.sigmoid(forget_gate) * c + jax.nn.sigmoid(in_gate) * jnp.tanh(
        cell_gate
    )
    return jax.nn.sigmoid(out_gate) * jnp.tanh(next_c), next_c


class TorchLSTMCell(nnx.Module):
    """torch.nn.LSTMCell: `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`."""

    def __init__(self, input_size: int, hidden_size: int, rngs: nnx.Rngs):
        scale = 1.0 / hidden_size**0.5
        self.weight_ih = _uniform_param(rngs, (4 * hidden_size, input_size), scale)
        self.weight_hh = _uniform_param(rngs, (4 * hidden_size, hidden_size), scale)
        self.bias_ih = _uniform_param(rngs, (4 * hidden_size,), scale)
        self.bias_hh = _uniform_param(rngs, (4 * hidden_size,), scale)

    def __call__(self, x: jax.Array, state: tuple) -> tuple:
        """x (..., in), state (h, c) each (..., H) -> (h', c')."""
        params = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return torch_lstm_update(x, *state, *(p[...] for p in params))


class TorchLSTM(nnx.Module):
    """torch.nn.LSTM (one time step): `weight_ih_l{k}`, `weight_hh_l{k}` and, with
    bias, `bias_ih_l{k}`, `bias_hh_l{k}`; dropout on every layer's output but the
    last, in training only. Layer k is `hidden_sizes[k]` wide (torch: all equal)."""

    def __init__(self, input_size, hidden_sizes, rngs, bias, dropout_p):
        self.hidden_sizes = tuple(hidden_sizes)
        self.num_layers, self.bias, self.dropout_p = len(hidden_sizes), bias, dropout_p
        for k, hidden_size in enumerate(self.hidden_sizes):
            scale = 1.0 / hidden_size**0.5
            in_size = input_size if k == 0 else self.hidden_sizes[k - 1]
            shapes = {"weight_ih": (4 * hidden_size, in_size)}
            shapes["weight_hh"] = (4 * hidden_size, hidden_size)
            if bias:
                shapes.update(bias_ih=(4 * hidden_size,), bias_hh=(4 * hidden_size,))
            for name, shape in shapes.items():
                setattr(self, f"{name}_l{k}", _uniform_param(rngs, shape, scale))

    def _layer_params(self, k: int) -> list:
        names = ("weight_ih", "weight_hh") + (
            ("bias_ih", "bias_hh") if self.bias else ()
        )
        return [getattr(self, f"{name}_l{k}")[...] for name in names]

    def __call__(self, x: jax.Array, state: tuple, key: jax.Array | None):
        """x (..., in), state (h, c) each (..., L, H) -> (top h (..., H), state).

        With unequal widths H is the widest; layer k uses its first H_k entries."""
        keys = split_key(key, max(self.num_layers - 1, 1))
        hs, cs = [], []
        width = state[0].shape[-1]
        for k, size in enumerate(self.hidden_sizes):
            if k > 0:
                x = dropout(x, self.dropout_p, keys[k - 1])
            h, c = state[0][..., k, :size], state[1][..., k, :size]
            x, c = torch_lstm_update(x, h, c, *self._layer_params(k))
            hs.append(pad_units(x, width))
            cs.append(pad_units(c, width))
        return x, (jnp.stack(hs, -2), jnp.stack(cs, -2))


class ShowTellModel(StepLogits, nnx.Module):
    """ShowTell: `img_embed`, `core` (nn.LSTM, no biases), `embed`, `logit`.

    Init as upstream `init_weights`: embed and logit weights U(-0.1, 0.1), logit
    bias 0; img_embed and the LSTM torch defaults. `config.num_layers` stacks LSTMs.
    """

    uses_att = False

    def __init__(self, config, vocab_size: int, rngs: nnx.Rngs):
        self.drop_prob_lm = config.drop_prob_lm
        self.num_layers = config.get("num_layers", 1)
        sizes = hidden_sizes(config, self.num_layers)
        self.rnn_size = max(sizes)  # the state's width
        enc = config.input_encoding_size
        self.img_embed = torch_linear(config.fc_feat_size, enc, rngs)
        self.core = TorchLSTM(enc, sizes, rngs, False, config.drop_prob_lm)
        self.embed = uniform_embed(vocab_size + 1, enc, 0.1, rngs)
        self.logit = uniform_linear(sizes[-1], vocab_size + 1, 0.1, rngs)

    def encode(self, feats: dict, key: jax.Array | None = None) -> dict:
        """feats['fc'] (B, D) -> {'img_state': (h, c)}, each (B, L, R): the state
        after the image step (t=0), run here so its dropout gets the key."""
        img = self.img_embed(feats["fc"])
        zeros = jnp.zeros(img.shape[:-1] + (self.num_layers, self.rnn_size), img.dtype)
        _, state = self.core(img, (zeros, zeros), key)
        return {"img_state": state}

    def init_state(self, ctx: dict):
        """The state after the image step, before BOS."""
        return ctx["img_state"]

    def step_logits(self, ctx: dict, state, token: jax.Array, key: jax.Array | None):
        """token (...,) int -> (logits (..., V + 1), new state)."""
        del ctx  # the image entered through the state at t=0
        core_key, out_key = split_key(key, 2)
        output, state = self.core(self.embed(token), state, core_key)
        output = dropout(output, self.drop_prob_lm, out_key)
        return folded_linear(self.logit, output), state
