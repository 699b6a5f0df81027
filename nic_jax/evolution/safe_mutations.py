"""Safe mutations: per-parameter factors that scale the mutation noise.

Lehman et al. 2018, "Safe Mutations for Deep and Recurrent Neural Networks through
Output Gradients" (uber-research/safemutations), as es-img-captioning implements
them (`algorithm/safe_mutations.py`, `PolicyNet.evolve`). Every function returns a
`scale` (N,) that multiplies eps (see `population.Population.scale`):

* SM-PROPORTIONAL: scale = |theta|, exact zeros replaced by mean |theta|.
* SM-G-SUM: sensitivity s = sqrt(sum_k (d/dtheta sum_b out[b, k])^2) / B over the
  G output groups k of `outputs_fn(params) -> (B, G)` (a (B, G, S...) output is first
  reduced to its group L2 norms); s = max(s, u) / u; scale = 1 / s.
* SM-G-ABS: s = sqrt(sum_k (mean_b |d out[b, k] / dtheta|)^2), floored and divided
  by u the same way; per-sample gradients are Jacobian entries, so samples must not
  interact in `outputs_fn` (no batch statistics).
* SM-VECTOR: a fixed sensitivity from a .npy file: max(s, u) / min(max(s, u)).

The Jacobian rows are `vmap`ped vector-Jacobian products, `group_chunk` groups at a
time, never one backward pass per group. For captions, `greedy_logprob_groups` is
es-img-captioning's `forward_for_sensitivity`: the log-softmax after 5 greedy steps,
in groups of 100 vocabulary entries.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from nic_jax.errors import InputError

KINDS = ("", "SM-PROPORTIONAL", "SM-G-SUM", "SM-G-ABS", "SM-VECTOR")


def proportional_scale(theta: jax.Array) -> jax.Array:
    """SM-PROPORTIONAL: |theta| (N,) with exact zeros replaced by mean |theta|."""
    magnitude = jnp.abs(theta)
    return jnp.where(theta == 0.0, jnp.mean(magnitude), magnitude)


def _group_outputs(outputs_fn: Callable, unravel: Callable) -> Callable:
    """flat theta -> (B, G): group L2 norms of any trailing output axes."""

    def grouped(theta):
        out = outputs_fn(unravel(theta))
        if out.ndim > 2:
            out = jnp.sqrt(jnp.sum(out.reshape(*out.shape[:2], -1) ** 2, axis=-1))
        return out

    return grouped


def _chunked_rows(num: int, chunk: int):
    chunk = max(1, min(chunk, num))
    pad = (-num) % chunk
    return jnp.pad(jnp.arange(num), (0, pad), constant_values=-1).reshape(-1, chunk)


def grad_sum_sensitivity(
    outputs_fn: Callable, params, group_chunk: int = 16
) -> jax.Array:
    """SM-G-SUM raw sensitivity (N,) before the underflow floor.

    outputs_fn(params) -> (B, G) or (B, G, S...). Row k of the Jacobian is the
    gradient of sum_b out[b, k]; `group_chunk` rows are computed together.
    """
    theta, unravel = ravel_pytree(params)
    grouped = _group_outputs(outputs_fn, unravel)
    batch = jax.eval_shape(grouped, theta).shape[0]
    summed, vjp = jax.vjp(lambda t: grouped(t).sum(0), theta)
    groups = summed.shape[0]

    def body(total, rows):
        cotangents = jax.nn.one_hot(rows, groups, dtype=summed.dtype)  # -1: zeros
        (jac_rows,) = jax.vmap(vjp)(cotangents)
        return total + jnp.sum(jac_rows**2, axis=0), None

    rows = _chunked_rows(groups, group_chunk)
    total, _ = lax.scan(body, jnp.zeros_like(theta), rows)
    return jnp.sqrt(total) / batch


def grad_abs_sensitivity(
    outputs_fn: Callable, params, group_chunk: int = 1
) -> jax.Array:
    """SM-G-ABS raw sensitivity (N,): per-sample |gradients| averaged over B.

    Each group costs B vjps held together ((group_chunk, B, N) floats).
    """
    theta, unravel = ravel_pytree(params)
    grouped = _group_outputs(outputs_fn, unravel)
    out, vjp = jax.vjp(grouped, theta)
    batch, groups = out.shape

    def group_row(k):
        # Cotangent e_(b, k) for every sample b: the B per-sample gradients.
        cotangents = jax.nn.one_hot(jnp.arange(batch), batch, dtype=out.dtype)
        cotangents = cotangents[:, :, None] * jax.nn.one_hot(k, groups)[None, None]
        (grads,) = jax.vmap(vjp)(cotangents.astype(out.dtype))
        return jnp.mean(jnp.abs(grads), axis=0) ** 2

    def body(total, rows):
        return total + jnp.sum(jax.vmap(group_row)(rows), axis=0), None

    total, _ = lax.scan(body, jnp.zeros_like(theta), _chunked_rows(groups, group_chunk))
    return jnp.sqrt(total)


def floor_sensitivity(sensitivity: jax.Array, underflow: float) -> jax.Array:
    """max(s, u) / u, es-img-captioning's treatment of computed sensitivities."""
    return jnp.maximum(sensitivity, underflow) / underflow


