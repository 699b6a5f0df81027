"""Low-rank NES perturbations: EGGROLL (Sarkar et al. 2025, "Evolution Strategies
at the Hyperscale").

Member i perturbs every weight matrix W (m, n) by a rank-r matrix instead of a
full (m, n) normal draw:

    eps_i = A_i B_i^T / sqrt(r),   A_i (m, r), B_i (n, r) ~ N(0, 1),

so each entry of eps_i has variance 1, as full-rank noise, and member i's
matrix is W + c_i eps_i with c_i = sign_i * sigma. A member draws r (m + n)
floats per matrix instead of m n. Leaves that are not matrices (biases, vectors,
scalars, tensors of rank >= 3) get plain N(0, 1) noise of their own shape. A
member's factors are one normal draw from `member_key(noise_key, index)`, cut
into the leaves in `jax.tree.leaves` order, so nothing is stored; the shared
noise table (`es.noise`) is not used.

The population's forward never builds W + c_i eps_i for a layer: inside a
decoder (`LowRankDecoder`) each `nnx.Linear` computes

    x W + c_i (x A_i) B_i^T / sqrt(r)

and each `nnx.Embed` looks up W[t] + c_i A_i[t] B_i^T / sqrt(r). The base W is
shared by the members vmapped together; `lowrank_products` computes their
Linear products in one of three forms (x W once over all members' rows plus
each rank-r term; one stacked product per member; one product per group of
members), chosen per backend or by `es.lowrank_product`. Other matrix
parameters (raw `nnx.Param` matrices of ShowTell and the IN5400 cells) are
materialised as W + c_i eps_i per member, and vectors get their dense noise
added, at each decoder call (loop-invariant inside the decode loop).

The NES direction for this noise (the estimator of `nes.NES`, same ranks and
constants) is, per matrix,

    sum_i w_i A_i B_i^T / sqrt(r) = (A diag(w)) B^T,

with A (m, k r) the A_i of a chunk of k pairs side by side: one (m, n) matrix
product per chunk (`weighted_factor_sum`), never a per-member (m, n) matrix.

Usage: `LowRankNES(template, num_pairs, optimizer, rank=r, ...)` is a `nes.NES`
whose `evaluate` hands `fitness_fn` a `LowRankParams` (base params, factors,
coefficient) per member; build the fitness with
`population_decoder(strategy, decoder)` (a `LowRankDecoder`), or adapt any
params-pytree fitness with `materialize`.
"""

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct
from jax import lax
from jax.flatten_util import ravel_pytree

from nic_jax.errors import InputError
from nic_jax.evolution import lowrank_products as products
from nic_jax.evolution import noise as noise_lib
from nic_jax.evolution import population as population_lib
from nic_jax.evolution.nes import NES
from nic_jax.evolution.ranks import centered_ranks
from nic_jax.parallel.members import map_members, sum_over_members


@struct.dataclass
class LowRank:
    """One matrix's noise eps = a @ b.T: a (m, r) already divided by sqrt(r),
    b (n, r)."""

    a: jax.Array
    b: jax.Array


@struct.dataclass
class LowRankParams:
    """One member: base params (shared), its factors (the params' tree with a
    `LowRank` at each matrix and an eps array elsewhere), coef () = sign sigma."""

    base: Any
    factors: Any
    coef: jax.Array


def float_template(params) -> Any:
    """The params' tree of float32 `ShapeDtypeStruct`s (what the noise needs)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), params)


def _leaf_size(spec, rank: int) -> int:
    """Floats of one leaf's noise: r (m + n) for a matrix, its size otherwise."""
    if len(spec.shape) == 2:
        return rank * sum(spec.shape)
    return math.prod(spec.shape)


def _leaf_noise(flat: jax.Array, spec, rank: int):
    if len(spec.shape) != 2:
        return flat.reshape(spec.shape)
    rows, cols = spec.shape
    both = flat.reshape(rows + cols, rank)
    return LowRank(a=both[:rows] / math.sqrt(rank), b=both[rows:])


