"""Architecture mutation in the NIC-ES trainer (`config.es.arch_mutation` > 0).

"Deep Neuroevolution With Shared Weights: Ensembling A Better Solution" grows
members by function-preserving transforms; here a NIC-ES population holds
decoders of `es.arch_buckets` widths of layer `es.arch_layer` (H_0, H_0 + step,
...), all stored at the widest (`growth.mutation.WidthBuckets`: a member of a
narrower bucket is exactly zero on the units it lacks), so every generation runs
under one compilation whatever the mix of widths:

* the run's decoder and its saved config are the widest bucket's; the starting
  model (fresh or `ckpt.init_from`) is bucket 0, zero-padded;
* a child's Gaussian mutation is masked to its parent's active entries (its
  bucket's mask, times the safe-mutation factor when one is configured), so the
  padding of a narrow member never wakes up;
* after each generation, each kept offspring (a parent of the next generation)
  that is not yet widest is widened with probability `es.arch_mutation` by
  `es.arch_step` units (`es.arch_method`: r2r or net2net). It then computes
  exactly what it computed before, and its children mutate the new units too.

The widening runs on the host from (seed, generation), so a resumed run widens
the same rows as an uninterrupted one. The exported model (podium row 0) is a
params tree of the widest shape that `nic_jax.evaluate` reads with the saved
config; `es/arch_bucket_mean` and `es/arch_best_bucket` log the widths.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from nic_jax import parallel
from nic_jax.errors import InputError
from nic_jax.growth import mutation
from nic_jax.models.functional import init_params


@dataclasses.dataclass(frozen=True)
class ArchitectureMutation:
    """The width buckets of a run and how often a kept offspring is widened."""

    buckets: mutation.WidthBuckets
    probability: float
    base_config: object  # the run's config, model at bucket 0
    unravel_widest: object  # flat (N,) -> params tree of the widest bucket


def from_config(config, vocab_size: int) -> ArchitectureMutation | None:
    """The run's `ArchitectureMutation`, or None when `es.arch_mutation` is 0."""
    es = config.es
    probability = float(es.get("arch_mutation", 0.0))
    if probability == 0.0:
        return None
    if not 0.0 < probability <= 1.0:
        raise InputError(
            f"config es.arch_mutation={probability}: expected a probability in "
            "(0, 1], or 0 (off)"
        )
    if config.trainer != "es":
        raise InputError(
            f"config es.arch_mutation={probability} needs trainer 'es' (NIC-ES); "
            f"found {config.trainer!r}"
        )
    abstract = jax.eval_shape(
        lambda: init_params(config.model, vocab_size, jax.random.key(0))
    )
    base = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), abstract)
    buckets = mutation.WidthBuckets(
        base,
        config.model,
        es.arch_layer,
        es.arch_step,
        es.arch_buckets,
        es.arch_method,
    )
    # made here, outside any trace: `buckets.masks` is cached, and the restore
    # path evaluates `padded_params` abstractly
    _ = buckets.masks
    _, unravel_widest = ravel_pytree(buckets.params_at(es.arch_buckets - 1))
    return ArchitectureMutation(buckets, probability, config, unravel_widest)


def _with_model(config, model_config):
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.model = model_config
    config.lock()
    return config


def padded_config(arch: ArchitectureMutation):
    """The run's config with the model of the widest bucket (what is saved)."""
    return _with_model(arch.base_config, arch.buckets.padded_config())


def bucket0_config(arch: ArchitectureMutation, config):
    """`config` (the run's, padded) with the model of bucket 0."""
    return _with_model(config, arch.base_config.model)


def padded_params(arch: ArchitectureMutation, params) -> dict:
    """Bucket-0 params as a params tree of the widest shape (zeros elsewhere).

    Traceable (the restore path evaluates it abstractly): bucket 0's active
    entries, in padded order, are the params' entries in their own flat order
    (widening inserts units; it never reorders), so this is one scatter, equal to
    `buckets.pad(params, 0)`."""
    active = np.flatnonzero(arch.buckets.masks[0])
    flat = (
        jnp.zeros(arch.buckets.masks.shape[1], jnp.float32)
        .at[active]
        .set(ravel_pytree(params)[0].astype(jnp.float32))
    )
    return arch.unravel_widest(flat)


def _host(array) -> np.ndarray:
    """A replicated (possibly multi-process) array as numpy."""
    return np.asarray(array.addressable_data(0))


def widen_kept_offspring(arch, strategy_state, num_elites: int, seed: int, step: int):
    """Widens kept offspring rows [E, mu) with the configured probability.

    Returns (strategy_state, metrics); the rows are replicated as before.
    """
    masks = arch.buckets.masks
    parents = _host(strategy_state.parents)
    row_buckets = np.asarray(mutation.row_buckets(parents, masks))
    rows, kept = mutation.mutate_architectures(
        arch.buckets,
        parents[num_elites:],
        row_buckets[num_elites:],
        arch.probability,
        seed=seed * 100_003 + step,
    )
    widened = int((kept != row_buckets[num_elites:]).sum())
    if widened:
        parents = np.concatenate([parents[:num_elites], rows])
        sharding = strategy_state.parents.sharding
        strategy_state = strategy_state.replace(
            parents=parallel.replicate(parents, sharding)
        )
    buckets = np.concatenate([row_buckets[:num_elites], kept])
    metrics = {
        "arch_widened": widened,
        "arch_bucket_mean": float(buckets.mean()),
        "arch_best_bucket": int(buckets[0]),
    }
    return strategy_state, metrics