def load_sensitivity_vector(path: str, num_params: int, underflow: float) -> jax.Array:
    """SM-VECTOR sensitivity (N,) from a .npy file: max(s, u) / min(max(s, u))."""
    try:
        vector = np.load(path)
    except (OSError, ValueError) as err:
        raise InputError(f"safe mutation vector {path}: cannot read ({err})") from err
    vector = np.asarray(vector, np.float32).reshape(-1)
    if vector.shape[0] != num_params:
        raise InputError(
            f"safe mutation vector {path} has {vector.shape[0]} entries but the model "
            f"has {num_params} parameters; expected one sensitivity per parameter"
        )
    floored = np.maximum(vector, underflow)
    return jnp.asarray(floored / floored.min())


def mutation_scale(
    kind: str,
    params,
    outputs_fn: Callable | None = None,
    underflow: float = 0.01,
    vector: jax.Array | None = None,
    group_chunk: int = 1,
) -> jax.Array | None:
    """The noise factor (N,) of mutation `kind` at `params`; None for plain noise.

    `outputs_fn` is needed by SM-G-SUM / SM-G-ABS, `vector` (a loaded sensitivity)
    by SM-VECTOR.
    """
    if kind not in KINDS:
        raise InputError(f"safe mutation kind {kind!r} is unknown; valid: {KINDS}")
    if kind == "":
        return None
    if kind == "SM-PROPORTIONAL":
        return proportional_scale(ravel_pytree(params)[0])
    if kind == "SM-VECTOR":
        if vector is None:
            raise InputError("SM-VECTOR needs a sensitivity vector file")
        return 1.0 / vector
    if outputs_fn is None:
        raise InputError(f"{kind} needs an outputs_fn for its output gradients")
    compute = grad_sum_sensitivity if kind == "SM-G-SUM" else grad_abs_sensitivity
    sensitivity = compute(outputs_fn, params, group_chunk)
    return 1.0 / floor_sensitivity(sensitivity, underflow)


def scale_rows(kind: str, unravel: Callable, rows: jax.Array, **kwargs):
    """`mutation_scale` of every parent row (M, N) -> (M, N), one row at a time
    (the GA's per-parent scale); None for plain noise. kwargs as `mutation_scale`;
    an `outputs_fn` receives each row's params pytree."""
    if kind == "":
        return None
    return lax.map(lambda row: mutation_scale(kind, unravel(row), **kwargs), rows)


def greedy_logprob_groups(
    decoder, feats: dict, steps: int = 5, group_size: int = 100
) -> Callable:
    """outputs_fn for captioners: params -> (B, G, group_size) log-probs after
    `steps` greedy words, the V + 1 entries zero-padded into groups of
    `group_size` (es-img-captioning's `forward_for_sensitivity`)."""

    def outputs_fn(params):
        ctx = decoder.encode(params, feats)
        state = decoder.init_state(params, ctx)
        token = jnp.zeros(jax.tree.leaves(state)[0].shape[:1], jnp.int32)
        logprobs = None
        for _ in range(steps):
            logprobs, state = decoder.step(params, ctx, state, token)
            token = lax.stop_gradient(jnp.argmax(logprobs, axis=-1)).astype(jnp.int32)
        width = logprobs.shape[-1]
        padded = jnp.pad(logprobs, ((0, 0), (0, (-width) % group_size)))
        return padded.reshape(padded.shape[0], -1, group_size)

    return outputs_fn
