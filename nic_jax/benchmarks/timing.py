"""What every benchmark of the suite measures the same way: wall time, the machine's
f32 matmul peak, peak resident memory, and the machine it ran on.

A figure is the best of several runs of a jit-compiled, warmed-up function whose
inputs are already on the device, ended by `jax.block_until_ready`; on a CPU that
other jobs share, the best run is the one least disturbed by them. The peak is the
best rate of one large square `jnp.dot` (n^3 multiply-adds = 2 n^3 FLOPs), taken at
the start of each run so that a figure and its fraction of the peak see the same
machine under the same load.
"""

import os
import resource
import time

import jax
import jax.numpy as jnp


def best_time(fn, *args, repeats: int = 5) -> float:
    """Seconds of the fastest of `repeats` calls of fn(*args), after one warm-up."""
    jax.block_until_ready(fn(*args))
    return min(time_once(fn, *args) for _ in range(repeats))


def time_once(fn, *args) -> float:
    """Seconds of one call of fn(*args), results ready."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def matmul_peak_gflops(size: int = 0, repeats: int = 5) -> float:
    """Best f32 GFLOP/s of an (n, n) @ (n, n) product on the default device;
    n = 2048 on a CPU, 8192 on an accelerator (0: that default)."""
    size = size or (2048 if jax.default_backend() == "cpu" else 8192)
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size), jnp.float32)
    b = jax.random.normal(key_b, (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    return 2.0 * size**3 / best_time(dot, a, b, repeats=repeats) / 1e9


def with_peak(fn, size: int = 0):
    """(fn(), peak): the best of the matmul peaks measured just before and just
    after fn runs. Other jobs' load changes within a run; a rate set against the
    peak of its own minutes (the higher of two, so the fraction errs low) is
    comparable, one against the start of the run is not."""
    before = matmul_peak_gflops(size)
    result = fn()
    return result, max(before, matmul_peak_gflops(size))


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (VmHWM; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def device_peak_mb() -> float:
    """Peak memory the accelerator allocator handed out (MB); -1 on a CPU."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use", -1e6) / 1e6


def machine() -> dict:
    """Device, core count and the 1-minute load average (other jobs' share)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else -1.0
    return {
        "device": jax.devices()[0].device_kind,
        "platform": jax.default_backend(),
        "cpu_cores": os.cpu_count(),
        "load_average_1min": load,
    }


def rounded(result: dict, digits: int = 4) -> dict:
    """Floats to `digits` significant digits, recursively, for a readable line."""
    if isinstance(result, dict):
        return {k: rounded(v, digits) for k, v in result.items()}
    if isinstance(result, list):
        return [rounded(v, digits) for v in result]
    if isinstance(result, float):
        return float(f"{result:.{digits}g}")
    return result
