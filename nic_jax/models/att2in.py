"""Att2in2 of ruotianluo/self-critical.pytorch (models/AttModel.py, Att2in2Model).

The "att2in" decoder of Rennie et al. 2017, "Self-critical Sequence Training for
Image Captioning", in self-critical.pytorch's variant 2: regions embedded as in
AdaAtt (Linear -> ReLU -> dropout), no fc input (its `fc_embed` is the identity and
the core never reads it). The core is a max-out LSTM whose candidate receives the
attended context: with s = i2h(x) + h2h(h_prev) (5R wide), gates i, f, o =
sigmoid(s[:3R]), candidate = max of the two R-chunks of s[3R:] + a2c(att), where
att attends over the regions with the *previous* hidden state as query.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from nic_jax.models.attention import Attention, AttModel
from nic_jax.models.layers import hidden_sizes, torch_linear


class Att2in2Core(nnx.Module):
    """State (h, c), each (..., 1, R): upstream keeps a layer axis of size 1."""

    def __init__(self, config, rngs: nnx.Rngs):
        (rnn,) = hidden_sizes(config, 1)  # the regions stay config.rnn_size wide
        self.a2c = torch_linear(config.rnn_size, 2 * rnn, rngs)
        self.i2h = torch_linear(config.input_encoding_size, 5 * rnn, rngs)
        self.h2h = torch_linear(rnn, 5 * rnn, rngs)
        self.attention = Attention(rnn, config.att_hid_size, rngs)

    def __call__(self, xt: jax.Array, ctx: dict, state):
        """xt (..., E) -> (output (..., R), new state)."""
        prev_h, prev_c = state[0][..., -1, :], state[1][..., -1, :]
        att = self.attention(prev_h, ctx["att"], ctx["p_att"], ctx.get("att_mask"))
        sums = self.i2h(xt) + self.h2h(prev_h)
        rnn = prev_h.shape[-1]
        gates = jax.nn.sigmoid(sums[..., : 3 * rnn])
        in_gate, forget_gate, out_gate = jnp.split(gates, 3, axis=-1)
        cand_a, cand_b = jnp.split(sums[..., 3 * rnn :] + self.a2c(att), 2, axis=-1)
        next_c = forget_gate * prev_c + in_gate * jnp.maximum(cand_a, cand_b)
        next_h = out_gate * jnp.tanh(next_c)
        return next_h, (next_h[..., None, :], next_c[..., None, :])


class Att2in2Model(AttModel):
    """Att2in2: `embed`, `att_embed`, `ctx2att`, `logit`, `core` (no `fc_embed`)."""

    num_layers = 1

    def __init__(self, config, vocab_size: int, rngs: nnx.Rngs):
        super().__init__(config, vocab_size, rngs, uses_fc=False)
        self.core = Att2in2Core(config, rngs)
