"""XLA flags: the ones every command line sets, and one helper to add a flag.

XLA reads `XLA_FLAGS` once, when JAX starts its first backend, so these take
effect only when set before any computation: importing `nic_jax` sets the
defaults, so every command line has them, and a notebook or program has them
when it imports nic_jax before it runs anything on JAX. A flag the user's own
`XLA_FLAGS` already names is left as the user set it.

Defaults:
  --xla_gpu_enable_triton_gemm=false: XLA's GPU GemmFusion pass aborted the
    process while compiling the population generation of ES (jax 0.11.2 on an
    NVIDIA H200, 2026-12-04: `triton_tiling_propagation.cc: Check failed:
    src_fragment_it != src_fragments_order.end()`, in every program that
    decodes a population: es_throughput, lowrank, memory). Without the pass
    XLA's dots go to cuBLAS; CPUs and TPUs ignore the flag.
"""

import os

DEFAULT_FLAGS = {"xla_gpu_enable_triton_gemm": "false"}


def names_flag(xla_flags: str, name: str) -> bool:
    """Whether `xla_flags` sets `--name` (bare or `--name=...`; a longer flag
    name that begins the same, `--name_int4`, is another flag)."""
    return any(
        word == f"--{name}" or word.startswith(f"--{name}=")
        for word in xla_flags.split()
    )


def add_xla_flag(name: str, value: str, environ=os.environ) -> None:
    """Appends `--name=value` to `XLA_FLAGS` unless it already names `name`."""
    present = environ.get("XLA_FLAGS", "")
    if not names_flag(present, name):
        environ["XLA_FLAGS"] = f"{present} --{name}={value}".strip()


def add_default_xla_flags(environ=os.environ) -> None:
    """Adds DEFAULT_FLAGS to `XLA_FLAGS` (call before JAX's first computation)."""
    for name, value in DEFAULT_FLAGS.items():
        add_xla_flag(name, value, environ)
