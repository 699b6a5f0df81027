"""NIC-NES generations per second with low-rank (EGGROLL) noise against full rank.

  python -m nic_jax.benchmarks.lowrank [--quick] [--population=64] [--rank=1]
      [--batch_size=128] [--repeats=2] [--processes=2] [--products=auto,...]
      [--low_rank_chunk_size=0]

Prints one JSON line. Workload (`es_workload`): es-img-captioning's FC captioner
(embedding 128, hidden 128, vocabulary 9,487, fc 2,048; N = 2.87 M parameters),
128 unique images, greedy CIDEr-D fitness. Both sides run the trainer's whole
generation (`train.evolution.generation`: ask, chunks of vmapped members,
tell with Adam), jit-compiled ahead of time, state donated, in fresh
interpreters (`es_workload.measure_in_subprocess`), `--processes` for each
variant, alternating (full, low, full, low, ...), `--repeats` generations timed
in each: on the 2-core CPU the best generation of one process differed from
another's of the same variant by up to 32% (BENCHMARKS.md, low-rank section):

* baseline (`full_rank_*`): full-rank noise sliced from a shared table of 2^24
  floats (the trainer's default and fastest full-rank source), each member's
  N-float perturbation added to theta before its decode;
* `low_rank_*`: `evolution.lowrank.LowRankNES` with rank r (its members vmapped
  `--low_rank_chunk_size` at a time, as full rank's by default: at few images
  a member, the shared x W wants more rows than full rank's cache-sized chunks;
  each variant at its own best chunk is a fair comparison); members share the
  base matrices and add sigma (x A) B^T / sqrt(r), their Linear products in the
  first form of `--products` (`evolution.lowrank_products`: auto, shared,
  stacked, grouped); `products` maps each listed form to its
  `generations_per_s`, `ratio` against full rank, `seconds`, `xla_temp_mb` and
  `fitness_mean` (the same noise in every form: equal up to rounding; each form
  a variant of its own in the alternation).

`ratio` = low-rank generations/s / full-rank generations/s (the best of all
of a variant's timed generations; `*_seconds` lists them, process by process).
`fraction_of_peak`: the decoder's analytic matmul FLOPs
(`es_workload.fc_flops_per_image` x B x P) per second over the f32 matmul peak
measured at the start of the run; both variants do the same decoder FLOPs (the
low-rank extra, 2 r (m + n) per row and matrix, is not counted). `xla_temp_mb`:
XLA's temporary buffers of each compiled generation. `--quick` shrinks the
model and batch (`es_workload.QUICK`) for CI smoke.
"""

import json

from absl import flags

from nic_jax import app
from nic_jax.benchmarks import es_workload, timing
from nic_jax.evolution import lowrank_products

_QUICK = flags.DEFINE_bool("quick", False, "Tiny model, P = 16 (CI smoke).")
_POPULATION = flags.DEFINE_integer("population", 64, "Members P = 2n per generation.")
_RANK = flags.DEFINE_integer("rank", 1, "Rank r of the low-rank noise.", lower_bound=1)
_REPEATS = flags.DEFINE_integer(
    "repeats", 2, "Timed generations per process.", lower_bound=1
)
_PROCESSES = flags.DEFINE_integer(
    "processes", 2, "Fresh interpreters per variant.", lower_bound=1
)
_BATCH = flags.DEFINE_integer("batch_size", 0, "Images B (0: the workload's 128).")
_LOW_CHUNK = flags.DEFINE_integer(
    "low_rank_chunk_size",
    0,
    "Members vmapped together in the low-rank variants (0: as full rank's).",
    lower_bound=0,
)
_PRODUCTS = flags.DEFINE_list(
    "products",
    ["auto"],
    f"Forms of the low-rank Linear products to time, of {lowrank_products.PRODUCTS}.",
)
flags.register_validator(
    "products",
    lambda forms: (
        bool(forms)
        and set(forms) <= set(lowrank_products.PRODUCTS)
        and len(set(forms)) == len(forms)
    ),
    f"--products: one or more of {', '.join(lowrank_products.PRODUCTS)}, each once",
)


def run_benchmark(
    quick: bool,
    population: int,
    rank: int,
    repeats: int,
    batch_size: int = 0,
    processes: int = 2,
    products=("auto",),
    low_rank_chunk=0,
) -> dict:
    out = timing.machine() | {"benchmark": "lowrank"}
    out["peak_matmul_gflops"] = timing.matmul_peak_gflops(512 if quick else 0)
    shape = es_workload.shape_for(quick, batch_size)
    variants = [(0, "auto", 0)] + [(rank, form, low_rank_chunk) for form in products]
    full, *lows = es_workload.measure_alternating(
        shape, quick, population, variants, repeats, processes
    )
    gflop = es_workload.fc_flops_per_image(shape) * shape.batch_size * population / 1e9
    best = min(full["seconds"])
    out |= {
        "model": f"fc-{shape.size}",
        "vocab_size": shape.vocab_size,
        "num_params": es_workload.num_params(shape),
        "batch_images": shape.batch_size,
        "population": population,
        "rank": rank,
        "chunk_size": shape.chunk_size,
        "low_rank_chunk_size": low_rank_chunk or shape.chunk_size,
        "processes": processes,
        "gflop_per_generation": gflop,
        "full_rank_generations_per_s": 1.0 / best,
        "low_rank_product": products[0],
        "low_rank_generations_per_s": 1.0 / min(lows[0]["seconds"]),
        "ratio": best / min(lows[0]["seconds"]),
        "products": {
            form: {
                "generations_per_s": 1.0 / min(low["seconds"]),
                "ratio": best / min(low["seconds"]),
                "seconds": low["seconds"],
                "xla_temp_mb": low["xla_temp_mb"],
                "fitness_mean": low["fitness_mean"],
            }
            for form, low in zip(products, lows)
        },
    }
    for name, result in (("full_rank", full), ("low_rank", lows[0])):
        achieved = gflop / min(result["seconds"])
        out[f"{name}_fraction_of_peak"] = achieved / out["peak_matmul_gflops"]
        for field in ("seconds", "compile_s", "fitness_mean", "xla_temp_mb"):
            out[f"{name}_{field}"] = result[field]
    out["load_average_1min_end"] = timing.machine()["load_average_1min"]
    return out


def main(argv) -> None:
    del argv
    population = min(_POPULATION.value, 16) if _QUICK.value else _POPULATION.value
    result = run_benchmark(
        _QUICK.value,
        population,
        _RANK.value,
        _REPEATS.value,
        _BATCH.value,
        _PROCESSES.value,
        _PRODUCTS.value,
        _LOW_CHUNK.value,
    )
    print(json.dumps(timing.rounded(result)))


if __name__ == "__main__":
    app.run(main)
