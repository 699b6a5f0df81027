"""Caption decoding speed per model: greedy and beam search, against host loops.

  python -m nic_jax.benchmarks.decode [--quick] [--models=fc,topdown]

Prints one JSON line with a record per model. Workload: B = 128 images (4 with
--quick), COCO's vocabulary (V = 9,487), every model 256 wide (embedding, hidden,
attention MLP; 32 with --quick) on 2,048-d features and K = 36 regions, random
params, 16 words at most, beam size 3.

* `greedy_captions_per_s`: `decoding.decode` (one `lax.scan`) jit-compiled,
  warmed up, best of 3. Baseline (`greedy_baseline_captions_per_s`): the loop of
  self-critical.pytorch's `_sample`, one host iteration per word: a jit-compiled
  step (decoder step + argmax) per word and a host check that stops once every
  caption has ended.
* `beam_captions_per_s`: `decoding.beam_search` over all images at once
  (`lax.while_loop`, beams on an axis). Baseline: one image at a time (the loop of
  self-critical.pytorch's FCModel `_sample_beam`) through the same jit-compiled
  beam search at B = 1.
* `*_ratio` = ours / baseline; `*_agreement`: the fraction of captions the two
  sides decode identically (1.0: the same search).
* Roofline: `greedy_gflop_per_caption` counted by XLA on one step (x 16) plus the
  encoding (`workload.decode_flops`); `greedy_fraction_of_peak` = achieved rate /
  the model's `peak_matmul_gflops`: the best 2048^3 `jnp.dot` (8192^3 on a GPU)
  of two, measured just before and just after the model's timings (the run's
  top-level peak is the one at its start). Beam search's count assumes all 16
  steps run (it may stop earlier), so `beam_fraction_of_peak` is an upper bound.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from nic_jax import app
from nic_jax.benchmarks import timing, workload
from nic_jax.decoding import beam_search, decode

_QUICK = flags.DEFINE_bool("quick", False, "Tiny models, 4 images (CI smoke).")
_MODELS = flags.DEFINE_list("models", [], "Models (default: all; quick: fc, topdown).")
_BEAM = flags.DEFINE_integer("beam_size", 3, "Beams per image.")


def host_loop_greedy(decoder, max_len: int = workload.MAX_LEN):
    """`fn(params, feats) -> tokens (B, L)` with one host iteration per word."""

    @jax.jit
    def start(params, feats):
        ctx = decoder.encode(params, feats)
        return ctx, decoder.init_state(params, ctx)

    @jax.jit
    def step(params, ctx, state, token, done):
        logprobs, state = decoder.step(params, ctx, state, token)
        token = jnp.where(done, 0, jnp.argmax(logprobs, -1).astype(jnp.int32))
        return token, state, done | (token == 0)

    def run(params, feats):
        ctx, state = start(params, feats)
        batch = feats["fc"].shape[0]
        token, done = jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), bool)
        tokens = []
        for _ in range(max_len):
            token, state, done = step(params, ctx, state, token, done)
            tokens.append(token)
            if bool(done.all()):  # a host sync per word, as upstream's break
                break
        tokens += [jnp.zeros_like(token)] * (max_len - len(tokens))
        return jnp.stack(tokens, 1)

    return run


def per_image_beam(decoder, beam_size: int):
    """`fn(params, feats) -> tokens (B, L)`, one image per beam search call."""
    search = jax.jit(lambda p, f: beam_search(decoder, p, f, beam_size)[0])

    def run(params, feats):
        batch = feats["fc"].shape[0]
        one = lambda i: jax.tree.map(lambda x: x[i : i + 1], feats)
        return jnp.concatenate([search(params, one(i)) for i in range(batch)])

    return run


def _agreement(a, b) -> float:
    return float(np.mean(np.all(np.asarray(a) == np.asarray(b), axis=-1)))


def bench_model(name: str, quick: bool, beam_size: int) -> dict:
    size, feat_dim, batch = (32, 64, 4) if quick else (256, 2048, 128)
    decoder, params = workload.build_model(
        name, size, feat_dim, 36, workload.COCO_VOCAB
    )
    rng = np.random.default_rng(0)
    feats = workload.feature_batch(rng, batch, feat_dim, 36 if decoder.uses_att else 0)
    feats = jax.device_put(feats)
    greedy = jax.jit(
        lambda p, f: decode(decoder, p, f, None, "greedy", with_logprobs=False)[0]
    )
    beam = jax.jit(lambda p, f: beam_search(decoder, p, f, beam_size)[0])
    sides = {
        "greedy": (greedy, host_loop_greedy(decoder)),
        "beam": (beam, per_image_beam(decoder, beam_size)),
    }
    repeats = 1 if quick else 3
    times, peak = timing.with_peak(
        lambda: {
            kind: [timing.best_time(fn, params, feats, repeats=repeats) for fn in fns]
            for kind, fns in sides.items()
        },
        512 if quick else 0,
    )
    out = {"peak_matmul_gflops": peak}
    for kind, (ours_s, base_s) in times.items():
        ours, baseline = sides[kind]
        out[f"{kind}_captions_per_s"] = batch / ours_s
        out[f"{kind}_baseline_captions_per_s"] = batch / base_s
        out[f"{kind}_ratio"] = base_s / ours_s
        agree = _agreement(ours(params, feats), baseline(params, feats))
        out[f"{kind}_agreement"] = agree
    for kind, rows in (("greedy", 1), ("beam", beam_size)):
        flops = workload.decode_flops(decoder, params, feats, rows, workload.MAX_LEN)
        out[f"{kind}_gflop_per_caption"] = flops / batch / 1e9
        achieved = out[f"{kind}_captions_per_s"] * flops / batch / 1e9
        out[f"{kind}_fraction_of_peak"] = achieved / peak
    return out


def run_benchmark(quick: bool, models, beam_size: int) -> dict:
    out = timing.machine() | {"benchmark": "decode"}
    out["peak_matmul_gflops"] = timing.matmul_peak_gflops(512 if quick else 0)
    out |= {
        "batch_images": 4 if quick else 128,
        "width": 32 if quick else 256,
        "vocab_size": workload.COCO_VOCAB,
        "num_regions": 36,
        "max_len": workload.MAX_LEN,
        "beam_size": beam_size,
    }
    out["models"] = {m: bench_model(m, quick, beam_size) for m in models}
    return out


def main(argv) -> None:
    del argv
    models = _MODELS.value or (
        workload.QUICK_MODELS if _QUICK.value else workload.ALL_MODELS
    )
    result = run_benchmark(_QUICK.value, models, _BEAM.value)
    print(json.dumps(timing.rounded(result)))


if __name__ == "__main__":
    app.run(main)
