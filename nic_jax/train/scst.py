"""Self-critical sequence training (SCST) of a caption decoder.

Rennie et al. 2017, "Self-critical Sequence Training for Image Captioning", as
self-critical.pytorch runs it: for each image, `num_samples` captions are sampled
in train mode (dropout on); each is rewarded with CIDEr-D against the training
references (`nic_jax.rewards`, EOS counted, optional BLEU-4 weight); the baseline
is either the reward of the greedy caption decoded in eval mode (no dropout;
`scst.baseline="greedy"`, the paper's) or the mean reward of the image's other
samples (`"mean"`, the "new self-critical" of Luo 2020, arXiv:2003.09971). The loss
is -(reward - baseline) * log p(token), averaged over the sampled tokens up to and
including each caption's first EOS (`RewardCriterion`). One image row serves all of
its samples: the context is computed once and the step is vmapped over samples.

Params start from `ckpt.init_from` (an XE workdir; params only) or fresh; the step
loop, validation, checkpoints and exact resume are `train/common.py`'s. Each
batch is split over the mesh's `data` axis, params and the reward replicated.
"""

import functools

import jax
import jax.numpy as jnp
import optax
from jax import lax

from nic_jax import parallel, rewards
from nic_jax.data.batches import train_batch
from nic_jax.decoding import decode
from nic_jax.errors import InputError
from nic_jax.train import common, evolution
from nic_jax.train.optim import lr_schedule, make_optimizer

BASELINES = ("greedy", "mean")
FEATURE_KEYS = ("fc", "att", "att_mask")


def _over_samples(tree, num_samples: int):
    """Leaves (B, ...) -> (B, num_samples, ...), broadcast (no copies per sample)."""
    return jax.tree.map(
        lambda x: jnp.broadcast_to(x[:, None], (x.shape[0], num_samples) + x.shape[1:]),
        tree,
    )


def sample_captions(decoder, params, feats, key, num_samples: int, max_len: int):
    """Samples `num_samples` captions per image in train mode (dropout on).

    As self-critical.pytorch's `_sample` under `model.train()` with `sample_n`.
    Returns tokens (B, n, T) int32 (0 after the end), logprobs (B, n, T) of the
    chosen tokens (differentiable; 0 after the end) and entropy (B, n, T) of each
    step's distribution (0 after the end), with T = max_len.
    """
    encode_key, key = jax.random.split(key)
    ctx = decoder.encode(params, feats, encode_key)
    state = _over_samples(decoder.init_state(params, ctx), num_samples)
    batch = jax.tree.leaves(state)[0].shape[0]
    step = lambda s, t, k: decoder.step(params, ctx, s, t, k)
    step_samples = jax.vmap(step, in_axes=(1, 1, 0), out_axes=1)

    def body(carry, step_key):
        state, token, done = carry
        drop_key, pick_key = jax.random.split(step_key)
        drop_keys = jax.random.split(drop_key, num_samples)
        logprobs, state = step_samples(state, token, drop_keys)
        fixed = lax.stop_gradient(logprobs)
        token = jax.random.categorical(pick_key, fixed).astype(jnp.int32)
        chosen = jnp.take_along_axis(logprobs, token[..., None], -1)[..., 0]
        entropy = jax.scipy.special.entr(jnp.exp(fixed)).sum(-1)
        token = jnp.where(done, 0, token)
        outputs = (token, jnp.where(done, 0.0, chosen), jnp.where(done, 0.0, entropy))
        return (state, token, done | (token == 0)), outputs

    init = (
        state,
        jnp.zeros((batch, num_samples), jnp.int32),
        jnp.zeros((batch, num_samples), bool),
    )
    _, outputs = lax.scan(body, init, jax.random.split(key, max_len))
    return tuple(jnp.moveaxis(x, 0, -1) for x in outputs)


def policy_gradient_loss(logprobs, tokens, advantage):
    """-sum(mask * advantage * logprobs) / sum(mask) (self-critical's RewardCriterion).

    logprobs, tokens (..., T); advantage (...,), treated as a constant; the mask
    covers each caption's tokens up to and including its first EOS.
    """
    mask = rewards.policy_mask(tokens)
    weighted = logprobs * lax.stop_gradient(advantage)[..., None]
    return -jnp.sum(jnp.where(mask, weighted, 0.0)) / jnp.sum(mask)


def mean_baseline(sample_rewards):
    """(B, n) mean reward of each image's other n - 1 samples ("new self-critical")."""
    n = sample_rewards.shape[1]
    return (sample_rewards.sum(1, keepdims=True) - sample_rewards) / (n - 1)


def greedy_baseline(decoder, params, feats, reward, rows, max_len: int):
    """(B, 1) reward of each image's greedy caption, decoded in eval mode."""
    fixed = lax.stop_gradient(params)
    tokens, _ = decode(
        decoder, fixed, feats, method="greedy", max_len=max_len, with_logprobs=False
    )
    return reward(tokens, rows)[:, None]


