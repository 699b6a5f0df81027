"""Cross-entropy (maximum likelihood) training of a caption decoder.

The self-critical.pytorch XE recipe: masked token cross-entropy over the words and
the first EOS of each reference, `seq_per_img` references per image sharing one
image row, Adam with epoch-wise decay, element-wise gradient clipping, optional
scheduled sampling (Bengio et al. 2015). Resume order: restore the latest checkpoint
(params, optimizer state, key, data position, best score), truncate metrics.jsonl
after that step, continue; the numbers equal an uninterrupted run.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from tqdm import tqdm

from nic_jax.data.batches import steps_per_epoch, train_batch
from nic_jax.decoding import teacher_forced_logprobs
from nic_jax.losses import masked_xe
from nic_jax.models.functional import init_params
from nic_jax.train import checkpoint, common
from nic_jax.train.metric_writer import MetricWriter
from nic_jax.train.optim import lr_schedule, make_optimizer, scheduled_sampling_prob


@flax.struct.dataclass
class XEState:
    step: jax.Array  # () int32: optimizer steps taken
    params: dict
    opt_state: optax.OptState
    key: jax.Array  # raw key data of the run's base key
    data_position: jax.Array  # () int32: training batches consumed
    best_score: jax.Array  # () float32: best validation score so far


def xe_loss(decoder, params, batch, key, ss_prob):
    feats = {k: batch[k] for k in ("fc", "att") if k in batch}
    logprobs = teacher_forced_logprobs(
        decoder, params, feats, batch["labels"], key, ss_prob
    )
    return masked_xe(logprobs, batch["labels"])


def train_step(decoder, optimizer, state: XEState, batch, ss_prob):
    """One XE update; pure, jit-compiled once by the trainer."""
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    loss_fn = functools.partial(xe_loss, decoder, batch=batch, key=key, ss_prob=ss_prob)
    (loss, tokens), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "train/loss": loss,
        "train/grad_norm": optax.tree.norm(grads),
        "train/tokens": tokens,
    }
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        data_position=state.data_position + 1,
    )
    return new_state, metrics


def init_state(config, decoder, optimizer) -> XEState:
    key = jax.random.key(config.seed)
    params_key, run_key = jax.random.split(key)
    params = init_params(config.model, decoder.vocab_size, params_key)
    return XEState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        key=jax.random.key_data(run_key),
        data_position=jnp.zeros((), jnp.int32),
        best_score=jnp.full((), -jnp.inf, jnp.float32),
    )


def _restore_or_init(config, workdir, manager, decoder, optimizer, dataset):
    abstract = jax.eval_shape(lambda: init_state(config, decoder, optimizer))
    step = manager.latest_step()
    if step is None:
        return init_state(config, decoder, optimizer)
    train_abstract = abstract.replace(params=None)
    params, train, meta = checkpoint.restore(
        manager, step, abstract.params, train_abstract
    )
    where = checkpoint.checkpoint_dir(workdir)
    checkpoint.check_vocabulary(meta, dataset.ix_to_word, where)
    common.check_model_config(meta, config.model, where)
    logging.info("resumed from step %d of %s", step, where)
    return train.replace(params=params)


class _Run:
    """The mutable parts of one training run: writer, manager, timers."""

    def __init__(self, config, workdir, dataset, decoder):
        self.config, self.workdir, self.dataset, self.decoder = (
            config,
            workdir,
            dataset,
            decoder,
        )
        self.train = dataset.splits["train"]
        self.steps_per_epoch = steps_per_epoch(
            len(self.train.image_ids), config.data.batch_size
        )
        if self.steps_per_epoch == 0:
            raise ValueError("batch_size exceeds the train split")
        self.total_steps = config.xe.num_epochs * self.steps_per_epoch
        self.best_key = f"{config.evals.split}/{config.evals.best_metric}"
        self.manager = checkpoint.make_manager(workdir, config.ckpt, self.best_key)
        self.meta = common.checkpoint_meta(config, dataset)

    def save(self, state, metrics=None):
        step = int(state.step)
        checkpoint.save(
            self.manager,
            step,
            state.params,
            state.replace(params=None),
            self.meta,
            metrics,
        )

    def evaluate(self, state):
        cfg = self.config
        split = self.dataset.splits[cfg.evals.split]
        scores, captions = common.evaluate(
            self.decoder,
            state.params,
            split,
            self.dataset.ix_to_word,
            cfg.evals,
            cfg.evals.metrics,
            cfg.data.max_length,
        )
        common.log_samples(split, captions, cfg.evals.num_samples)
        return scores


def _check_finite(step, metrics):
    loss = float(metrics["train/loss"])
    if not np.isfinite(loss):
        raise FloatingPointError(f"train/loss is {loss} at step {step}; stopping")


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains until `xe.num_epochs`, resuming from `workdir` when it has a checkpoint.

    Returns the last validation scores.
    """
    common.save_config(config, workdir)
    dataset, decoder = common.setup_data_and_decoder(
        config, ("train", config.evals.split)
    )
    run = _Run(config, workdir, dataset, decoder)
    optimizer = make_optimizer(config.optim, run.steps_per_epoch)
    state = _restore_or_init(config, workdir, run.manager, decoder, optimizer, dataset)
    start = int(state.step)
    writer = MetricWriter(workdir, config.log.tensorboard, resume_step=start)
    step_fn = jax.jit(
        functools.partial(train_step, decoder, optimizer), donate_argnums=0
    )
    schedule = lr_schedule(config.optim, run.steps_per_epoch)
    position = int(state.data_position)
    history, scores = [], {}
    logging.info(
        "XE: %d steps (%d per epoch), starting at %d",
        run.total_steps,
        run.steps_per_epoch,
        start,
    )
    for step in tqdm(
        range(start, run.total_steps),
        initial=start,
        total=run.total_steps,
        desc="xe",
        mininterval=5,
    ):
        epoch = step // run.steps_per_epoch
        batch = train_batch(
            run.train,
            config.seed,
            position,
            config.data.batch_size,
            config.data.seq_per_img,
            decoder.uses_att,
        )
        ss_prob = scheduled_sampling_prob(config.xe, epoch)
        state, metrics = step_fn(state, batch, jnp.float32(ss_prob))
        position += 1
        history.append(metrics)
        done = step + 1
        if done % config.log.every_steps == 0 or done == run.total_steps:
            summary = common.mean_metrics(jax.device_get(history))
            _check_finite(done, summary)
            summary.update(
                {
                    "train/lr": float(schedule(step)),
                    "train/ss_prob": ss_prob,
                    "train/epoch": done / run.steps_per_epoch,
                }
            )
            writer.write(done, summary)
            logging.info("step %d: loss %.4f", done, summary["train/loss"])
            history = []
        if done % config.evals.every_steps == 0 or done == run.total_steps:
            scores = run.evaluate(state)
            best = max(float(state.best_score), scores[run.best_key])
            state = state.replace(best_score=jnp.float32(best))
            writer.write(done, scores)
            run.save(state, scores)
        elif done % config.ckpt.every_steps == 0:
            run.save(state)
    run.manager.wait_until_finished()
    writer.close()
    return scores
