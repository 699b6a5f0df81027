"""The IN5400 captioning decoders (UiO IN5400, 2022 Mandatory 2, tasks 1-4).

The handout's `ImageCaptionModel`: an input layer (dropout 0.25 -> Linear to the map
size M (`nn_map_size`, 512) -> leaky ReLU) processes the image feature once; at every
step layer 0 reads [word embedding; processed feature] and the output layer reads the
top layer's h. The state starts at zero, as the handout's `initial_hidden_state`;
the image enters through the layer-0 input at every step, not through the state.

* `in5400_rnn` (task 1): one simplified-RNN layer.
* `in5400_gru` (task 2) / `in5400_lstm` (task 3): two stacked cells. The layer
  counts are the tasks' (config `model.num_layers` is ShowTell's); `CellStack` and
  `cells.stack_step` take any number of layers.
* `in5400_att` (task 4): the input layer maps each of K regions; layer 0 (LSTM) reads
  [embedding; max-pooled regions]; a 2-layer MLP on layer 0's new [h; c] (dropout
  0.25 -> Linear(2H, 50) -> leaky ReLU -> Linear(50, K) -> softmax) weighs the
  regions; layer 1 (LSTM) reads [h0; weighted regions].

Cells and their init are `cells.py`; other layers use PyTorch's defaults as the
handout does (nn.Embedding N(0, 1), nn.Linear U(+-1/sqrt(fan_in))). Deviations:
* No batch norm anywhere. A BatchNorm1d in the input layer (as some course variants
  have) would normalise with batch statistics: running averages are mutable state,
  and training-mode outputs depend on the other rows of the batch. A decoder that is
  vmapped over an ES population, decoded one image at a time or beam-searched must
  be a pure function of (params, one image), so the input layer is the 2022
  handout's dropout -> linear -> leaky ReLU, with no normalisation substituted.
* Input-layer dropout needs a key in `encode(feats, key)`; with key None (evaluation,
  or callers that pass no key to `encode`) it is the identity. One mask per image is
  shared by the image's references and kept for all steps, as the handout applies
  the layer once per forward pass.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from nic_jax.errors import InputError
from nic_jax.models import cells
from nic_jax.models.layers import (
    StepLogits,
    dropout,
    folded_linear,
    hidden_sizes,
    torch_linear,
)

INPUT_DROPOUT = 0.25
ATT_DROPOUT = 0.25
ATT_HIDDEN = 50
LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default
DEFAULTS = dict(nn_map_size=512, num_regions=10)


def _setting(config, name: str):
    """config.model value of an IN5400 key, the handout's value when absent."""
    return config.get(name, DEFAULTS[name])


def _check_features(feats: dict, name: str, size: int, config_key: str, ndim: int):
    array = feats.get(name)
    if array is None or array.ndim != ndim or array.shape[-1] != size:
        found = f"no {name!r}" if array is None else f"{name!r} of shape {array.shape}"
        expected = "(B, K, D)" if ndim == 3 else "(B, D)"
        raise InputError(
            f"image features: found {found}, expected {expected} with D = {size} "
            f"(config model.{config_key})"
        )


class Cell(nnx.Module):
    """One cell's params under the handout's names (`weight_u`, `bias_u`, ...)."""

    def __init__(self, kind: str, input_size: int, hidden_size: int, rngs: nnx.Rngs):
        self.kind = kind
        self.names = tuple(
            prefix + suffix
            for suffix in cells.GATE_SUFFIXES[kind]
            for prefix in ("weight", "bias")
        )
        fresh = cells.init_cell_params(rngs.params(), kind, input_size, hidden_size)
        for name in self.names:
            setattr(self, name, nnx.Param(fresh[name]))

    def params(self) -> dict:
        return {name: getattr(self, name)[...] for name in self.names}


