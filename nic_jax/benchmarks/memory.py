"""Peak memory of one NIC-NES generation against the population size P.

  python -m nic_jax.benchmarks.memory [--quick] [--populations=64,256,1024,4096]

Prints one JSON line. Each P runs in a fresh interpreter (so each has its own
peak RSS, read from /proc/self/status VmHWM): the FC-128 ES workload of
`es_workload` (V = 9,487, 2.87 M parameters) on `--batch_size` images (16 by
default, so that the largest population stays cheap; memory per member in flight
does not depend on P), one jit-compiled generation, run once after compilation.
The baseline is the smallest population of the same run: `rss_ratio` = peak RSS
at the largest P / at the smallest (flat memory: close to 1). XLA's own plan of
the compiled generation (`xla_temp_mb`) is reported beside it, and so is what a
materialised population (P x N float32, as evosax's OpenES or es-img-captioning's
parameter files hold) would take, for scale.

`--child` is the per-population worker: it prints `es_workload.run_generations`.
"""

import json

from absl import flags

from nic_jax import app
from nic_jax.benchmarks import es_workload, timing
from nic_jax.evolution import lowrank_products

_QUICK = flags.DEFINE_bool("quick", False, "Tiny model and populations (CI smoke).")
_POPULATIONS = flags.DEFINE_list(
    "populations", [], "Population sizes P (default 64,256,1024,4096; quick 4,16)."
)
_BATCH = flags.DEFINE_integer("batch_size", 16, "Images per generation (0: 128).")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Timed generations per population.")
_CHUNK = flags.DEFINE_integer(
    "chunk_size", 0, "Members vmapped together (0: 2 on CPU, 128 on GPU/TPU)."
)
_RANK = flags.DEFINE_integer(
    "noise_rank", 0, "Worker: rank r of low-rank noise (0: full-rank noise)."
)
_PRODUCT = flags.DEFINE_enum(
    "lowrank_product",
    "auto",
    lowrank_products.PRODUCTS,
    "Worker: form of the low-rank population's Linear products.",
)
_CHILD = flags.DEFINE_bool("child", False, "Worker mode: measure one population.")


def run_benchmark(quick: bool, populations: list, batch_size: int, chunk) -> dict:
    shape = es_workload.shape_for(quick, batch_size, chunk)
    runs = [
        es_workload.measure_in_subprocess(
            p, quick, shape.batch_size, chunk=shape.chunk_size
        )
        for p in sorted(populations)
    ]
    smallest, largest = runs[0], runs[-1]
    n = es_workload.num_params(shape)
    return timing.machine() | {
        "benchmark": "memory",
        "model": f"fc-{shape.size}",
        "vocab_size": shape.vocab_size,
        "num_params": n,
        "batch_images": shape.batch_size,
        "chunk_size": shape.chunk_size,
        "populations": [r["population"] for r in runs],
        "peak_rss_mb": [r["peak_rss_mb"] for r in runs],
        "xla_temp_mb": [r["xla_temp_mb"] for r in runs],
        "device_peak_mb": [r["device_peak_mb"] for r in runs],
        "offspring_per_s": [r["population"] / min(r["seconds"]) for r in runs],
        "materialised_population_mb": [4 * n * r["population"] / 1e6 for r in runs],
        "baseline_peak_rss_mb": smallest["peak_rss_mb"],
        "rss_ratio": largest["peak_rss_mb"] / smallest["peak_rss_mb"],
        "xla_temp_ratio": largest["xla_temp_mb"] / smallest["xla_temp_mb"],
    }


def main(argv) -> None:
    del argv
    populations = [int(p) for p in _POPULATIONS.value]
    if _CHILD.value:
        shape = es_workload.shape_for(_QUICK.value, _BATCH.value, _CHUNK.value)
        result = es_workload.run_generations(
            populations[0], shape, _REPEATS.value, _RANK.value, _PRODUCT.value
        )
    else:
        default = [4, 16] if _QUICK.value else [64, 256, 1024, 4096]
        result = run_benchmark(
            _QUICK.value, populations or default, _BATCH.value, _CHUNK.value
        )
    print(json.dumps(timing.rounded(result)))


if __name__ == "__main__":
    app.run(main)
