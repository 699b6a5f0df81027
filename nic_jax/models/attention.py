"""Additive attention over image regions and the shared body of attention decoders.

Ports `Attention` and the `AttModel` base of ruotianluo/self-critical.pytorch
(models/AttModel.py), used by Att2in2 (Rennie et al. 2017, "Self-critical Sequence
Training for Image Captioning") and TopDown (Anderson et al. 2018, "Bottom-Up and
Top-Down Attention for Image Captioning and VQA"):

* word embedding -> ReLU -> dropout; `fc_embed` / `att_embed` = Linear -> ReLU ->
  dropout, applied once per image in `encode` (the dropout mask is shared by the
  references of an image, as upstream when it repeats features after embedding);
* `ctx2att` projects the embedded regions once per image;
* additive attention: alpha = softmax(alpha_net(tanh(p_att + h2att(h)))); a region
  mask is applied as upstream (softmax, multiply by the mask, renormalise), so
  masked regions get exactly zero weight.

Initialisation is PyTorch's default everywhere (nn.Embedding N(0, 1), nn.Linear
U(+-1/sqrt(fan_in))); AttModel does not re-initialise its embed or logit.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from nic_jax.errors import InputError
from nic_jax.models.layers import (
    StepLogits,
    dropout,
    folded_linear,
    hidden_sizes,
    torch_linear,
)


def split_key(key: jax.Array | None, num: int) -> tuple:
    """`num` independent keys, or `num` Nones in evaluation mode (key None)."""
    if key is None:
        return (None,) * num
    return tuple(jax.random.split(key, num))


def normal_embed(num: int, features: int, rngs: nnx.Rngs) -> nnx.Embed:
    """nn.Embedding with torch's default N(0, 1) init."""
    init = jax.nn.initializers.normal(stddev=1.0)
    return nnx.Embed(num, features, embedding_init=init, rngs=rngs)


def masked_mean(att: jax.Array, att_mask: jax.Array | None) -> jax.Array:
    """Mean over valid regions: att (..., K, D), att_mask (..., K) -> (..., D)."""
    if att_mask is None:
        return att.mean(-2)
    mask = att_mask.astype(att.dtype)[..., None]
    return (att * mask).sum(-2) / mask.sum(-2)


class Attention(nnx.Module):
    """self-critical.pytorch's `Attention`: `h2att` (R -> A), `alpha_net` (A -> 1)."""

    def __init__(self, rnn_size: int, att_hid_size: int, rngs: nnx.Rngs):
        self.h2att = torch_linear(rnn_size, att_hid_size, rngs)
        self.alpha_net = torch_linear(att_hid_size, 1, rngs)

    def weights(self, h, p_att_feats, att_mask=None) -> jax.Array:
        """h (..., R), p_att_feats (..., K, A), att_mask (..., K) -> (..., K)."""
        hidden = jnp.tanh(p_att_feats + self.h2att(h)[..., None, :])
        weights = jax.nn.softmax(self.alpha_net(hidden)[..., 0], axis=-1)
        if att_mask is not None:
            weights = weights * att_mask.astype(weights.dtype)
            weights = weights / weights.sum(-1, keepdims=True)
        return weights

    def __call__(self, h, att_feats, p_att_feats, att_mask=None) -> jax.Array:
        """Attended context (..., D) of att_feats (..., K, D)."""
        weights = self.weights(h, p_att_feats, att_mask)
        return (weights[..., None, :] @ att_feats)[..., 0, :]


class AttModel(StepLogits, nnx.Module):
    """Embeddings, region encoder and output layer shared by the attention decoders.

    Subclasses set `self.core`, a module called as
    `core(xt, ctx, state) -> (output (..., R), state)`, and `num_layers`; the state
    is (h, c), each (..., num_layers, R), zero before BOS as upstream `init_hidden`
    (layers widened by `nic_jax.grow` have widths `hidden_sizes`; R is the widest).
    ctx holds `att` (..., K, R) embedded regions, `p_att` (..., K, A) their
    projection, `att_mask` (..., K) when given, and `fc` (..., R) when `uses_fc`.
    """

    uses_att = True
    num_layers = 1

    def __init__(self, config, vocab_size: int, rngs: nnx.Rngs, uses_fc: bool):
        self.drop_prob_lm = config.drop_prob_lm
        self.hidden_sizes = hidden_sizes(config, self.num_layers)
        self.rnn_size = max(self.hidden_sizes)  # the state's width
        self.att_feat_size = config.att_feat_size
        self.uses_fc = uses_fc
        rnn, enc = config.rnn_size, config.input_encoding_size
        self.embed = normal_embed(vocab_size + 1, enc, rngs)
        if uses_fc:
            self.fc_embed = torch_linear(config.fc_feat_size, rnn, rngs)
        self.att_embed = torch_linear(config.att_feat_size, rnn, rngs)
        self.logit = torch_linear(self.hidden_sizes[-1], vocab_size + 1, rngs)
        self.ctx2att = torch_linear(rnn, config.att_hid_size, rngs)

    def _embed_relu_dropout(self, layer, x, key):
        return dropout(jax.nn.relu(layer(x)), self.drop_prob_lm, key)

    def _check_att(self, feats: dict) -> None:
        att = feats.get("att")
        if att is None or att.ndim < 2 or att.shape[-1] != self.att_feat_size:
            found = "no 'att'" if att is None else f"'att' of shape {att.shape}"
            raise InputError(
                f"region features: found {found}, expected (B, K, "
                f"{self.att_feat_size}) (config model.att_feat_size)"
            )

    def encode(self, feats: dict, key: jax.Array | None = None) -> dict:
        """feats 'att' (B, K, D_att), optional 'att_mask' (B, K) and 'fc' (B, D_fc)
        (the mean of the valid regions when absent) -> per-image context."""
        self._check_att(feats)
        att_key, fc_key = split_key(key, 2)
        att_mask = feats.get("att_mask")
        att = self._embed_relu_dropout(self.att_embed, feats["att"], att_key)
        ctx = {"att": att, "p_att": self.ctx2att(att)}
        if att_mask is not None:
            ctx["att_mask"] = att_mask.astype(att.dtype)
        if self.uses_fc:
            fc = feats.get("fc")
            fc = masked_mean(feats["att"], att_mask) if fc is None else fc
            ctx["fc"] = self._embed_relu_dropout(self.fc_embed, fc, fc_key)
        return ctx

    def init_state(self, ctx: dict):
        """Zero (h, c), each (B, num_layers, R)."""
        att = ctx["att"]
        zeros = jnp.zeros(att.shape[:-2] + (self.num_layers, self.rnn_size), att.dtype)
        return zeros, zeros

    def step_logits(self, ctx: dict, state, token: jax.Array, key: jax.Array | None):
        """token (...,) int -> (logits (..., V + 1), new state)."""
        embed_key, out_key = split_key(key, 2)
        xt = self._embed_relu_dropout(self.embed, token, embed_key)
        output, state = self.core(xt, ctx, state)
        output = dropout(output, self.drop_prob_lm, out_key)
        return folded_linear(self.logit, output), state
