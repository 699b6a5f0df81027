"""The NIC-NES generation the ES benchmarks time, and its analytic FLOP count.

Issue 5's workload: es-img-captioning's FC captioner (embedding 128, hidden 128,
COCO vocabulary 9,487, fc features 2,048; 2.87 M parameters), a batch of 128
unique images, greedy CIDEr-D fitness, P = 2n antithetic members read from a
shared noise table of 2^24 floats. One generation is exactly the trainer's
(`train.evolution.generation`: ask -> chunked vmapped evaluate -> tell with Adam),
jit-compiled with the state donated. `--quick` shrinks everything (V = 500, 32
wide, 64-d features, 8 images) for CI smoke.

`run_generations` builds it in this process, compiles it ahead of time (XLA's own
memory accounting of the compiled program comes with it), runs it and reports the
seconds and the process's peak RSS; `measure_in_subprocess` does the same in a
fresh interpreter (`python -m nic_jax.benchmarks.memory --child ...`), so each
population size has a peak RSS of its own.
"""

import dataclasses
import functools
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nic_jax.benchmarks import timing, workload
from nic_jax.evolution import annealing, lowrank
from nic_jax.evolution import noise as noise_lib
from nic_jax.evolution.nes import NES
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.train import evolution

# The benchmarks built on this module start child interpreters beside their own
# process: on a GPU a parent holding JAX's default preallocation (75% of the
# memory) would starve them, and a child's allocator peak would read the pool,
# not the program's need. Set before JAX starts its backend (importing JAX does
# not); a user's own setting stays.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


@dataclasses.dataclass(frozen=True)
class Shape:
    """Model and batch sizes of an ES benchmark."""

    size: int = 128  # embedding E = hidden H
    vocab_size: int = workload.COCO_VOCAB  # V
    feat_dim: int = 2048  # D
    batch_size: int = 128  # B unique images
    num_images: int = 1024  # images of the reference split (df, references)
    chunk_size: int = 2  # members vmapped together on a CPU (`with_chunk`)
    # pairs whose noise `tell` sums together; 0: the trainer's default (one at a
    # time for full rank, `lowrank.FACTOR_CHUNK` for low rank)
    noise_chunk_size: int = 0
    table_size: int = 2**24  # shared noise table (floats)


QUICK = Shape(
    size=32,
    vocab_size=500,
    feat_dim=64,
    batch_size=8,
    num_images=64,
    chunk_size=8,
    table_size=2**18,
)


def shape_for(quick: bool, batch_size: int = 0, chunk: int = 0) -> Shape:
    """The ES shape (`QUICK` or full), with `batch_size` images unless 0 and
    `with_chunk(chunk)` members in flight."""
    shape = QUICK if quick else Shape()
    if batch_size > 0:
        shape = dataclasses.replace(shape, batch_size=batch_size)
    return with_chunk(shape, chunk)


def with_chunk(shape: Shape, chunk_size: int) -> Shape:
    """`shape` with `chunk_size` members in flight; 0: the shape's own on a CPU
    (2: a member's logits, 4.8 MB at V + 1 = 9,488, stay near the cache; chunks of
    4 / 8 / 32 took 4% / 11% / 89% longer, BENCHMARKS.md run 4), 128 on an
    accelerator (whose matmul units want more rows; not measured here), where
    `tell` sums 128 pairs' noise at a time too."""
    if jax.default_backend() != "cpu":
        shape = dataclasses.replace(shape, noise_chunk_size=128)
        chunk_size = chunk_size if chunk_size > 0 else 128
    elif chunk_size <= 0:
        chunk_size = shape.chunk_size
    return dataclasses.replace(shape, chunk_size=chunk_size)


def fc_flops_per_image(shape: Shape, steps: int = workload.MAX_LEN) -> int:
    """FLOPs of one greedy FC caption (2 per multiply-add of the matmuls).

    img_embed (D -> E) once; the LSTM core (i2h E -> 5H, h2h H -> 5H) at t = 0 on
    the image and at each of the T steps; the logit layer (H -> V + 1) at each
    step. Gates, log-softmax, argmax and the reward are not counted (O(V) per
    step against O(H V)). The scan always runs all T steps.
    """
    e = h = shape.size
    embed = 2 * shape.feat_dim * e
    core = 2 * 5 * h * (e + h)
    logit = 2 * h * (shape.vocab_size + 1)
    return embed + (steps + 1) * core + steps * logit


