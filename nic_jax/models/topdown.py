"""TopDown (UpDown) of ruotianluo/self-critical.pytorch (models/AttModel.py).

Anderson et al. 2018, "Bottom-Up and Top-Down Attention for Image Captioning and
VQA", as self-critical.pytorch's `TopDownCore`: two `nn.LSTMCell`s. The attention
LSTM reads [previous language-LSTM h, embedded fc, word] in that order; its h
queries the regions; the language LSTM reads [attended context, attention-LSTM h];
its h (dropout) feeds `logit`. With bottom-up features the fc input is the mean of
the regions (the cocobu_fc files hold it; `encode` computes it when fc is absent).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from nic_jax.models.attention import Attention, AttModel
from nic_jax.models.showtell import TorchLSTMCell


class TopDownCore(nnx.Module):
    """`att_lstm`, `lang_lstm`, `attention`; state (h, c), each (..., 2, R) with
    layer 0 the attention LSTM and layer 1 the language LSTM, as upstream."""

    def __init__(self, config, rngs: nnx.Rngs):
        rnn = config.rnn_size
        self.att_lstm = TorchLSTMCell(config.input_encoding_size + 2 * rnn, rnn, rngs)
        self.lang_lstm = TorchLSTMCell(2 * rnn, rnn, rngs)
        self.attention = Attention(rnn, config.att_hid_size, rngs)

    def __call__(self, xt: jax.Array, ctx: dict, state):
        """xt (..., E) -> (output (..., R), new state)."""
        (h, c), prev_h = state, state[0][..., -1, :]
        att_lstm_input = jnp.concatenate([prev_h, ctx["fc"], xt], axis=-1)
        h_att, c_att = self.att_lstm(att_lstm_input, (h[..., 0, :], c[..., 0, :]))
        att = self.attention(h_att, ctx["att"], ctx["p_att"], ctx.get("att_mask"))
        lang_lstm_input = jnp.concatenate([att, h_att], axis=-1)
        h_lang, c_lang = self.lang_lstm(lang_lstm_input, (h[..., 1, :], c[..., 1, :]))
        state = (jnp.stack([h_att, h_lang], -2), jnp.stack([c_att, c_lang], -2))
        return h_lang, state


class TopDownModel(AttModel):
    """TopDown: `embed`, `fc_embed`, `att_embed`, `ctx2att`, `logit`, `core`."""

    num_layers = 2

    def __init__(self, config, vocab_size: int, rngs: nnx.Rngs):
        super().__init__(config, vocab_size, rngs, uses_fc=True)
        self.core = TopDownCore(config, rngs)
