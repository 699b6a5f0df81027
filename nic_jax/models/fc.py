"""The FC captioner of self-critical.pytorch (FCModel) / es-img-captioning (fc_caption).

Vinyals et al. 2015 "Show and Tell" style: the image embedding is fed once, at t=0,
as the first input of an LSTM; then BOS and the words follow. The core is
self-critical's `LSTMCore`: one i2h and one h2h Linear to 5H, sigmoid input/forget/
output gates and a max-out of two candidate chunks, dropout on the output.
Vocabulary index 0 is BOS = EOS = pad; logits have V + 1 entries.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from nic_jax.models.layers import (
    StepLogits,
    dropout,
    folded_linear,
    hidden_sizes,
    torch_linear,
    uniform_embed,
    uniform_linear,
)


class LSTMCore(nnx.Module):
    """self-critical.pytorch's LSTMCore: state (h, c), each (..., H)."""

    def __init__(self, input_size: int, rnn_size: int, rngs: nnx.Rngs):
        self.rnn_size = rnn_size
        self.i2h = torch_linear(input_size, 5 * rnn_size, rngs)
        self.h2h = torch_linear(rnn_size, 5 * rnn_size, rngs)

    def __call__(self, x: jax.Array, state: tuple[jax.Array, jax.Array]):
        h, c = state
        sums = folded_linear(self.i2h, x) + folded_linear(self.h2h, h)
        in_gate, forget_gate, out_gate, cand_a, cand_b = jnp.split(sums, 5, axis=-1)
        next_c = jax.nn.sigmoid(forget_gate) * c + jax.nn.sigmoid(
            in_gate
        ) * jnp.maximum(cand_a, cand_b)
        next_h = jax.nn.sigmoid(out_gate) * jnp.tanh(next_c)
        return next_h, (next_h, next_c)


class FCModel(StepLogits, nnx.Module):
    """Decoder with the three-method interface every decoder here implements.

    `encode(feats)` runs once per image; `init_state(ctx)` gives the state before the
    BOS token; `step(ctx, state, token)` advances one word and returns log-probs
    (..., V + 1). Leading batch dims are free, so R captions of one image share ctx.
    """

    uses_att = False

    def __init__(self, config, vocab_size: int, rngs: nnx.Rngs):
        self.drop_prob_lm = config.drop_prob_lm
        (self.rnn_size,) = hidden_sizes(config, 1)
        enc = config.input_encoding_size
        self.img_embed = torch_linear(config.fc_feat_size, enc, rngs)
        self.core = LSTMCore(enc, self.rnn_size, rngs)
        self.embed = uniform_embed(vocab_size + 1, enc, 0.1, rngs)
        self.logit = uniform_linear(self.rnn_size, vocab_size + 1, 0.1, rngs)

    def encode(self, feats: dict, key: jax.Array | None = None) -> dict:
        """feats['fc'] (B, D) -> context {'img': (B, E)}; no dropout here upstream."""
        del key
        return {"img": self.img_embed(feats["fc"])}

    def init_state(self, ctx: dict):
        """Feeds the image embedding at t=0; its output is discarded, as upstream."""
        img = ctx["img"]
        zeros = jnp.zeros(img.shape[:-1] + (self.rnn_size,), img.dtype)
        _, state = self.core(img, (zeros, zeros))
        return state

    def step_logits(self, ctx: dict, state, token: jax.Array, key: jax.Array | None):
        """token (...,) int -> (logits (..., V + 1), new state)."""
        del ctx  # the image entered through the state at t=0
        output, state = self.core(self.embed(token), state)
        output = dropout(output, self.drop_prob_lm, key)
        return folded_linear(self.logit, output), state