def num_params(shape: Shape) -> int:
    """N of the FC decoder: img_embed, LSTM core (i2h, h2h), embedding, logit."""
    e = h = shape.size
    v = shape.vocab_size + 1
    return (shape.feat_dim + 1) * e + (e + h + 2) * 5 * h + v * e + (h + 1) * v


@dataclasses.dataclass
class Workload:
    """Everything one generation needs, built once."""

    shape: Shape
    decoder: object
    params: dict
    split: object
    reward: object
    batch: dict
    source: noise_lib.NoiseSource


def build(shape: Shape, seed: int = 0) -> Workload:
    """The FC decoder, random params, references, reward and the batch."""
    config = workload.model_config("fc", shape.size, shape.feat_dim)
    decoder = build_decoder(config, shape.vocab_size)
    params = init_params(config, shape.vocab_size, jax.random.key(seed))
    split = workload.synthetic_split(
        shape.num_images, shape.vocab_size, shape.feat_dim, seed
    )
    reward = workload.reward_for(split, shape.vocab_size)
    rows = np.arange(shape.batch_size) % shape.num_images
    batch = {"fc": jnp.asarray(split.fc[rows]), "index": jnp.asarray(rows)}
    source = noise_lib.shared_table(seed, shape.table_size)
    return Workload(shape, decoder, params, split, reward, batch, source)


def nes_strategy(work: Workload, population: int) -> NES:
    """NIC-NES with P = 2n members, Adam, the shape's chunk sizes."""
    return NES(
        work.params,
        population // 2,
        optax.adam(1e-3),
        eval_chunk_size=work.shape.chunk_size,
        noise_chunk_size=work.shape.noise_chunk_size,
    )


def initial_state(work: Workload, strategy: NES) -> evolution.EvoState:
    """Generation 0 of the trainer's state around the workload's params."""
    strategy_state = strategy.init(work.params, 0.005)
    return evolution.EvoState(
        step=jnp.zeros((), jnp.int32),
        params=work.params,
        strategy=strategy_state,
        anneal=annealing.init(work.shape.batch_size),
        key=jax.random.key_data(jax.random.key(1)),
        data_position=jnp.zeros((), jnp.int32),
        best_score=jnp.full((), -jnp.inf, jnp.float32),
        validation_improved=jnp.full((), -1, jnp.int32),
    )


def generation_step(work: Workload, strategy):
    """The trainer's generation, greedy fitness, no validation: (state, batch,
    reward, source) -> (state, metrics, None)."""
    no_validation = lambda strategy_state, key: (strategy_state, {}, None)
    return functools.partial(
        evolution.generation,
        strategy,
        work.decoder,
        "greedy",
        workload.MAX_LEN,
        None,
        no_validation,
    )


def generation_fn(work: Workload, strategy: NES):
    """`generation_step` jitted, the state donated."""
    return jax.jit(generation_step(work, strategy), donate_argnums=0)


def low_rank_strategy(work: Workload, population: int, rank: int, product="auto"):
    """`LowRankNES` with the settings of `es_workload.nes_strategy`, its Linear
    products in form `product` (`evolution.lowrank_products.PRODUCTS`)."""
    full = nes_strategy(work, population)
    return lowrank.LowRankNES(
        work.params,
        full.num_pairs,
        full.optimizer,
        rank=rank,
        product=product,
        eval_chunk_size=full.eval_chunk_size,
        noise_chunk_size=full.noise_chunk_size,
    )


def strategy_for(work: Workload, population: int, rank: int, product="auto"):
    """Full-rank NES (`rank` 0) or rank-`rank` `LowRankNES` of P members."""
    if rank > 0:
        return low_rank_strategy(work, population, rank, product)
    return nes_strategy(work, population)


