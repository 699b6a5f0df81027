"""Where one NIC-NES generation spends its time: a `jax.profiler` trace, by op.

  python -m nic_jax.benchmarks.profile_generation [--quick] [--population=P]
      [--rank=4] [--top=12] [--trace_dir=DIR]

Prints one JSON line. Workload (`es_workload`): the FC-128 captioner, 128 images,
greedy CIDEr-D fitness, the trainer's whole generation compiled ahead of time,
P members (default 1,024 on an accelerator, 64 on a CPU). Each variant, full-rank
noise (the baseline) and rank-r low-rank noise, runs in a fresh interpreter
(`--child_rank`): 3 generations (the last timed: `wall_s`), then one more under
the profiler (`traced_wall_s`, without the profiler's start and stop). From that
trace's complete events:

* on an accelerator: the device's kernels, summed by name: `kernel_ms` (all of
  them), `busy_fraction` = kernel_ms / traced wall (close to 1: the device never
  waits for the host, no host round trip inside a generation), and `top`, the
  `--top` kernels as [name, ms, calls, share of kernel_ms];
* on a CPU, where XLA's ops run on host threads: `top` ranks the host events
  of XLA's ops (not Python frames, '$...', nor the runtime's calls, '...::...',
  'PjitFunction(...)'); they nest (a loop's event holds its body's), so the
  shares are of their sum and `kernel_ms`, `busy_fraction` are null.

`low_rank_vs_full_rank` = full-rank wall / low-rank wall (above 1: low rank
faster). `--trace_dir` keeps the traces (TensorBoard's profile plugin, Perfetto);
by default they go to a temporary directory. `--quick`: the tiny model, P = 16.
"""

import collections
import glob
import gzip
import json
import os
import tempfile
import time

import jax
from absl import flags

from nic_jax import app
from nic_jax.benchmarks import es_workload, timing

_QUICK = flags.DEFINE_bool("quick", False, "Tiny model, P = 16 (CI smoke).")
_POPULATION = flags.DEFINE_integer(
    "population", 0, "Members P (0: 1,024 on an accelerator, 64 on a CPU)."
)
_RANK = flags.DEFINE_integer("rank", 4, "Rank r of the low-rank variant.")
_TOP = flags.DEFINE_integer("top", 12, "Ops listed per variant.")
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


def complete_events(trace_dir: str) -> list[tuple[str, str, float]]:
    """(process name, event name, microseconds) of the newest trace's complete
    events ("ph": "X") under `trace_dir`."""
    found = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    if not found:
        raise RuntimeError(f"{trace_dir}: jax.profiler wrote no *.trace.json.gz")
    with gzip.open(max(found, key=os.path.getmtime)) as f:
        events = json.load(f)["traceEvents"]
    process = {
        e["pid"]: e.get("args", {}).get("name", "")
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    return [
        (process.get(e["pid"], str(e["pid"])), e["name"], float(e["dur"]))
        for e in events
        if e.get("ph") == "X" and "dur" in e
    ]


def _is_xla_op(name: str) -> bool:
    """A host event of an XLA op: not a Python frame nor a runtime call."""
    runtime = name.startswith(("$", "PjitFunction")) or "::" in name
    return not runtime


def op_table(events: list[tuple[str, str, float]], top: int) -> dict:
    """Time by op name: the device's kernels when the trace has a device, else
    the host events of XLA's ops (`_is_xla_op`)."""
    device = [e for e in events if e[0].startswith("/device:")]
    chosen = device or [e for e in events if _is_xla_op(e[1])]
    micros, calls = collections.Counter(), collections.Counter()
    for _, name, duration in chosen:
        micros[name] += duration
        calls[name] += 1
    total = sum(micros.values()) or 1.0
    rows = [
        [name[:120], us / 1e3, calls[name], us / total]
        for name, us in micros.most_common(top)
    ]
    return {
        "source": "device kernels" if device else "host events",
        "kernel_ms": total / 1e3 if device else None,
        "top": rows,
    }


def profile_variant(work, strategy, top: int, trace_dir: str) -> dict:
    """`traced_generation` with its `op_table` and the device's busy fraction."""
    os.makedirs(trace_dir, exist_ok=True)
    result = traced_generation(work, strategy, trace_dir)
    table = op_table(complete_events(trace_dir), top)
    busy = None
    if table["kernel_ms"] is not None:
        busy = table["kernel_ms"] / 1e3 / result["traced_wall_s"]
    return result | table | {"busy_fraction": busy}


def _shape(quick: bool) -> es_workload.Shape:
    shape = es_workload.QUICK if quick else es_workload.Shape()
    return es_workload.with_chunk(shape, 0)


def child(quick: bool, population: int, rank: int, top: int, trace_dir: str):
    """One variant, profiled in this interpreter (`--child_rank`)."""
    work = es_workload.build(_shape(quick))
    strategy = es_workload.strategy_for(work, population, rank)
    return profile_variant(work, strategy, top, trace_dir)


def run_benchmark(quick: bool, population: int, rank: int, top: int, trace_dir: str):
    shape = _shape(quick)
    if population <= 0:
        population = 16 if quick else (64 if jax.default_backend() == "cpu" else 1024)
    out = timing.machine() | {
        "benchmark": "profile_generation",
        "model": f"fc-{shape.size}",
        "vocab_size": shape.vocab_size,
        "batch_images": shape.batch_size,
        "population": population,
        "chunk_size": shape.chunk_size,
        "rank": rank,
    }
    for name, variant_rank in (("full_rank", 0), ("low_rank", rank)):
        out[name] = es_workload.json_line_of(
            "nic_jax.benchmarks.profile_generation",
            f"--quick={quick}",
            f"--population={population}",
            f"--top={top}",
            f"--trace_dir={os.path.join(trace_dir, name)}",
            f"--child_rank={variant_rank}",
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
        result = run(_QUICK.value, _POPULATION.value, rank, _TOP.value, trace_dir)
    print(json.dumps(timing.rounded(result)))


if __name__ == "__main__":
    app.run(main)
