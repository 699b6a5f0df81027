"""Synthetic COCO-shaped workloads for the benchmarks: no dataset needed.

A split of N images whose 5 references are random word ids drawn from a Zipf law
over a vocabulary of V words (COCO's cocotalk vocabulary: V = 9,487), 8 to 16
words each, 0-padded to 16 as self-critical.pytorch's labels; random bottom-up-
style features (fc (N, 2048), regions (N, K, 2048)); and the on-device reward
(`rewards.build_reward`: CIDEr-D with the df table of these references). Timing
depends on the shapes only, so random data stand in for COCO. Word w is spelled
"w<id>" when a baseline needs strings.

FLOPs of a decoder are counted by XLA (`lowered.cost_analysis()`, the program
before the backend's passes) on ONE decode step and on the per-image encoding,
each lowered alone: XLA counts a loop body once, whatever its trip count, so a
scan's count is not the work it does.
"""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from nic_jax import rewards
from nic_jax.data.dataset import SplitData
from nic_jax.models.functional import build_decoder, init_params

COCO_VOCAB = 9487
MAX_LEN = 16
REFS_PER_IMAGE = 5
# every registered decoder once ("updown" is "topdown"); --quick runs one FC-style
# and one attention model
ALL_MODELS = (
    "fc",
    "showtell",
    "att2in2",
    "topdown",
    "in5400_rnn",
    "in5400_gru",
    "in5400_lstm",
    "in5400_att",
)
QUICK_MODELS = ("fc", "topdown")


def model_config(name: str, size: int, feat_dim: int, num_regions: int = 36):
    """config.model for decoder `name` with embedding = hidden = `size`.

    The attention MLP and IN5400's input map are `size` wide too; `num_regions`
    is the K that IN5400's attention decoder expects.
    """
    return ConfigDict(
        dict(
            name=name,
            fc_feat_size=feat_dim,
            att_feat_size=feat_dim,
            att_hid_size=size,
            num_layers=1,
            nn_map_size=size,
            num_regions=num_regions,
            input_encoding_size=size,
            rnn_size=size,
            drop_prob_lm=0.5,
        )
    )


def references(rng, num_images: int, vocab_size: int) -> np.ndarray:
    """(N, 5, 16) int32 word ids in 1..V (Zipf-distributed), 0-padded."""
    ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
    probs = 1.0 / ranks / np.sum(1.0 / ranks)
    shape = (num_images, REFS_PER_IMAGE, MAX_LEN)
    words = rng.choice(vocab_size, size=shape, p=probs).astype(np.int32) + 1
    lengths = rng.integers(8, MAX_LEN + 1, shape[:2])
    return np.where(np.arange(MAX_LEN) < lengths[..., None], words, 0)


def synthetic_split(
    num_images: int, vocab_size: int, feat_dim: int, seed: int = 0
) -> SplitData:
    """A training split of N images with random references and fc features."""
    rng = np.random.default_rng(seed)
    labels = references(rng, num_images, vocab_size)
    return SplitData(
        name="train",
        image_ids=np.arange(num_images, dtype=np.int64),
        fc=rng.standard_normal((num_images, feat_dim), np.float32),
        att_store=None,
        labels=labels,
        num_refs=np.full(num_images, REFS_PER_IMAGE, np.int32),
        ref_texts=[[caption_text(r) for r in refs] for refs in labels],
    )


def caption_text(tokens) -> str:
    """Words up to the first EOS (0), spelled w<id>, as a reference string."""
    words = []
    for token in np.asarray(tokens).tolist():
        if token == 0:
            break
        words.append(f"w{token}")
    return " ".join(words)


def feature_batch(rng, batch_size: int, feat_dim: int, num_regions: int = 0) -> dict:
    """Random features of B images: fc (B, D) and, with K > 0, att (B, K, D)."""
    feats = {"fc": rng.standard_normal((batch_size, feat_dim), np.float32)}
    if num_regions:
        shape = (batch_size, num_regions, feat_dim)
        feats["att"] = rng.standard_normal(shape, np.float32)
    return feats


def reward_for(split: SplitData, vocab_size: int) -> rewards.Reward:
    """CIDEr-D reward against the split's references (df of the split itself)."""
    return rewards.build_reward(split, vocab_size)


def build_model(name: str, size: int, feat_dim: int, num_regions: int, vocab_size):
    """(decoder, random params) of registered model `name` (see `model_config`)."""
    config = model_config(name, size, feat_dim, num_regions)
    decoder = build_decoder(config, vocab_size)
    return decoder, init_params(config, vocab_size, jax.random.key(0))


def xla_flops(fn, *args) -> float:
    """FLOPs XLA counts in jit(fn)(*args) (loop bodies counted once), on the
    program before the backend's passes: XLA:GPU's count of the compiled program
    leaves out the dots it hands to cuBLAS (its decode and xe_step figures were
    ~100x low, BENCHMARKS.md, GPU run 2)."""
    cost = jax.jit(fn).lower(*args).cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", 0.0))


def decode_flops(decoder, params, feats: dict, rows: int, steps: int) -> float:
    """FLOPs of encoding B images, then `steps` decoder steps over `rows` rows
    per image (beams or references) sharing each image's context."""

    def encode(params, feats):
        ctx = decoder.encode(params, feats)
        return ctx, decoder.init_state(params, ctx)

    ctx, state = jax.eval_shape(encode, params, feats)
    batch = jax.tree.leaves(state)[0].shape[0]
    tokens = jnp.zeros((batch, rows), jnp.int32)
    per_row = lambda p, c, s, t: decoder.step(p, c, s, t)
    step = jax.vmap(per_row, in_axes=(None, None, 1, 1), out_axes=1)
    state_rows = jax.tree.map(
        lambda x: jnp.zeros(x.shape[:1] + (rows,) + x.shape[1:], x.dtype), state
    )
    ctx = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), ctx)
    step_flops = xla_flops(step, params, ctx, state_rows, tokens)
    return xla_flops(encode, params, feats) + steps * step_flops