def member_factors(key: jax.Array, index, template, rank: int):
    """Factors of member `index` of the generation keyed `key`: the template's
    tree with `LowRank` (a (m, r), b (n, r)) at matrices and eps elsewhere.

    One normal draw of all the member's floats, cut into leaves in
    `jax.tree.leaves` order: one random-bits kernel rather than one per leaf
    (XLA compiled 10 per-leaf draws of the FC model 4x slower).
    """
    leaves, treedef = jax.tree.flatten(template)
    sizes = [_leaf_size(spec, rank) for spec in leaves]
    flat = jax.random.normal(noise_lib.member_key(key, index), (sum(sizes),))
    starts = [0, *itertools.accumulate(sizes)]
    noise = [
        _leaf_noise(flat[start : start + size], spec, rank)
        for start, size, spec in zip(starts, sizes, leaves)
    ]
    return jax.tree.unflatten(treedef, noise)


def dense(factor) -> jax.Array:
    """A leaf's noise as an explicit array: a @ b.T for `LowRank`, else itself."""
    if isinstance(factor, LowRank):
        return factor.a @ factor.b.T
    return factor


def materialize(params: LowRankParams):
    """The member's explicit params base + coef * eps (a params-pytree fitness
    function, or a reference: this builds every (m, n) matrix)."""
    return jax.tree.map(
        lambda w, f: w + params.coef * dense(f).astype(w.dtype),
        params.base,
        params.factors,
    )


def _contract(factor, weights):
    """sum_c weights[c] * eps_c of one leaf over a chunk of members (c leading)."""
    if isinstance(factor, LowRank):
        # one (m, c r) @ (c r, n) product: the chunk's A diag(w) against its B
        return jnp.einsum("cmr,cnr->mn", factor.a * weights[:, None, None], factor.b)
    return jnp.tensordot(weights, factor, axes=1)


def weighted_factor_sum(
    key: jax.Array,
    indices: jax.Array,
    weights: jax.Array,
    template,
    rank: int,
    chunk_size: int = 32,
):
    """sum_i weights[i] * eps(key, indices[i]) as a params pytree.

    The members' factors are drawn `chunk_size` at a time and each matrix's chunk
    is contracted in one matrix product; a slice of the indices gives a partial
    sum (padded members get weight 0), so a mesh can add its devices' sums.
    """
    indices, weights = noise_lib.weighted_chunks(indices, weights, chunk_size)

    def body(total, chunk_args):
        idx, w = chunk_args
        factors = jax.vmap(lambda i: member_factors(key, i, template, rank))(idx)
        part = jax.tree.map(lambda _, f: _contract(f, w), template, factors)
        return jax.tree.map(jnp.add, total, part), None

    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), template)
    total, _ = lax.scan(body, zeros, (indices, weights))
    return total


def _lowrank_dot_general(factor: LowRank, coef, product: str):
    """`nnx.Linear.dot_general` computing x W + coef (x a) b^T with W (m, n)
    shared by the members vmapped together, in the form `product` selects
    (`lowrank_products.resolve`: "auto" picks by backend and rows a member).
    The members never hold an (m, n) matrix of their own.

    `rhs` may carry rows below W that `lhs` matches with columns after its first
    m (`layers.folded_linear` stacks the bias so when `stacks_rows(rows)`); `a`
    reads the first m columns. Otherwise `folded_linear` hands the layer's bias
    over as `bias`, for the form to add (the grouped form inside its product).
    """

    def dot_general(lhs, rhs, dimension_numbers, precision=None, bias=None, **kw):
        if dimension_numbers != (((lhs.ndim - 1,), (0,)), ((), ())):
            raise ValueError(f"low-rank Linear: unexpected dims {dimension_numbers}")
        form = products.resolve(product, math.prod(lhs.shape[:-1]))
        compute = products.linear_product(form, precision=precision, **kw)
        return compute(lhs, rhs, factor.a, factor.b, coef, bias)

    dot_general.stacks_rows = functools.partial(_folds_bias, product)
    dot_general.takes_bf16_operands = True  # passes preferred_element_type on
    dot_general.adds_bias = True  # takes the layer's bias as `bias`
    return dot_general