def compiled_generation(work: Workload, strategy):
    """`generation_fn` for `strategy` (its population decoder), lowered and
    compiled ahead of time: (compiled, initial state, args, compile seconds)."""
    decoder = lowrank.population_decoder(strategy, work.decoder)
    generation = generation_fn(dataclasses.replace(work, decoder=decoder), strategy)
    state = initial_state(work, strategy)
    args = (work.batch, work.reward, work.source)
    start = time.perf_counter()
    compiled = generation.lower(state, *args).compile()
    return compiled, state, args, time.perf_counter() - start


def timed_runs(compiled, state, args, repeats: int) -> dict:
    """Runs the compiled generation `repeats` times, threading the donated state;
    wall and CPU (all threads) seconds of each run, the last metrics and state."""
    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        state, metrics, _ = compiled(state, *args)
        jax.block_until_ready((state, metrics))
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "metrics": metrics,
        "state": state,
    }


def run_generations(
    population: int, shape: Shape, repeats: int, rank=0, product="auto"
) -> dict:
    """Compiles one generation of P members and runs it `repeats` times; full-rank
    noise, or rank-`rank` low-rank noise when `rank` > 0 (its Linear products in
    form `product`).

    Returns wall and CPU (all threads) seconds per run, compile seconds, the f32
    matmul peak measured just before and after the runs (`timing.with_peak`),
    XLA's memory plan of the compiled generation and the peak RSS (MB).
    """
    work = build(shape)
    strategy = strategy_for(work, population, rank, product)
    compiled, state, args, compile_s = compiled_generation(work, strategy)
    peak_size = 512 if shape.size < Shape.size else 0
    runs, peak = timing.with_peak(
        lambda: timed_runs(compiled, state, args, repeats), peak_size
    )
    memory = compiled.memory_analysis()
    return {
        "population": population,
        "seconds": runs["seconds"],
        "cpu_seconds": runs["cpu_seconds"],
        "compile_s": compile_s,
        "peak_matmul_gflops": peak,
        "fitness_mean": float(runs["metrics"]["es/fitness_mean"]),
        "xla_temp_mb": getattr(memory, "temp_size_in_bytes", -1) / 1e6,
        "xla_argument_mb": getattr(memory, "argument_size_in_bytes", -1) / 1e6,
        "peak_rss_mb": timing.peak_rss_mb(),
        "device_peak_mb": timing.device_peak_mb(),
    }


def measure_in_subprocess(
    population: int,
    quick: bool,
    batch_size: int = 0,
    repeats: int = 1,
    chunk=0,
    rank=0,
    product="auto",
) -> dict:
    """`run_generations` in a fresh interpreter; batch_size 0 keeps the shape's,
    chunk 0 picks `with_chunk`'s default, rank 0 full-rank noise."""
    return json_line_of(
        "nic_jax.benchmarks.memory",
        "--child",
        f"--populations={population}",
        f"--batch_size={batch_size}",
        f"--repeats={repeats}",
        f"--quick={quick}",
        f"--chunk_size={chunk}",
        f"--noise_rank={rank}",
        f"--lowrank_product={product}",
    )


def measure_alternating(shape, quick: bool, population: int, variants, repeats, n):
    """`n` fresh-interpreter runs of each (rank, product, chunk) in `variants`
    (chunk 0: the shape's), alternating; per variant its runs' seconds joined,
    and the other fields of its first run."""
    runs = {v: [] for v in variants}
    for _ in range(n):
        for rank, product, chunk in variants:
            runs[rank, product, chunk].append(
                measure_in_subprocess(
                    population,
                    quick,
                    shape.batch_size,
                    repeats,
                    chunk or shape.chunk_size,
                    rank,
                    product,
                )
            )
    return [
        runs[v][0] | {"seconds": [t for run in runs[v] for t in run["seconds"]]}
        for v in variants
    ]


def json_line_of(module: str, *args: str) -> dict:
    """Runs `python -m module args` in a fresh interpreter; its last stdout line,
    parsed. The variants a benchmark compares run so, each in its own process
    (no allocations, compiled programs or peak RSS of the other)."""
    command = [sys.executable, "-m", module, *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
