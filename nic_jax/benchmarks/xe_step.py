"""Cross-entropy training step speed per model, against self-critical's row layout.

  python -m nic_jax.benchmarks.xe_step [--quick] [--models=fc,topdown]

Prints one JSON line with a record per model. Workload: the XE trainer's own
update (`train.xe.train_step`: teacher-forced log-probs, masked XE, gradient,
element-wise clipping, Adam), jit-compiled with the state donated, warmed up,
best of 3; B = 50 images (configs/default.py's batch; 4 with --quick) with 5
reference captions each (self-critical.pytorch's seq_per_img), captions of 16
words, COCO's vocabulary (V = 9,487), every model 256 wide on 2,048-d features
and K = 36 regions (--quick: the FC model alone, 32 wide on 64-d), random params.

* `captions_per_s` (and `steps_per_s`): ours, where the 5 captions of an image
  share its encoding (one row per image, the decoder step vmapped over captions).
* Baseline (`baseline_captions_per_s`): self-critical.pytorch's layout, where
  `repeat_tensors(seq_per_img, ...)` copies every image's features (and so its
  encoding and attention projections) once per caption: the same update on 5B
  rows with one caption each. `ratio` = ours / baseline. `loss_abs_diff` is the
  difference of the two layouts' evaluation-mode losses (the same captions:
  ~1e-7).
* Roofline: `gflop_per_step` = 3 x the forward count (backward ~ 2 x forward),
  the forward counted by XLA on one step over the 5 captions (x 17 positions)
  plus the encoding (`workload.decode_flops`); `fraction_of_peak` against the
  model's `peak_matmul_gflops`: the best 2048^3 `jnp.dot` (8192^3 on a GPU) of
  two, measured just before and just after its timings (`timing.with_peak`).
"""

import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import ConfigDict

from nic_jax import app
from nic_jax.benchmarks import timing, workload
from nic_jax.train import common, xe
from nic_jax.train.optim import make_optimizer

_QUICK = flags.DEFINE_bool("quick", False, "Tiny models, 4 images (CI smoke).")
_MODELS = flags.DEFINE_list("models", [], "Models (default: all; quick: fc).")
SEQ_PER_IMG = 5
# self-critical.pytorch's XE recipe, as configs/default.py's optim group
OPTIM = ConfigDict(
    dict(
        name="adam",
        learning_rate=5e-4,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        lr_decay_start_epoch=0,
        lr_decay_every_epochs=3,
        lr_decay_rate=0.8,
        grad_clip_value=0.1,
    )
)


def _state(params, optimizer) -> common.TrainState:
    return common.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        key=jax.random.key_data(jax.random.key(0)),
        data_position=jnp.zeros((), jnp.int32),
        best_score=jnp.zeros((), jnp.float32),
    )


def repeated_layout(batch: dict) -> dict:
    """self-critical's rows: features repeated per caption, labels (5B, 1, T)."""
    labels = batch["labels"]
    copies = labels.shape[1]
    feats = {k: jnp.repeat(v, copies, 0) for k, v in batch.items() if k != "labels"}
    return feats | {"labels": labels.reshape(-1, 1, labels.shape[-1])}


def _steps_time(update, params, optimizer, batch, repeats: int) -> float:
    """Best seconds of one update; the donated state is threaded through."""
    state = _state(jax.tree.map(jnp.copy, params), optimizer)
    ss_prob = jnp.float32(0.0)
    state, _ = jax.block_until_ready(update(state, batch, ss_prob))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = jax.block_until_ready(update(state, batch, ss_prob))
        times.append(time.perf_counter() - start)
    return min(times)


def bench_model(name: str, quick: bool) -> dict:
    size, feat_dim, batch_size = (32, 64, 4) if quick else (256, 2048, 50)
    decoder, params = workload.build_model(
        name, size, feat_dim, 36, workload.COCO_VOCAB
    )
    rng = np.random.default_rng(0)
    regions = 36 if decoder.uses_att else 0
    feats = workload.feature_batch(rng, batch_size, feat_dim, regions)
    labels = workload.references(rng, batch_size, workload.COCO_VOCAB)
    batch = jax.device_put(feats | {"labels": labels})
    repeated = repeated_layout(batch)
    optimizer = make_optimizer(OPTIM, 100)
    update = jax.jit(
        functools.partial(xe.train_step, decoder, optimizer), donate_argnums=0
    )
    repeats = 1 if quick else 3
    (ours_s, base_s), peak = timing.with_peak(
        lambda: [
            _steps_time(update, params, optimizer, b, repeats)
            for b in (batch, repeated)
        ],
        512 if quick else 0,
    )
    loss = jax.jit(lambda p, b: xe.xe_loss(decoder, p, b, None, 0.0)[0])
    captions = batch_size * SEQ_PER_IMG
    forward = workload.decode_flops(
        decoder, params, feats, SEQ_PER_IMG, workload.MAX_LEN + 1
    )
    return {
        "peak_matmul_gflops": peak,
        "steps_per_s": 1.0 / ours_s,
        "captions_per_s": captions / ours_s,
        "baseline_captions_per_s": captions / base_s,
        "ratio": base_s / ours_s,
        "loss_abs_diff": abs(float(loss(params, batch) - loss(params, repeated))),
        "gflop_per_step": 3 * forward / 1e9,
        "fraction_of_peak": 3 * forward / ours_s / 1e9 / peak,
    }


def run_benchmark(quick: bool, models) -> dict:
    out = timing.machine() | {"benchmark": "xe_step"}
    out["peak_matmul_gflops"] = timing.matmul_peak_gflops(512 if quick else 0)
    out |= {
        "batch_images": 4 if quick else 50,
        "captions_per_image": SEQ_PER_IMG,
        "width": 32 if quick else 256,
        "vocab_size": workload.COCO_VOCAB,
        "num_regions": 36,
    }
    out["models"] = {m: bench_model(m, quick) for m in models}
    return out


def main(argv) -> None:
    del argv
    quick = _QUICK.value
    default = ("fc",) if quick else workload.ALL_MODELS  # grads compile slowly
    result = run_benchmark(quick, _MODELS.value or default)
    print(json.dumps(timing.rounded(result)))


if __name__ == "__main__":
    app.run(main)
