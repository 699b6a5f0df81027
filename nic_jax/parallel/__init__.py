"""Scale-out: one mesh per run, sharded batches and populations, many processes.

* `mesh`: `make_mesh(config.mesh, axis)` is the only place a mesh is made; axes
  `data` (XE, SCST) and `population` (NES, ES), Auto axis type (why: see there).
* `sharding`: replicated / split shardings, `global_batch` from process-local
  rows, `local_copy` for work each process repeats alone (validation).
* `members`: `spmd` runs a generation as one program per device (`shard_map`,
  all replicated); inside it `map_members` and `sum_over_members` split a
  population's member indices over the `population` axis.
* `distributed`: `initialize(config.mesh)`, `jax.distributed` when asked.

XE and SCST keep params replicated and split each batch over `data` (one jit with
in/out shardings; XLA all-reduces the gradients). NES and ES keep the strategy
state replicated; each device evaluates its slice of the members, regenerating
their noise from keys, and only the (P,) fitness scalars are gathered. The NES
direction sum_i w_i eps_i is then built either from per-device partial sums added
by one all-reduce of N floats (`config.mesh.nes_gradient="psum"`: the noise work
is split P/D ways), or by every device redundantly from the gathered ranks
(`"replicated"`: no communication beyond the P scalars, but each device
regenerates all P/2 noise vectors). No noise vector is ever communicated.
"""

from nic_jax.parallel.distributed import initialize, is_main_process
from nic_jax.parallel.members import spmd
from nic_jax.parallel.mesh import DATA, POPULATION, make_mesh, sub_mesh
from nic_jax.parallel.sharding import (
    global_batch,
    local_copy,
    process_rows,
    replicate,
    replicated,
    split,
)

__all__ = [
    "DATA",
    "POPULATION",
    "global_batch",
    "initialize",
    "is_main_process",
    "local_copy",
    "make_mesh",
    "process_rows",
    "replicate",
    "replicated",
    "split",
    "spmd",
    "sub_mesh",
]
