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
from nic_jax.models.layers import hidden_sizes, pad_units
from nic_jax.models.showtell import TorchLSTMCell


class TopDownCore(nnx.Module):
    """`att_lstm`, `lang_lstm`, `attention`; state (h, c), each (..., 2, R) with
    layer 0 the attention LSTM and layer 1 the language LSTM, as upstream. The
    embedded fc and regions are R = `rnn_size` wide; the LSTMs H0 and H1
    (`hidden_sizes`, both R unless widened); the state is max(H0, H1) wide."""

    def __init__(self, config, rngs: nnx.Rngs):
        rnn = config.rnn_size
        self.sizes = hidden_sizes(config, 2)
        att_size, lang_size = self.sizes
        att_input = lang_size + rnn + config.input_encoding_size
        self.att_lstm = TorchLSTMCell(att_input, att_size, rngs)
        self.lang_lstm = TorchLSTMCell(rnn + att_size, lang_size, rngs)
        self.attention = Attention(att_size, config.att_hid_size, rngs)

    def __call__(self, xt: jax.Array, ctx: dict, state):
        """xt (..., E) -> (output (..., R), new state)."""
        (h, c), (att_size, lang_size) = state, self.sizes
        prev_h = h[..., -1, :lang_size]
        att_lstm_input = jnp.concatenate([prev_h, ctx["fc"], xt], axis=-1)
        att_state = (h[..., 0, :att_size], c[..., 0, :att_size])
        h_att, c_att = self.att_lstm(att_lstm_input, att_state)
        att = self.attention(h_att, ctx["att"], ctx["p_att"], ctx.get("att_mask"))
        lang_lstm_input = jnp.concatenate([att, h_att], axis=-1)
        lang_state = (h[..., 1, :lang_size], c[..., 1, :lang_size])
        h_lang, c_lang = self.lang_lstm(lang_lstm_input, lang_state)
        stack = lambda a, b: jnp.stack([pad_units(x, h.shape[-1]) for x in (a, b)], -2)
        return h_lang, (stack(h_att, h_lang), stack(c_att, c_lang))


class TopDownModel(AttModel):
    """TopDown: `embed`, `fc_embed`, `att_embed`, `ctx2att`, `logit`, `core`."""

    num_layers = 2

    def __init__(self, config, vocab_size: int, rngs: nnx.Rngs):
        super().__init__(config, vocab_size, rngs, uses_fc=True)
        self.core = TopDownCore(config, rngs)
