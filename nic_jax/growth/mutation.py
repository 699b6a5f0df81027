"""Architecture mutation for NIC-ES: one population, several decoder widths, one
compiled program ("Deep Neuroevolution With Shared Weights: Ensembling A Better
Solution" grows members by function-preserving transforms).

Width buckets: layer `layer` may be H_k = H_0 + k * step wide, k = 0..K-1. Every
member is stored at the widest, H_{K-1} (the padded space, a flat row (N,) as the
GA keeps its parents): a member of bucket k holds zeros in every entry of its
units >= H_k, which computes exactly the bucket-k decoder (zero units stay zero:
no input, no output). Its mutation mask (N,) is 1 on its active entries only, so
Gaussian mutations (the GA's per-parent noise `scale`) never wake the padding, and
all members share shapes: the population evaluates under one compilation.

An architecture mutation moves a row from bucket k to k + 1: the active decoder is
cut out, widened by `step` units (r2r or net2net, function-preserving) and written
back into the padding, so the child's fitness starts where its parent's was.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from nic_jax.errors import InputError
from nic_jax.growth import families, transforms
from nic_jax.growth.widen import grown_config


@dataclasses.dataclass(frozen=True)
class WidthBuckets:
    """K widths of one layer; `base` holds params of bucket 0 (any values)."""

    base: dict
    model_config: object
    layer: int
    step: int
    num_buckets: int
    method: str = "r2r"

    def __post_init__(self):
        if self.num_buckets < 1 or self.step < 1:
            raise InputError(
                f"width buckets: found {self.num_buckets} buckets of step "
                f"{self.step}; expected >= 1 of each"
            )
        if self.method == "r2r" and self.step % 2:
            raise InputError(f"width bucket step {self.step}: r2r needs it even")

    def _widening(self, params, extra: int):
        return families.layer_widening(
            params, self.model_config.name, self.layer, extra
        )

    def params_at(self, bucket: int) -> dict:
        """Bucket-k params shaped like the base widened by k steps (zeros)."""
        if bucket == 0:
            return self.base
        widening = self._widening(self.base, bucket * self.step)
        return transforms.apply(self.base, widening, "zeros")

    def config_at(self, bucket: int):
        """The model config of bucket k (`hidden_sizes` set)."""
        widths = families.layer_widths(self.base, self.model_config.name)
        return grown_config(self.model_config, widths, self.layer, bucket * self.step)

    def padded_config(self):
        """The config every member is evaluated with: the widest bucket."""
        return self.config_at(self.num_buckets - 1)

    def pad(self, params: dict, bucket: int) -> np.ndarray:
        """Bucket-k params -> a flat padded row (N,) (zeros for inactive units)."""
        extra = (self.num_buckets - 1 - bucket) * self.step
        if extra:
            params = transforms.apply(params, self._widening(params, extra), "zeros")
        return np.asarray(ravel_pytree(params)[0])

    @functools.cached_property
    def masks(self) -> np.ndarray:
        """(K, N) float32: 1 where a bucket-k member has an active entry."""
        ones = lambda k: jax.tree.map(np.ones_like, self.params_at(k))
        rows = [self.pad(ones(k), k) for k in range(self.num_buckets)]
        return np.stack(rows).astype(np.float32)

    def unpad(self, row, bucket: int) -> dict:
        """A padded row -> the bucket-k params it holds (its active entries)."""
        _, unravel_padded = ravel_pytree(self.params_at(self.num_buckets - 1))
        shapes = self.params_at(bucket)
        mask = unravel_padded(self.masks[bucket])
        return jax.tree.map(
            lambda x, m, s: np.asarray(x)[np.asarray(m) > 0].reshape(np.shape(s)),
            unravel_padded(np.asarray(row)),
            mask,
            shapes,
        )

    def widen_row(self, row, bucket: int, seed: int = 0) -> np.ndarray:
        """An architecture mutation: the padded row of bucket k + 1 that computes
        what `row` (bucket k) computes."""
        if bucket + 1 >= self.num_buckets:
            raise InputError(f"bucket {bucket} is the widest of {self.num_buckets}")
        params = self.unpad(row, bucket)
        widening = self._widening(params, self.step)
        return self.pad(
            transforms.apply(params, widening, self.method, seed), bucket + 1
        )


def mutate_architectures(buckets: WidthBuckets, rows, row_buckets, probability, seed):
    """Widens each row (not yet widest) with `probability`, on the host.

    rows (M, N) padded rows, row_buckets (M,) int. Returns (rows, row_buckets):
    new numpy arrays; the widened rows compute what they computed before.
    """
    rng = np.random.default_rng([seed, 7])
    rows, row_buckets = np.array(rows), np.array(row_buckets)
    draws = rng.random(len(rows)) < probability
    for index in np.flatnonzero(draws & (row_buckets + 1 < buckets.num_buckets)):
        rows[index] = buckets.widen_row(rows[index], row_buckets[index], seed + index)
        row_buckets[index] += 1
    return rows, row_buckets


def row_buckets(rows, masks) -> jax.Array:
    """(M,) the bucket of each padded row (M, N): the widest bucket with a non-zero
    entry of its own (padding is exactly zero). Jit-able, so the bucket needs no
    storage of its own beside the rows."""
    own = jnp.concatenate([masks[:1], masks[1:] - masks[:-1]]) > 0  # (K, N)
    used = (jnp.abs(rows)[:, None, :] * own[None]).max(-1) > 0  # (M, K)
    return (masks.shape[0] - 1 - jnp.argmax(used[:, ::-1], axis=1)).astype(jnp.int32)


def mutation_scale(rows, masks, scale=None) -> jax.Array:
    """(M, N) per-row noise factor: each row's mask (times `scale`, e.g. a safe
    mutation's), the GA's `ask(..., scale)` argument."""
    active = jnp.asarray(masks)[row_buckets(rows, masks)]
    return active if scale is None else active * scale