def _folds_bias(product: str, rows: int) -> bool:
    """Whether this layer takes [x, 1] @ [[W], [bias]] from `layers.folded_linear`
    (which folds on a CPU only): in the stacked form only. Each member's bias
    carries its own noise, so a folded right-hand side is per member: what the
    stacked form builds anyway, what the shared and grouped forms exist to
    avoid."""
    return products.resolve(product, rows) == "stacked"


class _LowRankEmbed(nnx.Embed):
    """An Embed whose lookup adds coef a[t] b^T (set on a merged, per-call module
    by `_attach`; `nnx.Embed` has no hook for its table lookup)."""

    def __call__(self, inputs, out_sharding=None):
        rows = super().__call__(inputs, out_sharding)
        return rows + self._lowrank_rows(inputs).astype(rows.dtype)


def _rows_fn(factor: LowRank, coef):
    return lambda tokens: coef * (jnp.take(factor.a, tokens, axis=0) @ factor.b.T)


def _at(tree, path: tuple):
    return functools.reduce(lambda node, key: node[key], path, tree)


def _attach(module, factors, coef, product: str):
    """Routes each Linear / Embed of a freshly merged `module` through its
    low-rank factors and adds dense noise to every other parameter, in place."""
    nodes = list(nnx.iter_graph(module))
    factored = set()
    for path, node in nodes:
        if isinstance(node, nnx.Linear):
            factor = _at(factors, path + ("kernel",))
            node.dot_general = _lowrank_dot_general(factor, coef, product)
            factored.add(path + ("kernel",))
        elif isinstance(node, nnx.Embed):
            node.__class__ = _LowRankEmbed
            node._lowrank_rows = _rows_fn(_at(factors, path + ("embedding",)), coef)
            factored.add(path + ("embedding",))
    for path, node in nodes:
        if isinstance(node, nnx.Variable) and path not in factored:
            value = node[...]
            node[...] = value + coef * dense(_at(factors, path)).astype(value.dtype)
    return module


@dataclasses.dataclass(frozen=True)
class LowRankDecoder:
    """A `functional.Decoder` that also takes `LowRankParams` (one member) in
    place of params, running the low-rank forward; plain params pass through."""

    decoder: Any  # models.functional.Decoder
    product: str = "auto"  # each Linear's form (`lowrank_products.PRODUCTS`)

    @property
    def name(self) -> str:
        return self.decoder.name

    @property
    def vocab_size(self) -> int:
        return self.decoder.vocab_size

    @property
    def uses_att(self) -> bool:
        return self.decoder.uses_att

    def _module(self, params):
        if not isinstance(params, LowRankParams):
            return nnx.merge(self.decoder.graphdef, params)
        module = nnx.merge(self.decoder.graphdef, params.base)
        return _attach(module, params.factors, params.coef, self.product)

    def encode(self, params, feats: dict, key=None):
        """See `functional.Decoder.encode`."""
        return self._module(params).encode(feats, key)

    def init_state(self, params, ctx):
        """See `functional.Decoder.init_state`."""
        return self._module(params).init_state(ctx)

    def step(self, params, ctx, state, token, key=None):
        """See `functional.Decoder.step`."""
        return self._module(params).step(ctx, state, token, key)

    def step_logits(self, params, ctx, state, token, key=None):
        """See `functional.Decoder.step_logits`."""
        return self._module(params).step_logits(ctx, state, token, key)


