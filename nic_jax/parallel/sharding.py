"""Placing a run's arrays on its mesh: the state replicated, batches split.

Multi-process runs (`jax.distributed`) hold global arrays: every process passes
its own share of a batch (`process_rows`) and `global_batch` assembles the global
array from the process-local pieces (`jax.make_array_from_process_local_data`);
replicated values (params, optimizer and strategy states, rewards, the noise
table) are identical in every process and `replicate` places them (process-local
arrays through host memory). With one
process the same calls reduce to plain `device_put`s.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def split(mesh: Mesh, axis: str) -> NamedSharding:
    """Leading dimension split over `axis`."""
    return NamedSharding(mesh, P(axis))


def replicate(tree, sharding):
    """`tree` placed with `sharding`; a leaf already placed so is left as it is.

    With several processes a process-local array goes through host memory: a
    `device_put` of a one-device array onto a multi-process sharding builds an
    array whose shards hold the whole global array (jax 0.10, one device per
    process), which orbax then cannot save.
    """

    def place(x):
        local = isinstance(x, jax.Array) and x.is_fully_addressable
        if local and jax.process_count() > 1 and x.sharding != sharding:
            x = np.asarray(x)
        return jax.device_put(x, sharding)

    return jax.tree.map(place, tree)


def process_rows(num_rows: int) -> slice:
    """This process's contiguous share of `num_rows` global batch rows.

    Processes own equal, disjoint, ordered slices, as `global_batch` expects.
    """
    count, index = jax.process_count(), jax.process_index()
    if num_rows % count:
        raise ValueError(f"{num_rows} rows do not split over {count} processes")
    share = num_rows // count
    return slice(index * share, (index + 1) * share)


def global_batch(local_batch: dict, mesh: Mesh, axis: str) -> dict:
    """Global arrays (B, ...) split over `axis` from this process's rows (B/p, ...)."""
    sharding = split(mesh, axis)
    count = jax.process_count()

    def assemble(local):
        local = np.asarray(local)
        shape = (local.shape[0] * count,) + local.shape[1:]
        return jax.make_array_from_process_local_data(sharding, local, shape)

    return jax.tree.map(assemble, local_batch)


def local_copy(tree):
    """Each array of `tree` as one copy on this process's first device holding it.

    For work every process repeats on its own (validation decoding): replicated
    global arrays would run it on every device of the mesh.
    """

    def one(x):
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
            return x.addressable_data(0)
        return x

    return jax.tree.map(one, tree)
