"""Per-member work split over a mesh axis: only scalars (or one sum) travel.

A generation runs as one per-device program (`spmd`: `shard_map` with every
input and output replicated), so inside it each device holds its own full copy
of the state, the batch, the reward and the noise table, and the functions here
split the members by `lax.axis_index`:

* `map_members` scores device d's contiguous slice of the member indices
  (padded to a multiple of the device count by repeating the last member, whose
  extra results are dropped) and all-gathers one result per member: the (P,)
  fitness scalars;
* `sum_over_members` adds each device's partial sum over its slice of
  per-member arrays (zero-padded) with one `psum`: the NES direction, an
  all-reduce of N floats, never a noise vector per member.

Why one program rather than a `shard_map` around the evaluation alone: the
fitness closes over jit arguments (batch, reward), and an array placed with an
Auto-mesh sharding cannot be indexed inside a nested manual region ("Context
mesh ... should match the mesh of sharding"); in one program nothing crosses.
`check_vma=False`: decoders and noise sums start scans from unvarying constants
(zeros, BOS tokens), which the varying-axes check rejects; every output here is
replicated by construction (all-gathered, psum-ed, or computed from those).
With `axis=None` the same functions run everything on the one device.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P


def spmd(fn: Callable, mesh: Mesh) -> Callable:
    """fn as one program per device of `mesh`, every argument and result
    replicated; inside, `map_members` / `sum_over_members` split the members."""
    return jax.shard_map(fn, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False)


def _local_slice(count: int, axis: str):
    """(start, per-device size) of this device's slice of `count` members."""
    per_device = -(-count // lax.axis_size(axis))
    return lax.axis_index(axis) * per_device, per_device


def map_members(member_fn: Callable, count: int, batch_size: int, axis=None):
    """[member_fn(i) for i in range(count)] stacked, `batch_size` members vmapped
    at a time (`lax.map`); inside `spmd`, `axis` splits the members."""
    if axis is None:
        members = jnp.arange(count, dtype=jnp.int32)
        return lax.map(member_fn, members, batch_size=max(1, min(batch_size, count)))
    start, per_device = _local_slice(count, axis)
    mine = jnp.minimum(start + jnp.arange(per_device, dtype=jnp.int32), count - 1)
    local = lax.map(member_fn, mine, batch_size=max(1, min(batch_size, per_device)))
    gathered = lax.all_gather(local, axis, tiled=True)
    return jax.tree.map(lambda x: x[:count], gathered)


def sum_over_members(partial_fn: Callable, per_member: tuple, axis=None):
    """partial_fn(*per_member) (a sum over members), split over `axis` inside
    `spmd`: each device sums its slice of the (count, ...) arrays, padded with
    zeros (a weight array gives padded slots no weight), then one `psum`."""
    if axis is None:
        return partial_fn(*per_member)
    count = per_member[0].shape[0]
    start, per_device = _local_slice(count, axis)
    pad = per_device * lax.axis_size(axis) - count

    def mine(x):
        padded = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        return lax.dynamic_slice_in_dim(padded, start, per_device)

    partial = partial_fn(*(mine(x) for x in per_member))
    return jax.tree.map(lambda x: lax.psum(x, axis), partial)
