"""Where one NIC-NES generation spends its time: a `jax.profiler` trace, by op.

  python -m nic_jax.benchmarks.profile_generation [--quick] [--population=P]
      [--rank=4] [--product=auto] [--top=12] [--trace_dir=DIR]

Prints one JSON line. Workload (`es_workload`): the FC-128 captioner, 128 images,
greedy CIDEr-D fitness, the trainer's whole generation compiled ahead of time,
P members (default 1,024 on an accelerator, 64 on a CPU). Each variant, full-rank
noise (the baseline) and rank-r low-rank noise (its Linear products in form
`--product`, `evolution.lowrank_products`), runs in a fresh interpreter
(`--child_rank`): 3 generations (the last timed: `wall_s`), then one more under
the profiler (`traced_wall_s`, without the profiler's start and stop). From that
trace's complete events:

* on an accelerator: the events of the device's processes ('/device:...'),
  summed by name: `kernel_ms` (their sum), `busy_fraction` = kernel_ms / traced
  wall (close to 1 on one GPU stream: the device never waits for the host, no
  host round trip inside a generation), and `top`, the `--top` names as [name,
  ms, calls, share of kernel_ms]. A sum, not a union: kernels that overlap on
  several streams or devices, or a TPU trace's nested module / op / step lines,
  count each time (then busy_fraction can pass 1);
* on a CPU, where XLA's ops run on host threads: `top` ranks the host events
  of XLA's ops (not Python frames, '$...', nor the runtime's calls, '...::...',
  'PjitFunction(...)'); they nest (a loop's event holds its body's), so the
  shares are of their sum and `kernel_ms`, `busy_fraction` are null.

`low_rank_vs_full_rank` = full-rank wall / low-rank wall (above 1: low rank
faster), from one timed generation in one process each: a profile's figure, not
a comparison (`nic_jax.benchmarks.lowrank` takes the best over processes; on a
2-core CPU one process's best differed from another's by up to 32%).
`--trace_dir` keeps the traces (TensorBoard's profile plugin, Perfetto); by
default they go to a temporary directory. `--quick`: the tiny model, P = 16.
"""

import json
import os
import tempfile
import time

import jax
from absl import flags

from nic_jax import app
from nic_jax.benchmarks import es_workload, timing, trace_ops
from nic_jax.evolution import lowrank_products

_QUICK = flags.DEFINE_bool("quick", False, "Tiny model, P = 16 (CI smoke).")
_POPULATION = flags.DEFINE_integer(
    "population", 0, "Members P (0: 1,024 on an accelerator, 64 on a CPU)."
)
_RANK = flags.DEFINE_integer(
    "rank", 4, "Rank r of the low-rank variant.", lower_bound=1
)
_PRODUCT = flags.DEFINE_enum(
    "product",
    "auto",
    lowrank_products.PRODUCTS,
    "Form of the low-rank variant's Linear products.",
)
_TOP = flags.DEFINE_integer("top", 12, "Ops listed per variant.", lower_bound=1)
_TRACE_DIR = flags.DEFINE_string("trace_dir", "", "Keep the traces here.")
_CHILD_RANK = flags.DEFINE_integer(
    "child_rank", -1, "Worker: profile this variant alone (0: full rank), print it."
)


def traced_generation(work, strategy, trace_dir: str) -> dict:
    """Compiles the generation, runs it 3 times (the last timed), then traces one
    more run into `trace_dir`."""
    compiled, state, args, compile_s = es_workload.compiled_generation(work, strategy)
    runs = es_workload.timed_runs(compiled, state, args, 3)
    state = runs["state"]
    jax.profiler.start_trace(trace_dir)
    start = time.perf_counter()
    state, metrics, _ = compiled(state, *args)
    jax.block_until_ready((state, metrics))
    traced_wall_s = time.perf_counter() - start
    jax.profiler.stop_trace()
    return {
        "wall_s": runs["seconds"][-1],
        "traced_wall_s": traced_wall_s,
        "compile_s": compile_s,
    }


def profile_variant(work, strategy, top: int, trace_dir: str) -> dict:
    """`traced_generation` with its `op_table` and the device's busy fraction."""
    os.makedirs(trace_dir, exist_ok=True)
    result = traced_generation(work, strategy, trace_dir)
    table = trace_ops.op_table(trace_ops.complete_events(trace_dir), top)
    busy = None
    if table["kernel_ms"] is not None:
        busy = table["kernel_ms"] / 1e3 / result["traced_wall_s"]
    return result | table | {"busy_fraction": busy}


def _population(quick: bool, population: int) -> int:
    """`population`, or its default when 0."""
    if population > 0:
        return population
    return 16 if quick else (64 if jax.default_backend() == "cpu" else 1024)


def child(quick, population: int, rank: int, product: str, top: int, trace_dir: str):
    """One variant, profiled in this interpreter (`--child_rank`)."""
    population = _population(quick, population)
    work = es_workload.build(es_workload.shape_for(quick))
    strategy = es_workload.strategy_for(work, population, rank, product)
    return profile_variant(work, strategy, top, trace_dir)


def run_benchmark(quick, population: int, rank: int, product: str, top, trace_dir):
    shape = es_workload.shape_for(quick)
    population = _population(quick, population)
    out = timing.machine() | {
        "benchmark": "profile_generation",
        "model": f"fc-{shape.size}",
        "vocab_size": shape.vocab_size,
        "batch_images": shape.batch_size,
        "population": population,
        "chunk_size": shape.chunk_size,
        "rank": rank,
        "product": product,
    }
    for name, variant_rank in (("full_rank", 0), ("low_rank", rank)):
        out[name] = es_workload.json_line_of(
            "nic_jax.benchmarks.profile_generation",
            f"--quick={quick}",
            f"--population={population}",
            f"--top={top}",
            f"--trace_dir={os.path.join(trace_dir, name)}",
            f"--child_rank={variant_rank}",
            f"--product={product}",
        )
    out["low_rank_vs_full_rank"] = (
        out["full_rank"]["wall_s"] / out["low_rank"]["wall_s"]
    )
    return out


def main(argv) -> None:
    del argv
    with tempfile.TemporaryDirectory(prefix="nic_jax_profile_") as scratch:
        trace_dir = _TRACE_DIR.value or scratch
        run = child if _CHILD_RANK.value >= 0 else run_benchmark
        rank = _CHILD_RANK.value if _CHILD_RANK.value >= 0 else _RANK.value
        result = run(
            _QUICK.value,
            _POPULATION.value,
            rank,
            _PRODUCT.value,
            _TOP.value,
            trace_dir,
        )
    print(json.dumps(timing.rounded(result)))


if __name__ == "__main__":
    app.run(main)
