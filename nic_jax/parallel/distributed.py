"""Multi-process runs: `jax.distributed.initialize` when asked, and only then.

Asked means `config.mesh.distributed=True`, or the environment of a launcher:
`NIC_JAX_DISTRIBUTED=1` (set by launch/slurm.sbatch and launch/tpu_vm.sh),
`JAX_COORDINATOR_ADDRESS` (launch/multiprocess.sh, with `JAX_NUM_PROCESSES` and
`JAX_PROCESS_ID`), or a SLURM step of several tasks (`srun`). Otherwise nothing
happens: `initialize` raises on a plain single host without a coordinator.

Without an address JAX detects the cluster itself (SLURM, Cloud TPU, MPI). CPU
collectives go through gloo (`jax_cpu_collectives_implementation`), which is what
lets several CPU processes on loopback test the multi-host code paths. Processes
other than 0 log warnings and errors only and print nothing (their results
equal process 0's); metrics files, `config.json`, evaluation files and progress
bars are process 0's.
"""

import os
import sys

import jax
from absl import logging

FLAG = "NIC_JAX_DISTRIBUTED"


def requested(mesh_config, environ=None) -> bool:
    """Whether this run is one process of several (config or launcher env)."""
    environ = os.environ if environ is None else environ
    in_srun = "SLURM_STEP_ID" in environ and int(environ.get("SLURM_NTASKS", 1)) > 1
    return bool(
        mesh_config.get("distributed", False)
        or environ.get(FLAG, "") == "1"
        or environ.get("JAX_COORDINATOR_ADDRESS")
        or in_srun
    )


def _explicit_arguments(environ) -> dict:
    """coordinator / num_processes / process_id from the JAX_* variables."""
    names = {
        "coordinator_address": ("JAX_COORDINATOR_ADDRESS", str),
        "num_processes": ("JAX_NUM_PROCESSES", int),
        "process_id": ("JAX_PROCESS_ID", int),
    }
    return {
        arg: kind(environ[var]) for arg, (var, kind) in names.items() if var in environ
    }


def initialize(mesh_config, environ=None) -> bool:
    """Joins the run's processes when asked; returns whether it is distributed.

    Call before any JAX computation; calling it again is harmless.
    """
    environ = os.environ if environ is None else environ
    if not requested(mesh_config, environ):
        return False
    if not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(**_explicit_arguments(environ))
    if jax.process_index() != 0:  # process 0 speaks for the run
        logging.set_verbosity(logging.WARNING)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the process's life)
    logging.info(
        "process %d of %d: %d local devices of %d",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def is_main_process() -> bool:
    """Process 0 writes the run's files and logs."""
    return jax.process_index() == 0
