"""The device mesh of a run, made from `config.mesh` in this one place.

Two axis names: `data` (XE, SCST: the batch is split over it, params replicated)
and `population` (NES, ES: the members are split over it, the strategy state
replicated). A trainer asks for its axis and gets a 1-D mesh of that name over
`config.mesh.<axis>` devices (-1: all of them).

Axis type: `AxisType.Auto`, passed explicitly. `jax.make_mesh` defaults to
Explicit axes (sharding in types), under which every jnp op on a sharded array
must have one unambiguous output sharding: ranking a fitness vector sharded over
`population` (`argsort` in centered ranks, evosax's tell) raises
`ShardingTypeError: Arguments to sort must be unsharded over the sorting
dimension`. With Auto axes XLA's partitioner inserts the all-gather of the (P,)
fitness scalars itself; the per-device code that matters (each member's forward
pass, the partial noise sums) is written with `shard_map`, where the axis type
does not matter.

A mesh on fewer devices than there are (`config.mesh.<axis>=n`, or a batch that
all devices do not divide) takes the first n devices; that is allowed in one
process only, since with several processes every process must hold a share.
"""

import jax
from absl import logging
from jax.sharding import AxisType, Mesh

from nic_jax.errors import InputError

DATA = "data"
POPULATION = "population"
AXES = (DATA, POPULATION)
AXIS_TYPE = AxisType.Auto


def _largest_divisor(total: int, at_most: int) -> int:
    return max(d for d in range(1, at_most + 1) if total % d == 0)


def _all_devices(axis: str, divides, divides_field: str) -> int:
    count = jax.device_count()
    if divides is None or divides % count == 0:
        return count
    if jax.process_count() > 1:
        raise InputError(
            f"config {divides_field}={divides} is not a multiple of the {count} "
            f"devices of {jax.process_count()} processes: with several processes "
            "every device takes an equal slice; pick a multiple"
        )
    size = _largest_divisor(divides, count)
    logging.warning(
        "mesh.%s=-1: %s=%d does not split over %d devices; using %d",
        axis,
        divides_field,
        divides,
        count,
        size,
    )
    return size


def axis_size(mesh_config, axis: str, divides=None, divides_field="") -> int:
    """Devices on `axis`: `mesh_config.<axis>` (-1: all, or the most that divide
    `divides` in one process), checked against the devices there are."""
    if axis not in AXES:
        raise InputError(f"mesh axis {axis!r} is unknown; valid: {list(AXES)}")
    requested, count = int(mesh_config[axis]), jax.device_count()
    if requested == -1:
        return _all_devices(axis, divides, divides_field)
    if not 1 <= requested <= count:
        raise InputError(
            f"config mesh.{axis}={requested}: expected -1 (all) or 1..{count}, "
            f"the devices there are"
        )
    if requested < count and jax.process_count() > 1:
        raise InputError(
            f"config mesh.{axis}={requested}: with {jax.process_count()} processes "
            f"the mesh must hold all {count} devices (-1)"
        )
    if divides is not None and divides % requested:
        raise InputError(
            f"config mesh.{axis}={requested} does not divide "
            f"{divides_field}={divides}; expected a divisor"
        )
    return requested


def make_mesh(mesh_config, axis: str, divides=None, divides_field="") -> Mesh:
    """The 1-D mesh named `axis` (Auto axis type) from `config.mesh`.

    divides: a size the axis must divide (the XE/SCST batch), named by
    `divides_field` in errors; None for the population (it is padded instead).
    """
    size = axis_size(mesh_config, axis, divides, divides_field)
    return jax.make_mesh(
        (size,), (axis,), axis_types=(AXIS_TYPE,), devices=jax.devices()[:size]
    )


def sub_mesh(num_devices: int, axis: str = POPULATION) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (benchmarks, tests)."""
    return make_mesh({axis: num_devices}, axis)
