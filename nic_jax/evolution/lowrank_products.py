"""A low-rank population's Linear product, x W + c (x a) b^T, in three forms.

Member i of a low-rank population (`evolution.lowrank`) computes each Linear as

    x W + c_i (x a_i) b_i^T,   x (rows, m), W (m, n), a_i (m, r), b_i (n, r),

with W shared by every member. The forms give the same result and differ in
the memory traffic they cost when the members are vmapped together:

* `shared`: x W as one product over all members' rows, then each member's
  rank-r term (x a_i) b_i^T written and added: two more passes over an output
  of (members x rows, n) floats. Where arithmetic is the bound (a CPU, few rows
  a member), the cheapest.
* `stacked`: per member one product [x, c_i x a_i] @ [[W], [b_i^T]]: the output
  is written once, but each member reads its own (m + r, n) right-hand side
  (as full-rank members read their own W). Measured faster on a CPU from 128
  rows a member (BENCHMARKS.md, low-rank section).
* `grouped`: members in groups of g (`group_size`: the largest divisor of the
  members vmapped together up to `GROUP_COLUMNS` / r, or / (r + 1) with a
  bias); a group's rows times one right-hand side [[W], [b_1^T], ...,
  [b_g^T]] (m + g r rows, g more with the biases): member j's rows carry x_j in
  the first m columns and c_j x_j a_j in block j of the g r after it, zeros
  elsewhere. One product
  per group, its output written once, its right-hand side read once for g
  members: at most 1 + 32 / m times the arithmetic of x W, for 1/g of the
  stacked form's right-hand-side traffic. Each group's right-hand side is a
  copy (W broadcast, then the b's appended), loop-invariant in a decode. For
  accelerators, where a member's logit product is bound by memory traffic
  (BENCHMARKS.md, GPU run 1): on an H200, 1.04-1.05x full rank (GPU run 2). A
  bias of each member's own (`bias`, which
  `layers.folded_linear` hands to a low-rank Linear) goes in as one more
  column of its block, a 1 against its bias row: added apart, XLA:GPU made it
  the GEMM's C operand, a (rows, n) broadcast written and read again, 17% of a
  generation (GPU run 2). Inside the product the bias is multiplied at the
  product's precision, as x W is: TF32 at XLA:GPU's default, bf16 operands at
  "bfloat16" (as `folded_linear` rounds a bias it folds on a CPU).

`grouped` needs to see the members: `linear_product` is a
`jax.custom_batching.custom_vmap` function whose single-member body is the
shared form and whose rule, when the members are vmapped (the factors batched,
W not), computes the groups. A vmap over `lhs` alone (rows inside a member)
becomes one more row axis, so the members' vmap outside it still groups; any
other batching (W itself batched; coef or bias batched without the factors)
vmaps the single-member body.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

PRODUCTS = ("auto", "shared", "stacked", "grouped")
GROUP_COLUMNS = 32  # g r, or g (r + 1) with biases: the grouped extra inner size
STACK_MIN_ROWS = 128  # rows of a member from which a CPU stacks its products


def resolve(product: str, rows: int) -> str:
    """The form `product` selects for a member's Linear over `rows` rows:
    "auto" is `grouped` on a GPU, and on a CPU `stacked` from `STACK_MIN_ROWS`
    rows, `shared` below: the fastest measured there (BENCHMARKS.md: low-rank
    section for the CPU, GPU run 2 on an H200, where grouped ran 1.04x full
    rank and shared 0.52x). Elsewhere (a TPU: none measured; grouped's inner
    size m + 32 may pad to a second pass of a 128-wide matrix unit) `shared`."""
    if product != "auto":
        return product
    backend = jax.default_backend()
    if backend == "gpu":
        return "grouped"
    if backend == "cpu" and rows >= STACK_MIN_ROWS:
        return "stacked"
    return "shared"


def shared(lhs, rhs, a, b, coef, bias=None, **dot_kwargs):
    """x W + c (x a) b^T (+ bias) as two products: `lhs` (..., k) @ `rhs` (k, n),
    with `a` (m, r) reading the first m <= k columns (a folded bias may follow
    them)."""
    out = lax.dot_general(lhs, rhs, _last_by_first(lhs), **dot_kwargs)
    low = coef * (lhs[..., : a.shape[0]] @ a)
    out = out + (low @ b.T).astype(out.dtype)
    return out if bias is None else out + bias.astype(out.dtype)


def stacked(lhs, rhs, a, b, coef, bias=None, **dot_kwargs):
    """x W + c (x a) b^T (+ bias) as one product [x, c x a] @ [[W], [b^T]]."""
    low = coef * (lhs[..., : a.shape[0]] @ a)
    wide = jnp.concatenate([lhs, low.astype(lhs.dtype)], axis=-1)
    tall = jnp.concatenate([rhs, b.T.astype(rhs.dtype)], axis=0)
    out = lax.dot_general(wide, tall, _last_by_first(wide), **dot_kwargs)
    return out if bias is None else out + bias.astype(out.dtype)


def grouped(lhs, rhs, a, b, coef, bias, group: int, **dot_kwargs):
    """Members' x_i W + c_i (x_i a_i) b_i^T (+ bias_i) for `lhs` (P, ..., k), `a`
    (P, m, r), `b` (P, n, r), `coef` (P,), `bias` (P, n) or None and a shared
    `rhs` (k, n), `group` members (dividing P) per product (see the module
    docstring): member j's block holds [c_j x_j a_j, 1] against [b_j^T; bias_j]
    when it has a bias, so that no (rows, n) bias is added apart."""
    members, k, m, n = lhs.shape[0], lhs.shape[-1], a.shape[1], rhs.shape[1]
    rows_shape = lhs.shape[1:-1]
    rows, groups = math.prod(rows_shape), members // group
    x = lhs.reshape(members, rows, k)
    low = coef[:, None, None] * jnp.einsum("prm,pms->prs", x[..., :m], a)
    b_rows = jnp.swapaxes(b, 1, 2)  # (P, r, n)
    if bias is not None:
        low = jnp.concatenate([low, jnp.ones_like(low[..., :1])], axis=-1)
        b_rows = jnp.concatenate([b_rows, bias[:, None, :].astype(b.dtype)], axis=1)
    width = low.shape[-1]
    blocks = jnp.eye(group, dtype=lhs.dtype)[None, :, None, :, None]
    low = low.astype(lhs.dtype).reshape(groups, group, rows, 1, width) * blocks
    wide = jnp.concatenate(
        [x.reshape(groups, group * rows, k), low.reshape(groups, group * rows, -1)],
        axis=-1,
    )
    b_rows = b_rows.astype(rhs.dtype).reshape(groups, group * width, n)
    tall = jnp.concatenate([jnp.broadcast_to(rhs, (groups, k, n)), b_rows], axis=1)
    out = lax.dot_general(wide, tall, (((2,), (1,)), ((0,), (0,))), **dot_kwargs)
    return out.reshape(members, *rows_shape, n)


def group_size(members: int, columns: int) -> int:
    """Members per grouped product: the largest divisor of P up to
    `GROUP_COLUMNS` / `columns` (the inner columns each member adds: r, or
    r + 1 with its bias; at least 1)."""
    most = max(1, GROUP_COLUMNS // columns)
    return max(g for g in range(1, min(most, members) + 1) if members % g == 0)


def linear_product(form: str, **dot_kwargs):
    """fn(lhs, rhs, a, b, coef, bias=None) -> x W + c (x a) b^T (+ bias) in
    `form` ("shared", "stacked" or "grouped"); `dot_kwargs` (precision,
    preferred_element_type) go to the main product."""
    if form == "shared":
        return functools.partial(shared, **dot_kwargs)
    if form == "stacked":
        return functools.partial(stacked, **dot_kwargs)
    if form != "grouped":
        raise ValueError(f"unknown low-rank product form {form!r}")
    if dot_kwargs.pop("out_sharding", None) is not None:
        raise ValueError("the grouped low-rank product takes no out_sharding")
    one = functools.partial(shared, **dot_kwargs)
    product = jax.custom_batching.custom_vmap(one)

    @product.def_vmap
    def _members_rule(axis_size, in_batched, lhs, rhs, a, b, coef, bias):
        lhs_batched, rhs_batched, a_batched, b_batched, coef_batched, bias_batched = (
            in_batched  # bias_batched: None when there is no bias
        )
        if not any((rhs_batched, a_batched, b_batched, coef_batched, bias_batched)):
            return product(lhs, rhs, a, b, coef, bias), True  # the axis: more rows
        if rhs_batched or not (a_batched and b_batched):
            axes = [0 if batched else None for batched in in_batched]
            return jax.vmap(one, in_axes=axes)(lhs, rhs, a, b, coef, bias), True
        lhs = _members_first(lhs, lhs_batched, axis_size)
        coef = _members_first(coef, coef_batched, axis_size)
        bias = _members_first(bias, bias_batched, axis_size)
        group = group_size(axis_size, a.shape[-1] + (bias is not None))
        return grouped(lhs, rhs, a, b, coef, bias, group, **dot_kwargs), True

    return lambda lhs, rhs, a, b, coef, bias=None: product(lhs, rhs, a, b, coef, bias)


def _members_first(value, batched, members: int):
    """`value` with a leading members axis (broadcast when not batched)."""
    if value is None or batched:
        return value
    return jnp.broadcast_to(value, (members, *value.shape))


def _last_by_first(lhs):
    """Dimension numbers of lhs (..., k) @ rhs (k, n)."""
    return (((lhs.ndim - 1,), (0,)), ((), ()))
