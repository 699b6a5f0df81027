"""NIC-NES generations per second against the number of devices the population
is split over: one JSON line per device count.

  python -m nic_jax.benchmarks.scaling [--quick] [--devices=1,2,4] [--population=64]

The workload is `es_throughput`'s (`es_workload`: es-img-captioning's FC captioner,
128 unique images, greedy CIDEr-D, noise sliced from a shared table, Adam), run as
the NES trainer runs it on a mesh: the whole generation is one program per device
(`parallel.spmd`), each device scores its P/D members and sums its pairs' noise,
and only the P fitness scalars and one (N,) psum cross devices. Each count D uses
the first D devices; on a CPU the devices are faked
(`--xla_force_host_platform_device_count`, set here before JAX starts), so they
share the machine's cores: the lines then measure the overhead of splitting and
check correctness, not speed-up. On GPUs or TPUs the same command measures real
scaling. Each line: seconds per generation (best of `--repeats`), offspring/s,
speed-up over the first count, and `max_abs_theta_diff`, the largest difference
of theta after the timed generations from the first count's (the split must not
change the numbers).
"""

import json
import os
import time

import jax
import numpy as np
from absl import flags

from nic_jax import app, parallel, xla_flags
from nic_jax.benchmarks import es_workload, timing
from nic_jax.evolution.nes import NES

_QUICK = flags.DEFINE_bool("quick", False, "Tiny model (es_workload.QUICK).")
_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4"], "Device counts to time.")
_POPULATION = flags.DEFINE_integer("population", 64, "P members (2n).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed generations per count.")


def fake_cpu_devices(count: int) -> None:
    """Asks for `count` fake CPU devices when JAX will run on the CPU; XLA reads
    the flag when the backend starts, so call this before any computation."""
    if os.environ.get("JAX_PLATFORMS", "cpu") != "cpu":
        return
    xla_flags.add_xla_flag("xla_force_host_platform_device_count", str(count))


def _jitted_generation(work, strategy, mesh):
    """The trainer's generation on `mesh`: one program per device when split."""
    one = es_workload.generation_step(work, strategy)
    if strategy.axis is not None:
        one = parallel.spmd(one, mesh)
    replicated = parallel.replicated(mesh)
    return jax.jit(
        one, in_shardings=replicated, out_shardings=replicated, donate_argnums=0
    )


def run_count(work, population: int, num_devices: int, repeats: int) -> dict:
    """Times `repeats` generations split over the first `num_devices` devices;
    returns the figures and the final theta (N,)."""
    mesh = parallel.sub_mesh(num_devices)
    base = es_workload.nes_strategy(work, population)
    strategy = NES(
        work.params,
        population // 2,
        base.optimizer,
        eval_chunk_size=base.eval_chunk_size,
        noise_chunk_size=base.noise_chunk_size,
        axis=parallel.POPULATION if num_devices > 1 else None,
    )
    replicated = parallel.replicated(mesh)
    state = jax.device_put(es_workload.initial_state(work, strategy), replicated)
    args = jax.device_put((work.batch, work.reward, work.source), replicated)
    start = time.perf_counter()
    compiled = _jitted_generation(work, strategy, mesh).lower(state, *args).compile()
    compile_s = time.perf_counter() - start
    runs = es_workload.timed_runs(compiled, state, args, repeats)
    seconds = min(runs["seconds"])
    figures = {
        "devices": num_devices,
        "seconds": seconds,
        "offspring_per_s": population / seconds,
        "compile_s": compile_s,
        "fitness_mean": float(runs["metrics"]["es/fitness_mean"]),
    }
    return figures, np.asarray(jax.device_get(runs["state"].strategy.theta))


def run_benchmark(quick: bool, counts: list, population: int, repeats: int):
    """Yields one result dict per device count (skipped beyond the devices)."""
    shape = es_workload.QUICK if quick else es_workload.Shape()
    work = es_workload.build(shape)
    first = None  # (seconds, theta) of the first count
    for count in counts:
        if count > jax.device_count():
            yield {"devices": count, "skipped": f"{jax.device_count()} devices"}
            continue
        figures, theta = run_count(work, population, count, repeats)
        first = first or (figures["seconds"], theta)
        yield (
            timing.machine()
            | figures
            | {
                "benchmark": "es_scaling",
                "model": f"fc-{shape.size}",
                "batch_images": shape.batch_size,
                "population": population,
                "speedup_vs_first": first[0] / figures["seconds"],
                "max_abs_theta_diff": float(np.max(np.abs(theta - first[1]))),
            }
        )


def main(argv) -> None:
    del argv
    counts = [int(c) for c in _DEVICES.value]
    for result in run_benchmark(
        _QUICK.value, counts, _POPULATION.value, _REPEATS.value
    ):
        print(json.dumps(timing.rounded(result)), flush=True)


if __name__ == "__main__":
    fake_cpu_devices(4)
    app.run(main)
