"""NIC-NES throughput: offspring per second of the engine against a per-member loop.

  python -m nic_jax.benchmarks.es_throughput [--quick] [--baseline_members=3]
      [--low_rank=1]

Prints one JSON line. Workload (`es_workload`): es-img-captioning's FC captioner
(embedding 128, hidden 128, vocabulary 9,487, fc 2,048; N = 2.87 M parameters),
128 unique images, greedy CIDEr-D fitness against random references with their
own df table.

* Engine (`offspring_per_s`): one whole NIC-NES generation of the trainer
  (`train.evolution.generation`: ask, evaluate chunks of vmapped members (2 on a
  CPU, `--chunk_size`) whose noise is sliced from a shared table, tell with
  Adam), jit-compiled ahead of time,
  in a fresh interpreter per population size P (64 and 1,024: 2 runs at 64, the
  best kept; at 1,024 1 run on a CPU, the best of 3 elsewhere).
  `offspring_per_s` is the rate at the largest P, `generation_s` the seconds of
  its generation (issue 8's GPU target: < 0.5 s);
  `peak_rss_mb` maps each P to that interpreter's peak RSS (VmHWM), `rss_ratio`
  is largest / smallest.
* Baseline (`baseline_offspring_per_s`), in this process, as es-img-captioning's
  workers do it for each offspring: draw the full N-float noise vector on the
  host (numpy), add sigma times it to theta, decode greedy captions for FIVE
  duplicate rows per image (its loader repeats every image seq_per_img = 5
  times), turn the tokens into strings and score them with pycocoevalcap's
  `Cider` on the host. The decode is this package's own jit-compiled greedy
  decoder on the explicit params (compiled before timing), so the baseline is
  not slowed by a slower framework; it takes the max of the log-softmax as
  es-img-captioning's policy does (the engine's greedy fitness reads the
  logits, `decode(with_logprobs=False)`); `--baseline_members` members are timed and
  their mean rate reported, with its parts (`baseline_seconds`).
* PyTorch baseline (`torch_baseline_offspring_per_s`, `torch_ratio`; when torch
  is installed): the same loop in es-img-captioning's framework
  (`torch_baseline`: eager FC model with these params, `torch.randn` noise,
  `vector_to_parameters`, a Python loop over words). `torch_agreement` is the
  fraction of the 5B rows it decodes as ours at theta (1.0: the same model).
* `ratio` = offspring_per_s / baseline_offspring_per_s (wall time). On a CPU
  that other jobs share, `cpu_time_ratio` compares CPU seconds (all threads of
  the process) per offspring instead, which the other jobs disturb far less; on
  an idle machine it understates the engine, whose XLA matmuls use every core
  while pycocoevalcap runs on one. `load_average_1min` (start) and
  `load_average_1min_end` say how busy the machine was.
* Low-rank noise (`low_rank_offspring_per_s`, `low_rank_ratio` against the
  baseline, `low_rank_vs_full_rank` against the engine; `--low_rank=r`, 0 skips
  it): the same generation with EGGROLL rank-r noise
  (`evolution.lowrank.LowRankNES`, its products in the backend's form,
  `low_rank_product`: members share x W and add
  sigma (x A) B^T / sqrt(r)) at the largest P, in a fresh interpreter as the
  full-rank engine's. The largest P is timed once on a CPU and best of 3
  elsewhere (a GPU's first call also loads its kernels).
* Roofline: `peak_matmul_gflops` is the best f32 rate of a 2048^3 `jnp.dot`
  (8192^3 on a GPU) at the start of the run, `engine_peak_matmul_gflops` the
  best of two taken just before and just after the engine's runs at the largest
  P (in its interpreter: other jobs' load changes within a run);
  `gflop_per_offspring` counts the decoder's matmul FLOPs analytically
  (`es_workload.fc_flops_per_image` x 128 images: 45.0 MFLOP per image, 5.75
  GFLOP per offspring); `fraction_of_peak` = achieved / engine peak,
  `fraction_of_start_peak` = achieved / start peak.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from jax.flatten_util import ravel_pytree

from nic_jax import app
from nic_jax.benchmarks import es_workload, timing, torch_baseline, workload
from nic_jax.decoding import decode
from nic_jax.evolution import lowrank_products

_QUICK = flags.DEFINE_bool("quick", False, "Tiny model, P = 8 and 32 (CI smoke).")
_MEMBERS = flags.DEFINE_integer(
    "baseline_members", 3, "Members the per-member baseline times."
)
_LOW_RANK = flags.DEFINE_integer(
    "low_rank", 1, "Rank r of the low-rank engine row (0: no low-rank row)."
)
_PRECISION = flags.DEFINE_enum(
    "matmul_precision",
    "default",
    ["default", "bfloat16", "tensorfloat32", "float32"],
    "f32 matmul precision of the engine and baselines (bfloat16: GPU tensor cores).",
)
_CHUNK = flags.DEFINE_integer(
    "chunk_size", 0, "Members vmapped together (0: 2 on CPU, 128 on GPU/TPU)."
)
SIGMA = 0.005
SEQ_PER_IMG = 5  # es-img-captioning decodes every image this many times


def _duplicated_rows(work: es_workload.Workload):
    """Features (5B, D) and pycocoevalcap references of the 5 copies per image."""
    rows = np.repeat(np.asarray(work.batch["index"]), SEQ_PER_IMG)
    feats = {"fc": jnp.asarray(work.split.fc[rows])}
    refs = {k: list(work.split.ref_texts[r]) for k, r in enumerate(rows)}
    return feats, refs


def _time_members(perturb_fn, decode_fn, refs: dict, num_members: int) -> dict:
    """Mean seconds per offspring by part, and process CPU seconds per offspring.

    perturb_fn() draws the noise and returns the perturbed model; decode_fn(model)
    returns greedy tokens (5B, T) as numpy. Member -1 warms up, untimed."""
    from pycocoevalcap.cider.cider import Cider

    parts = {"noise_and_perturb": 0.0, "decode": 0.0, "cider": 0.0}
    cpu = 0.0
    for member in range(-1, num_members):
        ticks = [time.perf_counter()]
        cpu_start = time.process_time()
        model = perturb_fn()
        ticks.append(time.perf_counter())
        tokens = decode_fn(model)
        ticks.append(time.perf_counter())
        results = {k: [workload.caption_text(row)] for k, row in enumerate(tokens)}
        Cider().compute_score(refs, results)
        ticks.append(time.perf_counter())
        if member >= 0:
            cpu += time.process_time() - cpu_start
            for part, spent in zip(parts, np.diff(ticks), strict=True):
                parts[part] += spent / num_members
    return {"seconds": parts, "cpu_seconds": cpu / num_members}


def per_member_baseline(work: es_workload.Workload, num_members: int) -> dict:
    """es-img-captioning's loop with this package's jit-compiled greedy decoder:
    numpy noise, theta + sigma eps unravelled into params, 5 rows per image."""
    theta, unravel = ravel_pytree(work.params)
    theta = np.asarray(theta)
    feats, refs = _duplicated_rows(work)
    greedy = jax.jit(
        # with log-probs: es-img-captioning's policy takes the max of log_softmax
        lambda params, f: decode(work.decoder, params, f, None, "greedy")[0]
    )
    rng = np.random.default_rng(0)

    def perturb():
        eps = rng.standard_normal(theta.shape[0], dtype=np.float32)
        return jax.block_until_ready(unravel(jnp.asarray(theta + SIGMA * eps)))

    return _time_members(
        perturb, lambda params: np.asarray(greedy(params, feats)), refs, num_members
    ) | {"tokens": np.asarray(greedy(work.params, feats))}


def torch_per_member_baseline(work: es_workload.Workload, num_members: int) -> dict:
    """The same loop in PyTorch eager, es-img-captioning's framework
    (`torch_baseline`): torch.randn noise, `vector_to_parameters`, a Python loop
    over words."""
    import torch

    model = torch_baseline.FCCaptioner(jax.device_get(work.params))
    theta = model.flat()
    feats, refs = _duplicated_rows(work)
    fc = np.asarray(feats["fc"])
    tokens = model.greedy(fc, workload.MAX_LEN)
    generator = torch.Generator().manual_seed(0)

    def perturb():
        eps = torch.randn(theta.shape[0], generator=generator)
        model.load_flat(theta + SIGMA * eps)
        return model

    timed = _time_members(
        perturb, lambda m: m.greedy(fc, workload.MAX_LEN), refs, num_members
    )
    model.load_flat(theta)
    return timed | {"tokens": tokens}


def _torch_figures(work, num_members: int, jax_tokens) -> dict:
    """PyTorch baseline rate, parts, and agreement of its captions with ours."""
    timed = torch_per_member_baseline(work, num_members)
    same = np.all(timed["tokens"] == jax_tokens, axis=-1)
    return {
        "torch_baseline_offspring_per_s": 1.0 / sum(timed["seconds"].values()),
        "torch_baseline_seconds": timed["seconds"],
        "torch_agreement": float(np.mean(same)),
    }


def _engine_figures(runs: list, gflop_per_offspring: float) -> dict:
    """Rates, memory and roofline of the engine runs (one per P, ascending)."""
    rates = {str(r["population"]): r["population"] / min(r["seconds"]) for r in runs}
    largest = runs[-1]
    rate = rates[str(largest["population"])]
    achieved = rate * gflop_per_offspring
    return {
        "offspring_per_s": rate,
        "generation_s": min(largest["seconds"]),
        "offspring_per_s_by_population": rates,
        "offspring_per_cpu_s": largest["population"] / min(largest["cpu_seconds"]),
        "peak_rss_mb": {str(r["population"]): r["peak_rss_mb"] for r in runs},
        "device_peak_mb": {str(r["population"]): r["device_peak_mb"] for r in runs},
        "rss_ratio": largest["peak_rss_mb"] / runs[0]["peak_rss_mb"],
        "compile_s": largest["compile_s"],
        "gflop_per_offspring": gflop_per_offspring,
        "achieved_gflops": achieved,
        "engine_peak_matmul_gflops": largest["peak_matmul_gflops"],
        "fraction_of_peak": achieved / largest["peak_matmul_gflops"],
    }


def _low_rank_figures(run: dict, baseline_rate: float, full_rate: float) -> dict:
    """The engine with rank-r noise (`run`: its interpreter's measurement, as
    the full-rank engine's at the same P): rate and ratios."""
    rate = run["population"] / min(run["seconds"])
    return {
        "low_rank_offspring_per_s": rate,
        "low_rank_generation_s": min(run["seconds"]),
        "low_rank_ratio": rate / baseline_rate,
        "low_rank_vs_full_rank": rate / full_rate,
        "low_rank_xla_temp_mb": run["xla_temp_mb"],
        "low_rank_peak_rss_mb": run["peak_rss_mb"],
    }


def run_benchmark(
    quick: bool, baseline_members: int, chunk: int = 0, low_rank: int = 0
) -> dict:
    out = timing.machine() | {"benchmark": "es_throughput"}
    out["peak_matmul_gflops"] = timing.matmul_peak_gflops(512 if quick else 0)
    shape = es_workload.shape_for(quick, chunk=chunk)
    out |= {
        "matmul_precision": jax.config.jax_default_matmul_precision or "default",
        "model": f"fc-{shape.size}",
        "vocab_size": shape.vocab_size,
        "batch_images": shape.batch_size,
        "fitness": "greedy CIDEr-D",
        "noise": "shared table",
        "chunk_size": shape.chunk_size,
    }
    work = es_workload.build(shape)
    baseline = per_member_baseline(work, baseline_members)
    out |= {
        "baseline_offspring_per_s": 1.0 / sum(baseline["seconds"].values()),
        "baseline_seconds": baseline["seconds"],
        "baseline_members": baseline_members,
        "baseline_offspring_per_cpu_s": 1.0 / baseline["cpu_seconds"],
    }
    if torch_baseline.available():
        out |= _torch_figures(work, baseline_members, baseline["tokens"])
    large = 1 if jax.default_backend() == "cpu" else 3  # a GPU's first call
    runs = [  # also loads its kernels (CUDA's lazy loading): best of 3 there
        es_workload.measure_in_subprocess(p, quick, 0, repeats, shape.chunk_size)
        for p, repeats in (((8, 2), (32, large)) if quick else ((64, 2), (1024, large)))
    ]
    flops = es_workload.fc_flops_per_image(shape) * shape.batch_size
    out |= _engine_figures(runs, flops / 1e9)
    out["fraction_of_start_peak"] = out["achieved_gflops"] / out["peak_matmul_gflops"]
    out["ratio"] = out["offspring_per_s"] / out["baseline_offspring_per_s"]
    out["cpu_time_ratio"] = (
        out["offspring_per_cpu_s"] / out["baseline_offspring_per_cpu_s"]
    )
    if "torch_baseline_offspring_per_s" in out:
        rate = out["torch_baseline_offspring_per_s"]
        out["torch_ratio"] = out["offspring_per_s"] / rate
    if low_rank > 0:
        run = es_workload.measure_in_subprocess(
            runs[-1]["population"], quick, 0, large, shape.chunk_size, low_rank
        )
        out["low_rank"] = low_rank
        out["low_rank_product"] = lowrank_products.resolve("auto", shape.batch_size)
        out |= _low_rank_figures(
            run, out["baseline_offspring_per_s"], out["offspring_per_s"]
        )
    out["load_average_1min_end"] = timing.machine()["load_average_1min"]
    return out


def main(argv) -> None:
    del argv
    if _PRECISION.value != "default":  # here and in the engine's interpreters
        os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = _PRECISION.value
        jax.config.update("jax_default_matmul_precision", _PRECISION.value)
    members = min(_MEMBERS.value, 2) if _QUICK.value else _MEMBERS.value
    result = run_benchmark(_QUICK.value, members, _CHUNK.value, _LOW_RANK.value)
    print(json.dumps(timing.rounded(result)))


if __name__ == "__main__":
    app.run(main)