# Pairs whose factors `gradient` contracts per product when noise_chunk_size is 0.
# Ask + tell of P = 1,024 (FC-128, rank 4, 2-core CPU): pairs per product 8 / 16 /
# 32 / 64 / all 512 took 0.33 / 0.34 / 0.42 / 0.55 / 0.96 s with 16 / 25 / 63 /
# 119 / 1,040 MB of XLA temporaries (BENCHMARKS.md, low-rank section).
FACTOR_CHUNK = 8


class LowRankNES(NES):
    """`nes.NES` with rank-`rank` matrix noise: `fitness_fn(LowRankParams, key)`.

    Same arguments as `NES` plus `rank` r >= 1 (`noise_chunk_size` pairs are
    contracted per matrix product in `gradient`, 0: `FACTOR_CHUNK`) and
    `product`, the form of the population's Linear products
    (`lowrank_products.PRODUCTS`, "auto" by backend); `source`
    arguments are ignored
    (the factors are always drawn from member keys) and safe-mutation scales are
    refused (a per-entry scale would make the noise full rank).
    """

    def __init__(self, *args, rank: int, product: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if rank < 1:
            raise InputError(
                f"config es.noise_rank={rank}: low-rank NES needs a rank >= 1 "
                "(0 selects full-rank noise)"
            )
        if product not in products.PRODUCTS:
            raise InputError(
                f"config es.lowrank_product={product!r} is unknown; valid: "
                f"{', '.join(products.PRODUCTS)}"
            )
        self.rank = rank
        self.product = product
        flat = jax.ShapeDtypeStruct((self.num_params,), jnp.float32)
        self.template = float_template(jax.eval_shape(self.unravel, flat))

    def ask(self, key, state, scale=None):
        """The generation's 2n antithetic members (see `NES.ask`)."""
        if scale is not None:
            raise InputError(
                "config es.safe_mutation needs full-rank noise (es.noise_rank=0)"
            )
        return super().ask(key, state)

    def member_params(self, population, base, member) -> LowRankParams:
        """Member `member` of `population` around `base` (the params pytree)."""
        index = population.noise_index[member]
        factors = member_factors(population.noise_key, index, self.template, self.rank)
        coef = population.sign[member] * population.sigma
        return LowRankParams(base=base, factors=factors, coef=coef)

    def evaluate(self, fitness_fn: Callable, population, fitness_key, source=None):
        """Fitness (P,): `eval_chunk_size` members vmapped at a time over shared
        base params; `axis` splits them over devices as `NES.evaluate` does."""
        del source
        base = self.unravel(population.parents[0])

        def one(member):
            key = population_lib.member_fitness_key(population, fitness_key, member)
            return fitness_fn(self.member_params(population, base, member), key)

        return map_members(one, population.size, self.eval_chunk_size, self.axis)

    def gradient(self, population, fitness: jax.Array, source=None) -> jax.Array:
        """Ascent estimate g (N,) from the centered ranks of fitness (P,)."""
        del source
        shaped = centered_ranks(fitness)
        weights = shaped[0::2] - shaped[1::2]
        total = self._factor_sum(
            population.noise_key, population.noise_index[0::2], weights
        )
        sigma = population.sigma
        factor = 1.0 / sigma if self.divide_by_sigma else sigma
        return factor * total / fitness.shape[0]

    def _factor_sum(self, key, indices, weights) -> jax.Array:
        """Flat (N,) sum_i weights[i] eps_i, split over `axis` as `NES` does."""

        chunk = self.noise_chunk_size or FACTOR_CHUNK  # 0: the trainer's default

        def weighted_sum(idx, w):
            tree = weighted_factor_sum(key, idx, w, self.template, self.rank, chunk)
            return ravel_pytree(tree)[0]

        axis = None if self.gradient_sum == "replicated" else self.axis
        return sum_over_members(weighted_sum, (indices, weights), axis)


def population_decoder(strategy, decoder):
    """The decoder a strategy's fitness must run: a `LowRankDecoder` for
    `LowRankNES`, `decoder` itself otherwise."""
    if isinstance(strategy, LowRankNES):
        return LowRankDecoder(decoder, strategy.product)
    return decoder