def scst_loss(params, decoder, reward, batch, key, num_samples, baseline, max_len):
    """(loss, metrics) of one batch: feature arrays (B, ...) and `index` (B,)."""
    feats = {k: batch[k] for k in FEATURE_KEYS if k in batch}
    rows = batch["index"]
    tokens, logprobs, entropy = sample_captions(
        decoder, params, feats, key, num_samples, max_len
    )
    sample_rewards = jax.vmap(reward, in_axes=(1, None), out_axes=1)(tokens, rows)
    if baseline == "mean":
        base = mean_baseline(sample_rewards)
    else:
        base = greedy_baseline(decoder, params, feats, reward, rows, max_len)
    advantage = sample_rewards - base
    mask = rewards.policy_mask(tokens)
    metrics = {
        "scst/reward_mean": sample_rewards.mean(),
        "scst/baseline_mean": base.mean(),
        "scst/advantage_std": advantage.std(),
        "scst/entropy": jnp.sum(jnp.where(mask, entropy, 0.0)) / jnp.sum(mask),
        "scst/caption_length": jnp.mean(jnp.sum(tokens > 0, -1)),
    }
    return policy_gradient_loss(logprobs, tokens, advantage), metrics


def train_step(
    decoder, optimizer, state, batch, reward, *, num_samples, baseline, max_len
):
    """One SCST update; pure, jit-compiled once by the trainer."""
    loss_fn = functools.partial(
        scst_loss,
        decoder=decoder,
        reward=reward,
        batch=batch,
        key=common.step_key(state),
        num_samples=num_samples,
        baseline=baseline,
        max_len=max_len,
    )
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"train/loss": loss, "train/grad_norm": optax.tree.norm(grads)} | metrics
    return common.advance(state, params, opt_state), metrics


def check_scst_config(scst_config) -> None:
    """Refuses settings that cannot run, naming the field."""
    if scst_config.baseline not in BASELINES:
        raise InputError(
            f"config scst.baseline={scst_config.baseline!r} is unknown; "
            f"valid: {list(BASELINES)}"
        )
    least = 2 if scst_config.baseline == "mean" else 1
    if scst_config.num_samples < least:
        raise InputError(
            f"config scst.num_samples={scst_config.num_samples}: the "
            f"{scst_config.baseline!r} baseline needs at least {least}"
        )


def captions_per_step(config) -> int:
    """Captions one update decodes: `num_samples` per image, + the greedy baseline."""
    per_image = config.scst.num_samples + (config.scst.baseline == "greedy")
    return per_image * config.data.batch_size


def jitted_step(config, decoder, optimizer, mesh):
    """`update(state, batch, reward)`: the batch split over the mesh's `data` axis,
    the state and the reward replicated (`common.jit_data_parallel`)."""
    step = functools.partial(
        train_step,
        decoder,
        optimizer,
        num_samples=config.scst.num_samples,
        baseline=config.scst.baseline,
        max_len=config.data.max_length,
    )
    return common.jit_data_parallel(step, mesh)


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains until `scst.num_epochs`, resuming from `workdir` when it has a
    checkpoint; returns the last validation scores."""
    check_scst_config(config.scst)
    parallel.initialize(config.mesh)
    common.save_config(config, workdir)
    dataset, decoder = common.setup_data_and_decoder(
        config, ("train", config.evals.split)
    )
    mesh = common.data_mesh(config)
    run = common.Run(
        config, workdir, dataset, decoder, config.scst.num_epochs, mesh=mesh
    )
    val = dataset.splits[config.evals.split]
    reward, val_reward = evolution.train_and_val_rewards(
        config.scst, run.train, val, dataset.vocab_size
    )
    reward = parallel.replicate(reward, run.state_sharding)  # placed once
    optimizer = make_optimizer(config.optim, run.steps_per_epoch)
    state = common.restore_or_init(run, optimizer)
    update = jitted_step(config, decoder, optimizer, mesh)
    schedule = lr_schedule(config.optim, run.steps_per_epoch)

    def make_batch(position, share):
        data = config.data
        batch = train_batch(
            run.train,
            config.seed,
            position,
            data.batch_size,
            1,
            decoder.uses_att,
            share,
        )
        batch.pop("labels")  # the reward holds every image's references
        return batch

    batch_fn = common.global_batch_fn(mesh, config.data.batch_size, make_batch)

    def extras_fn(step):
        return {
            "train/lr": float(schedule(step)),
            "train/epoch": (step + 1) / run.steps_per_epoch,
        }

    step_fn = lambda state, batch, step: update(state, batch, reward)
    # val/CIDEr-D as the evolution trainers log it, from the XE starting point on
    ciderd_fn = evolution.ciderd_scores_fn(run, val_reward, config.evals.num_images)
    validate_fn = lambda state, writer, step: run.validate(
        state, writer, step, ciderd_fn
    )
    return common.fit(
        run,
        state,
        step_fn,
        batch_fn,
        extras_fn,
        "scst",
        validate_fn=validate_fn,
        validate_first=True,
        captions_fn=lambda state: captions_per_step(config),
    )
