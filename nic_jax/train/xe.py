"""Cross-entropy (maximum likelihood) training of a caption decoder.

The self-critical.pytorch XE recipe: masked token cross-entropy over the words and
the first EOS of each reference, `seq_per_img` references per image sharing one
image row, Adam with epoch-wise decay, element-wise gradient clipping, optional
scheduled sampling (Bengio et al. 2015). Resume order and the step loop:
`train/common.py`; the numbers of a resumed run equal an uninterrupted one. Each
batch is split over the mesh's `data` axis (`config.mesh.data` devices, each
process reading its own rows), params replicated (`common.jit_data_parallel`).
"""

import functools

import jax
import jax.numpy as jnp
import optax

from nic_jax import parallel
from nic_jax.data.batches import train_batch
from nic_jax.decoding import teacher_forced_logprobs
from nic_jax.losses import masked_xe
from nic_jax.train import common
from nic_jax.train.optim import lr_schedule, make_optimizer, scheduled_sampling_prob

XEState = common.TrainState


def xe_loss(decoder, params, batch, key, ss_prob):
    feats = {k: batch[k] for k in ("fc", "att") if k in batch}
    logprobs = teacher_forced_logprobs(
        decoder, params, feats, batch["labels"], key, ss_prob
    )
    return masked_xe(logprobs, batch["labels"])


def train_step(decoder, optimizer, state: XEState, batch, ss_prob):
    """One XE update; pure, jit-compiled once by the trainer."""
    key = common.step_key(state)
    loss_fn = functools.partial(xe_loss, decoder, batch=batch, key=key, ss_prob=ss_prob)
    (loss, tokens), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "train/loss": loss,
        "train/grad_norm": optax.tree.norm(grads),
        "train/tokens": tokens,
    }
    return common.advance(state, params, opt_state), metrics


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains until `xe.num_epochs`, resuming from `workdir` when it has a checkpoint.

    Starts from `ckpt.init_from` (another run's params) when set. Returns the last
    validation scores.
    """
    parallel.initialize(config.mesh)
    common.save_config(config, workdir)
    dataset, decoder = common.setup_data_and_decoder(
        config, ("train", config.evals.split)
    )
    mesh = common.data_mesh(config)
    run = common.Run(config, workdir, dataset, decoder, config.xe.num_epochs, mesh=mesh)
    optimizer = make_optimizer(config.optim, run.steps_per_epoch)
    state = common.restore_or_init(run, optimizer)
    update = common.jit_data_parallel(
        functools.partial(train_step, decoder, optimizer), mesh
    )
    schedule = lr_schedule(config.optim, run.steps_per_epoch)
    ss_prob = lambda step: scheduled_sampling_prob(
        config.xe, step // run.steps_per_epoch
    )

    def step_fn(state, batch, step):
        return update(state, batch, jnp.float32(ss_prob(step)))

    def make_batch(position, share):
        data = config.data
        return train_batch(
            run.train,
            config.seed,
            position,
            data.batch_size,
            data.seq_per_img,
            decoder.uses_att,
            share,
        )

    batch_fn = common.global_batch_fn(mesh, config.data.batch_size, make_batch)

    def extras_fn(step):
        return {
            "train/lr": float(schedule(step)),
            "train/ss_prob": ss_prob(step),
            "train/epoch": (step + 1) / run.steps_per_epoch,
        }

    return common.fit(run, state, step_fn, batch_fn, extras_fn, "xe")
