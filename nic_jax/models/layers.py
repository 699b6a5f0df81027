"""Layers shared by the decoders: PyTorch-initialised Linear/Embed and pure dropout.

Initialisers follow torch.nn defaults (uniform +-1/sqrt(fan_in) for Linear weight and
bias) so that models trained here start from the distributions the self-critical.pytorch
recipes were tuned for, and imported PyTorch weights have the same layout (x @ kernel).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from nic_jax.errors import InputError


def _uniform(scale: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def torch_linear(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
    """nn.Linear with torch's default init: U(-1/sqrt(in), 1/sqrt(in)) for W and b."""
    scale = 1.0 / in_features**0.5
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=_uniform(scale),
        bias_init=_uniform(scale),
        rngs=rngs,
    )


def uniform_linear(
    in_features: int, out_features: int, scale: float, rngs: nnx.Rngs
) -> nnx.Linear:
    """Linear with U(-scale, scale) weights and a zero bias (self-critical logits)."""
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=_uniform(scale),
        bias_init=nnx.initializers.zeros_init(),
        rngs=rngs,
    )


def uniform_embed(num: int, features: int, scale: float, rngs: nnx.Rngs) -> nnx.Embed:
    """Embedding table with U(-scale, scale) entries."""
    return nnx.Embed(num, features, embedding_init=_uniform(scale), rngs=rngs)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout; identity when `key` is None (evaluation) or rate is 0.

    Keys are explicit rather than NNX Rngs state so the same decoder step can be
    scanned over time and vmapped over a population without stateful streams.
    """
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def folded_linear(layer: nnx.Linear, x: jax.Array) -> jax.Array:
    """`layer(x)` with the bias inside the matmul on CPU: [x, 1] @ [[kernel],
    [bias]], for the decoders' vocabulary projection and the FC model's LSTM
    gates. XLA:CPU adds a bias in a pass of its own over the (rows, V + 1)
    logits, 12% of a greedy decode step at V + 1 = 9,488, and ran the gates'
    products of inner size 128 ~1.4x slower than at 129 (BENCHMARKS.md, NIC-NES
    throughput). In a decode loop the stacked matrix is loop-invariant and built
    once. Elsewhere (GPU, TPU) the bias stays apart, so that the matmul keeps its
    aligned inner size. A layer's own `dot_general` (the low-rank population's,
    `evolution.lowrank`) gets the stacked operands when it takes them for this
    many rows (`stacks_rows(rows)`), else the bias as `bias=` when it adds one
    itself (`adds_bias`); any other is called as it is.

    At "bfloat16" matmul precision (`bf16_matmuls_requested`) a plain layer's
    product takes bf16 operands into f32 sums, on every backend, when its
    `dot_general` is `lax.dot_general` or says it takes them
    (`takes_bf16_operands`: it accepts `preferred_element_type`)."""
    plain = _plain(layer)
    folds = plain and _folds_bias(layer, math.prod(x.shape[:-1]))
    bf16 = plain and x.dtype == jnp.float32 and bf16_matmuls_requested()
    bf16 = bf16 and _takes_bf16(layer.dot_general)
    hands_bias = plain and not folds and getattr(layer.dot_general, "adds_bias", False)
    if not (folds or bf16 or hands_bias):
        return layer(x)
    kernel, operand = layer.kernel[...], x
    if folds:
        bias = layer.bias[...].astype(kernel.dtype)  # bf16 from kernels_for_steps
        kernel = jnp.concatenate([kernel, bias[None]], axis=0)
        ones = jnp.ones(x.shape[:-1] + (1,), x.dtype)
        operand = jnp.concatenate([x, ones], axis=-1)
    dims = (((x.ndim - 1,), (0,)), ((), ()))
    kwargs = {}
    if bf16:
        operand, kernel = operand.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
        kwargs["preferred_element_type"] = jnp.float32
    if hands_bias:
        return layer.dot_general(operand, kernel, dims, bias=layer.bias[...], **kwargs)
    out = layer.dot_general(operand, kernel, dims, **kwargs)
    return out if folds else out + layer.bias[...]


def bf16_matmuls_requested() -> bool:
    """Whether the f32 matmul precision in force is "bfloat16"
    (`compute.matmul_precision`). `folded_linear` honours it for the products it
    computes (the vocabulary projection, the FC model's gates) by multiplying
    bf16 operands into f32 sums, as GPU and TPU matrix units do: XLA:CPU
    ignores the setting and multiplies in f32 (with bf16 operands, on a CPU
    with AVX512-BF16, the logit product ran 1.6x faster, BENCHMARKS.md, NIC-NES
    throughput), and XLA:GPU reads it as its DEFAULT, TF32 on Hopper (on an
    H200 "bfloat16" alone changed nothing, BENCHMARKS.md, GPU run 1). Other
    products (the rest of the layers) keep the backend's reading."""
    return jax.config.jax_default_matmul_precision == "bfloat16"


VOCABULARY_PROJECTIONS = ("logit", "output_layer")  # every model's, by name


def kernels_for_steps(params):
    """`params` as the steps of a decode loop read them: at "bfloat16" matmul
    precision (`bf16_matmuls_requested`) the f32 kernels of the vocabulary
    projections (`VOCABULARY_PROJECTIONS`, which every model computes through
    `folded_linear`) in bf16, cast once before the loop. `folded_linear` casts
    them to bf16 anyway, but inside the loop XLA:GPU cast each member's logit
    kernel again at every step (25% of a full-rank generation on an H200,
    BENCHMARKS.md, GPU run 2). Other kernels stay f32 (some layers read them
    as `layer(x)`, at the backend's precision). Any pytree of plain arrays or
    of `nnx.Variable` values: a leaf is such a kernel by the keys of its path,
    (..., "logit", "kernel")."""
    if not bf16_matmuls_requested():
        return params

    def cast(path, leaf):
        names = [getattr(key, "key", getattr(key, "name", None)) for key in path]
        if names[-1:] == ["value"]:  # a leaf of an nnx.State
            names = names[:-1]
        kernel = len(names) >= 2 and names[-1] == "kernel"
        if kernel and names[-2] in VOCABULARY_PROJECTIONS and leaf.ndim == 2:
            return leaf.astype(jnp.bfloat16) if leaf.dtype == jnp.float32 else leaf
        return leaf

    return jax.tree_util.tree_map_with_path(cast, params)


def _plain(layer: nnx.Linear) -> bool:
    """A bias, and no dtype, precision or preferred element type of its own."""
    plain = layer.use_bias and layer.dtype is None and layer.precision is None
    return plain and getattr(layer, "preferred_element_type", None) is None


def _takes_bf16(dot_general) -> bool:
    return dot_general is lax.dot_general or getattr(
        dot_general, "takes_bf16_operands", False
    )


def _folds_bias(layer: nnx.Linear, rows: int) -> bool:
    """On CPU, when the layer's `dot_general` takes the stacked operands."""
    dot_general = layer.dot_general
    takes_stacked = getattr(dot_general, "stacks_rows", lambda rows: False)
    stacks = dot_general is lax.dot_general or takes_stacked(rows)
    return jax.default_backend() == "cpu" and stacks


def hidden_sizes(config, num_layers: int) -> tuple[int, ...]:
    """Hidden widths H_l of the recurrent layers, bottom first.

    `config.hidden_sizes` (written by `nic_jax.grow` when it widens one layer) or,
    when empty or absent, `config.rnn_size` for every layer.
    """
    sizes = tuple(int(size) for size in (config.get("hidden_sizes") or ()))
    if not sizes:
        return (config.rnn_size,) * num_layers
    if len(sizes) != num_layers or min(sizes) < 1:
        raise InputError(
            f"config model.hidden_sizes={sizes} does not fit model "
            f"{config.get('name')!r}: expected {num_layers} positive widths"
        )
    return sizes


def pad_units(x: jax.Array, width: int) -> jax.Array:
    """Zero-pads the last axis to `width`: layers of unequal widths share one
    stacked state array (..., L, max width); each reads its first H_l entries."""
    if x.shape[-1] == width:
        return x
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])])


class StepLogits:
    """Mixin of every decoder module: `step` is the log-softmax of the module's
    `step_logits(ctx, state, token, key) -> (logits (..., V + 1), new state)`.
    Greedy decoding without log-probs reads the logits alone (the same argmax
    without the log-softmax's exp over the vocabulary, `decoding.decode`)."""

    def step(self, ctx: dict, state, token: jax.Array, key: jax.Array | None):
        """token (...,) int -> (log-probs (..., V + 1), new state)."""
        logits, state = self.step_logits(ctx, state, token, key)
        return jax.nn.log_softmax(logits, axis=-1), state