class CellStack(nnx.Module):
    """Stacked cells of one kind, layer l `hidden_sizes[l]` wide; state (..., L, S)
    with S = H or 2H (LSTM) of the widest layer H."""

    def __init__(self, kind, input_size, hidden_sizes, rngs: nnx.Rngs):
        self.kind = kind
        self.hidden_sizes = tuple(hidden_sizes)
        self.num_layers = len(self.hidden_sizes)
        inputs = (input_size,) + self.hidden_sizes[:-1]
        for layer, (size, hidden) in enumerate(zip(inputs, self.hidden_sizes)):
            # params keys 'layer0', 'layer1', ...
            setattr(self, f"layer{layer}", Cell(kind, size, hidden, rngs))

    def zeros(self, batch_shape: tuple, dtype) -> jax.Array:
        size = cells.state_size(self.kind, max(self.hidden_sizes))
        return jnp.zeros(batch_shape + (self.num_layers, size), dtype)

    def __call__(self, x: jax.Array, state: jax.Array):
        """x (..., I), state (..., L, S) -> (top h (..., H), new state)."""
        layers = [getattr(self, f"layer{i}").params() for i in range(self.num_layers)]
        return cells.stack_step(cells.CELLS[self.kind], layers, x, state)


class InputLayer(nnx.Module):
    """The handout's input layer: dropout 0.25 -> Linear(D, M) -> leaky ReLU."""

    def __init__(self, in_features: int, map_size: int, rngs: nnx.Rngs):
        self.linear = torch_linear(in_features, map_size, rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        hidden = self.linear(dropout(x, INPUT_DROPOUT, key))
        return jax.nn.leaky_relu(hidden, LEAKY_SLOPE)


def _embedding(vocab_size: int, features: int, rngs: nnx.Rngs) -> nnx.Embed:
    init = jax.nn.initializers.normal(stddev=1.0)  # nn.Embedding's default
    return nnx.Embed(vocab_size + 1, features, embedding_init=init, rngs=rngs)


class IN5400Decoder(StepLogits, nnx.Module):
    """Tasks 1-3: the processed fc feature joins the word embedding at every step.

    `encode(feats, key=None)` -> {'img': (B, M)}; `init_state` -> zeros (B, L, S);
    `step(ctx, state, token, key)` -> (log-probs (..., V + 1), state).
    """

    uses_att = False
    kind = "gru"
    num_layers = 2

    def __init__(self, config, vocab_size: int, rngs: nnx.Rngs):
        self.fc_feat_size = config.fc_feat_size
        embed, map_size = config.input_encoding_size, _setting(config, "nn_map_size")
        self.embed = _embedding(vocab_size, embed, rngs)
        self.input_layer = InputLayer(config.fc_feat_size, map_size, rngs)
        sizes = hidden_sizes(config, self.num_layers)
        self.rnn = CellStack(self.kind, embed + map_size, sizes, rngs)
        self.output_layer = torch_linear(sizes[-1], vocab_size + 1, rngs)

    def encode(self, feats: dict, key: jax.Array | None = None) -> dict:
        """feats['fc'] (B, D) -> {'img': processed feature (B, M)}."""
        _check_features(feats, "fc", self.fc_feat_size, "fc_feat_size", 2)
        return {"img": self.input_layer(feats["fc"], key)}

    def init_state(self, ctx: dict) -> jax.Array:
        img = ctx["img"]
        return self.rnn.zeros(img.shape[:-1], img.dtype)

    def step_logits(self, ctx: dict, state, token: jax.Array, key: jax.Array | None):
        """token (...,) int -> (logits (..., V + 1), new state)."""
        del key  # the handout has no dropout inside the recurrence
        words = self.embed(token)
        img = jnp.broadcast_to(ctx["img"], words.shape[:-1] + ctx["img"].shape[-1:])
        top, state = self.rnn(jnp.concatenate([words, img], -1), state)
        return folded_linear(self.output_layer, top), state


class IN5400RNN(IN5400Decoder):
    """Task 1: one simplified-RNN layer, h' = tanh([x; h] W + b)."""

    kind = "rnn"
    num_layers = 1


class IN5400GRU(IN5400Decoder):
    """Task 2: two stacked GRU cells (reset gate before the product)."""

    kind = "gru"


class IN5400LSTM(IN5400Decoder):
    """Task 3: two stacked LSTM cells; per-layer state [h; c]."""

    kind = "lstm"


def _masked_max(regions: jax.Array, att_mask: jax.Array | None) -> jax.Array:
    """Max over valid regions: regions (..., K, M), att_mask (..., K) -> (..., M)."""
    if att_mask is None:
        return regions.max(-2)
    return jnp.where(att_mask[..., None] > 0, regions, -jnp.inf).max(-2)


class IN5400Attention(StepLogits, nnx.Module):
    """Task 4: a two-layer LSTM attending over K processed regions.

    `encode(feats, key=None)`: feats['att'] (B, K, D) (and optional 'att_mask'
    (B, K)) -> {'regions': (B, K, M), 'pooled': (B, M), 'att_mask'?}.
    State (..., 2, 2H): [h; c] of layer 0 and of layer 1, zero before BOS (layers
    widened to `hidden_sizes` (H0, H1) use the first 2 H_l of 2 max(H0, H1)).
    """

    uses_att = True

    def __init__(self, config, vocab_size: int, rngs: nnx.Rngs):
        self.att_feat_size = config.att_feat_size
        self.num_regions = _setting(config, "num_regions")
        embed, map_size = config.input_encoding_size, _setting(config, "nn_map_size")
        self.sizes = hidden_sizes(config, 2)
        self.embed = _embedding(vocab_size, embed, rngs)
        self.input_layer = InputLayer(config.att_feat_size, map_size, rngs)
        self.lstm0 = CellStack("lstm", embed + map_size, self.sizes[:1], rngs)
        self.att_hidden = torch_linear(2 * self.sizes[0], ATT_HIDDEN, rngs)
        self.att_out = torch_linear(ATT_HIDDEN, self.num_regions, rngs)
        self.lstm1 = CellStack("lstm", self.sizes[0] + map_size, self.sizes[1:], rngs)
        self.output_layer = torch_linear(self.sizes[1], vocab_size + 1, rngs)

    def encode(self, feats: dict, key: jax.Array | None = None) -> dict:
        _check_features(feats, "att", self.att_feat_size, "att_feat_size", 3)
        if feats["att"].shape[-2] != self.num_regions:
            raise InputError(
                f"region features: found K = {feats['att'].shape[-2]} regions, the "
                f"attention MLP outputs {self.num_regions} (config model.num_regions)"
            )
        regions = self.input_layer(feats["att"], key)
        att_mask = feats.get("att_mask")
        ctx = {"regions": regions, "pooled": _masked_max(regions, att_mask)}
        if att_mask is not None:
            ctx["att_mask"] = att_mask.astype(regions.dtype)
        return ctx

    def init_state(self, ctx: dict) -> jax.Array:
        pooled = ctx["pooled"]
        width = cells.state_size("lstm", max(self.sizes))
        return jnp.zeros(pooled.shape[:-1] + (2, width), pooled.dtype)

    def attention_weights(self, hc0, att_mask, key) -> jax.Array:
        """Region weights (..., K) from layer 0's [h; c] (..., 2H)."""
        hidden = self.att_hidden(dropout(hc0, ATT_DROPOUT, key))
        scores = self.att_out(jax.nn.leaky_relu(hidden, LEAKY_SLOPE))
        weights = jax.nn.softmax(scores, axis=-1)
        if att_mask is not None:  # as self-critical: softmax, mask, renormalise
            weights = weights * att_mask
            weights = weights / weights.sum(-1, keepdims=True)
        return weights

    def step_logits(self, ctx: dict, state, token: jax.Array, key: jax.Array | None):
        """token (...,) int -> (logits (..., V + 1), new state (..., 2, 2H))."""
        words = self.embed(token)
        pooled = jnp.broadcast_to(
            ctx["pooled"], words.shape[:-1] + ctx["pooled"].shape[-1:]
        )
        h0, state0 = self.lstm0(jnp.concatenate([words, pooled], -1), state[..., :1, :])
        hc0 = state0[..., 0, : 2 * self.sizes[0]]
        weights = self.attention_weights(hc0, ctx.get("att_mask"), key)
        attended = jnp.einsum("...k,...km->...m", weights, ctx["regions"])
        top, state1 = self.lstm1(jnp.concatenate([h0, attended], -1), state[..., 1:, :])
        return folded_linear(self.output_layer, top), jnp.concatenate(
            [state0, state1], axis=-2
        )
