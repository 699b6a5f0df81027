"""Pieces every trainer shares: data and decoder set-up, the train state, where
params start (fresh, `ckpt.init_from`, or the workdir's latest checkpoint), the step
loop with its logging, validation and checkpoints.

Resume order (every gradient trainer): restore the latest checkpoint (params,
optimizer state, key, data position, best score), truncate metrics.jsonl after that
step, continue; the numbers equal an uninterrupted run.
"""

import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.experimental.compilation_cache import compilation_cache
from tqdm import tqdm

from nic_jax import parallel
from nic_jax.config_check import check_config
from nic_jax.data.batches import steps_per_epoch
from nic_jax.data.dataset import load_dataset
from nic_jax.errors import InputError
from nic_jax.evaluation.captioning import evaluate_split
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.models.registry import get_model_class
from nic_jax.train import budget, checkpoint, numerics
from nic_jax.train.metric_writer import MetricWriter


@flax.struct.dataclass
class TrainState:
    """Everything a gradient trainer needs to continue exactly."""

    step: jax.Array  # () int32: optimizer steps taken
    params: dict
    opt_state: optax.OptState
    key: jax.Array  # raw key data of the run's base key
    data_position: jax.Array  # () int32: training batches consumed
    best_score: jax.Array  # () float32: best validation score so far


def save_config(config, workdir: str) -> None:
    """Writes the resolved config as `workdir/config.json` (atomically; process 0)."""
    if not parallel.is_main_process():
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(path + ".tmp", path)


def apply_compute(config) -> None:
    """Sets the run's f32 matmul precision (`config.compute.matmul_precision`) for
    every program jitted from here on ("default": JAX's own choice), and JAX's
    persistent compilation cache (`config.compute.compilation_cache_dir`, see
    `use_compilation_cache`; "" undoes what an earlier run in this process set)."""
    compute = config.get("compute", {})
    precision = compute.get("matmul_precision", "default")
    chosen = None if precision == "default" else precision
    jax.config.update("jax_default_matmul_precision", chosen)
    if chosen:
        logging.info("f32 matmuls at precision %s", chosen)
    folder = compute.get("compilation_cache_dir", "")
    if folder:
        min_compile_s = compute.get("compilation_cache_min_compile_s", 0.1)
        use_compilation_cache(folder, min_compile_s)
    else:
        stop_compilation_cache()


_CACHE_SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_enable_xla_caches",
)
_settings_before_cache: dict = {}  # JAX's, as `use_compilation_cache` found them


def use_compilation_cache(folder: str, min_compile_s: float = 0.1) -> None:
    """Keeps compiled programs in `folder` (a path, `~` expanded, or a gs://
    URL, which needs gcsfs: `pip install -e ".[gcs]"`): a resumed or repeated
    run with the same shapes, flags and versions loads its programs instead of
    compiling them again. Programs that compiled in under `min_compile_s` are
    not kept (JAX's default is 1 s: the tiny NES run, configs/nes.py:tiny in a
    fresh process on a 2-core CPU, took 12.6 s uncached, 9.4 s from a cache at
    1 s (1 program kept), 7.1 s at 0.1 s (10 programs)). JAX reads the folder
    once per process, so a change resets its cache. Only process 0 writes:
    several hosts should share one folder (gs://, NFS)."""
    if not _settings_before_cache:
        _settings_before_cache.update(
            {k: getattr(jax.config, k) for k in _CACHE_SETTINGS}
        )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_s)
    path = os.path.expanduser(folder)
    xla_caches = _settings_before_cache["jax_persistent_cache_enable_xla_caches"]
    if path.startswith("gs://"):  # XLA's autotune cache path is local-only
        xla_caches = "none"
    jax.config.update("jax_persistent_cache_enable_xla_caches", xla_caches)
    if jax.config.jax_compilation_cache_dir != path:
        compilation_cache.reset_cache()
        jax.config.update("jax_compilation_cache_dir", path)
        logging.info("compiled programs cached in %s", path)


def stop_compilation_cache() -> None:
    """Restores JAX's cache settings as `use_compilation_cache` found them (a
    run without a cache after one with, in the same process)."""
    if not _settings_before_cache:
        return
    compilation_cache.reset_cache()
    for name, value in _settings_before_cache.items():
        jax.config.update(name, value)
    _settings_before_cache.clear()


def setup_data_and_decoder(config, splits=("train", "val", "test")):
    """Checks the config, applies its compute settings, loads the dataset and
    builds the decoder it fits."""
    check_config(config)
    apply_compute(config)
    need_att = get_model_class(config.model.name).uses_att
    dataset = load_dataset(config.data, config.model.fc_feat_size, need_att, splits)
    return dataset, build_decoder(config.model, dataset.vocab_size)


def checkpoint_meta(config, dataset) -> dict:
    """What a checkpoint records beside arrays: config, vocabulary, data fingerprint."""
    return {
        "config": json.loads(config.to_json_best_effort()),
        "vocab": [dataset.ix_to_word[i] for i in sorted(dataset.ix_to_word)],
        "data_fingerprint": dataset.fingerprint,
    }


def check_model_config(meta: dict, model_config, where: str) -> None:
    """Refuses to resume a checkpoint whose model has another shape."""
    saved = meta["config"]["model"]
    current = json.loads(model_config.to_json_best_effort())
    # keys one side lacks come from another version of the config: a checkpoint
    # written before a key existed was built without it
    changed = sorted(k for k in set(saved) & set(current) if saved[k] != current[k])
    if changed:
        key = changed[0]
        raise InputError(
            f"checkpoint {where} has model.{key}={saved.get(key)!r} but the config "
            f"says {current.get(key)!r}; use another workdir or the same model config"
        )


def log_samples(split, captions: dict, num: int) -> None:
    """Logs `num` decoded captions with their references."""
    for row in range(min(num, len(split.image_ids))):
        image_id = int(split.image_ids[row])
        logging.info("image %d: %s", image_id, captions.get(image_id, ""))
        for ref in split.ref_texts[row][:5]:
            logging.info("    ref: %s", ref)


def evaluate(decoder, params, split, ix_to_word, eval_config, metrics, max_len):
    """Scores greedy captions of a split: ({'<split>/<metric>': v}, captions)."""
    scores, captions = evaluate_split(
        decoder, params, split, ix_to_word, eval_config, metrics, max_len
    )
    summary = " ".join(f"{k}={v:.4f}" for k, v in scores.items())
    logging.info("%s: %s", split.name, summary)
    return {f"{split.name}/{k}": v for k, v in scores.items()}, captions


def mean_metrics(history: list) -> dict:
    """Averages a list of per-step metric dicts (host floats)."""
    return {k: float(np.mean([h[k] for h in history])) for k in history[0]}


def _check_same_model(meta: dict, model_config, where: str) -> None:
    """As `check_model_config`, but dropout rates may differ (they hold no params)."""
    current = json.loads(model_config.to_json_best_effort())
    saved = dict(meta["config"]["model"])
    saved.update({k: v for k, v in current.items() if k.startswith("drop")})
    check_model_config({"config": {"model": saved}}, model_config, where)


def _source_metric(workdir: str, default: str) -> str:
    """The validation metric that picked the best checkpoint of another run."""
    try:
        with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
            evals = json.load(f)["evals"]
        return f"{evals['split']}/{evals['best_metric']}"
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return default


def load_init_params(config, dataset, abstract_params) -> dict:
    """Params of `config.ckpt.init_from` (a workdir): its best validation
    checkpoint, else its latest. Only params are read; vocabulary and model must
    match (dropout rates may differ)."""
    source = config.ckpt.init_from
    where = checkpoint.checkpoint_dir(source)
    if not os.path.isdir(where):
        raise InputError(
            f"config ckpt.init_from={source!r}: {where} does not exist; expected the "
            "workdir of a finished training run"
        )
    metric = _source_metric(source, f"{config.evals.split}/{config.evals.best_metric}")
    manager = checkpoint.make_manager(source, config.ckpt, metric, read_only=True)
    step = checkpoint.best_step(manager, metric)
    step = manager.latest_step() if step is None else step
    if step is None:
        raise InputError(f"config ckpt.init_from={source!r}: no checkpoint in {where}")
    meta = checkpoint.restore_meta(manager, step)
    checkpoint.check_vocabulary(meta, dataset.ix_to_word, where)
    _check_same_model(meta, config.model, where)
    params, _ = checkpoint.restore_params(manager, step, abstract_params)
    logging.info("initial params from step %d of %s", step, where)
    return params


def initial_params(config, dataset, params_key) -> dict:
    """Fresh params from `params_key`, or those of `ckpt.init_from` when set."""
    fresh = lambda: init_params(config.model, dataset.vocab_size, params_key)
    if config.ckpt.get("init_from", ""):
        return load_init_params(config, dataset, jax.eval_shape(fresh))
    return fresh()


def new_train_state(config, dataset, optimizer) -> TrainState:
    """Step 0: fresh params from `config.seed`, or those of `ckpt.init_from`."""
    params_key, run_key = jax.random.split(jax.random.key(config.seed))
    params = initial_params(config, dataset, params_key)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        key=jax.random.key_data(run_key),
        data_position=jnp.zeros((), jnp.int32),
        best_score=jnp.full((), -jnp.inf, jnp.float32),
    )
    return state  # placed on the run's devices by `restore_or_make`


def data_mesh(config):
    """The XE/SCST mesh: `mesh.data` devices, each taking an equal batch slice."""
    return parallel.make_mesh(
        config.mesh, parallel.DATA, config.data.batch_size, "data.batch_size"
    )


def jit_data_parallel(step_fn, mesh):
    """`step_fn(state, batch, extra) -> (state, metrics)` jitted data-parallel:
    the state, `extra` and the outputs replicated over `mesh`, the batch (B, ...)
    split over its `data` axis (XLA all-reduces the gradients); state donated."""
    replicated = parallel.replicated(mesh)
    return jax.jit(
        step_fn,
        in_shardings=(replicated, parallel.split(mesh, parallel.DATA), replicated),
        out_shardings=replicated,
        donate_argnums=0,
    )


def global_batch_fn(mesh, batch_size: int, make_batch):
    """`fit`'s batch_fn: make_batch(position, share) reads this process's share
    (a slice) of the `batch_size` rows; the global batch is assembled on the
    mesh's `data` axis."""
    share = parallel.process_rows(batch_size)

    def batch_fn(position):
        return parallel.global_batch(make_batch(position, share), mesh, parallel.DATA)

    return batch_fn


def step_key(state: TrainState) -> jax.Array:
    """The PRNG key of the update at `state.step` (the base key folded with it)."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)


def advance(state: TrainState, params, opt_state) -> TrainState:
    """The state after one update that consumed one batch."""
    return state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        data_position=state.data_position + 1,
    )


def restore_or_init(run, optimizer) -> TrainState:
    """The workdir's latest state, or step 0 (`new_train_state`) when it has none."""
    return restore_or_make(
        run, lambda config: new_train_state(config, run.dataset, optimizer)
    )


def restore_or_make(run, make_state):
    """The workdir's latest state, or `make_state(config)` (step 0) when it has none.

    The state is any pytree with a `params` field (saved as its own item).
    """
    step = run.manager.latest_step()
    if step is None:
        # one placement for every leaf (restored params are committed, fresh zeros
        # are not): the step's outputs then match its inputs and it compiles once
        return parallel.replicate(make_state(run.config), run.state_sharding)
    config = run.config.copy_and_resolve_references()
    config.ckpt.init_from = ""  # the shapes only: never read another run here
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=run.state_sharding),
        jax.eval_shape(lambda: make_state(config)),
    )
    # metadata first: another vocabulary, model or data gets its own message, not
    # a shape mismatch from deep inside the restore
    where = checkpoint.checkpoint_dir(run.workdir)
    meta = checkpoint.restore_meta(run.manager, step)
    checkpoint.check_vocabulary(meta, run.dataset.ix_to_word, where)
    check_model_config(meta, run.config.model, where)
    checkpoint.check_data(
        meta,
        run.dataset.fingerprint,
        where,
        run.config.data,
        run.config.ckpt.get("allow_data_change", False),
    )
    params, train, _ = checkpoint.restore(
        run.manager, step, abstract.params, abstract.replace(params=None)
    )
    logging.info("resumed from step %d of %s", step, where)
    return train.replace(params=params)


class Run:
    """The fixed parts of one training run: data, sizes, checkpoints, validation.

    `mesh`: the run's devices (`nic_jax.parallel.make_mesh`); the train state is
    replicated over it (`state_sharding`). None: this process's first device.
    """

    def __init__(
        self,
        config,
        workdir,
        dataset,
        decoder,
        num_epochs: int,
        total_steps=None,
        mesh=None,
    ):
        self.config, self.workdir = config, workdir
        self.mesh = mesh
        self.state_sharding = (
            jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            if mesh is None
            else parallel.replicated(mesh)
        )
        self.dataset, self.decoder = dataset, decoder
        self.train = dataset.splits["train"]
        self.steps_per_epoch = steps_per_epoch(
            len(self.train.image_ids), config.data.batch_size
        )
        if self.steps_per_epoch == 0:
            raise InputError(
                f"config data.batch_size={config.data.batch_size} exceeds the "
                f"{len(self.train.image_ids)} images of the train split"
            )
        self.total_steps = (
            num_epochs * self.steps_per_epoch if total_steps is None else total_steps
        )
        self.best_key = f"{config.evals.split}/{config.evals.best_metric}"
        self.manager = checkpoint.make_manager(workdir, config.ckpt, self.best_key)
        self.meta = checkpoint_meta(config, dataset)

    def save(self, state: TrainState, metrics=None) -> None:
        # host-made leaves (best score, flags) onto the mesh: every process saves
        state = parallel.replicate(state, self.state_sharding)
        checkpoint.save(
            self.manager,
            int(state.step),
            state.params,
            state.replace(params=None),
            self.meta,
            metrics,
        )

    def validate(
        self, state: TrainState, writer, step: int, extra_fn=None, scored_fn=None
    ):
        """Scores the validation split, keeps the best score and saves.

        extra_fn(params) -> {name: value} adds scores (e.g. on-device CIDEr-D);
        scored_fn(state, scores) -> state updates the state before it is saved
        (so that a resume sees it). Returns (state, scores).
        """
        cfg = self.config
        split = self.dataset.splits[cfg.evals.split]
        params = parallel.local_copy(state.params)  # each process decodes alone
        scores, captions = evaluate(
            self.decoder,
            params,
            split,
            self.dataset.ix_to_word,
            cfg.evals,
            cfg.evals.metrics,
            cfg.data.max_length,
        )
        log_samples(split, captions, cfg.evals.num_samples)
        if extra_fn is not None:
            extra = {f"{split.name}/{k}": v for k, v in extra_fn(params).items()}
            logging.info("%s: %s", split.name, extra)
            scores.update(extra)
        if scored_fn is not None:
            state = scored_fn(state, scores)
        best = max(float(state.best_score), scores[self.best_key])
        state = state.replace(best_score=jnp.float32(best))
        writer.write(step, scores)
        self.save(state, scores)
        return state, scores


def _stop_if_non_finite(run, writer, history: list, params, step: int, loss_key):
    """`numerics`' checks of the steps since the last log and of the params; on
    a failure, the saves in flight finish first (the last good checkpoint stays)
    and the metric writer closes (a rollback reopens the workdir)."""
    try:
        numerics.check_metrics(history, step, loss_key)
        numerics.check_params(params, step)
    except numerics.NonFiniteError:
        run.manager.wait_until_finished()
        writer.close()
        raise


def _log_train(writer, step: int, history: list, extras: dict, loss_key: str):
    summary = mean_metrics(jax.device_get(history))
    loss = summary[loss_key]
    summary.update(extras)
    writer.write(step, summary)
    logging.info("step %d: %s %.4f", step, loss_key, loss)


def write_snapshot_plots(workdir: str) -> None:
    """The PNG curves of `<workdir>/plots` (`nic_jax.plot`), redrawn at each
    snapshot as es-img-captioning does; a figure that fails to draw is logged,
    never the end of a training run."""
    from nic_jax import plot  # matplotlib only where plots are asked for

    try:
        plot.write_plots(workdir)
    except Exception as error:  # noqa: BLE001 (a plot never stops training)
        logging.warning("plots of %s not drawn: %s", workdir, error)


def fit(
    run: Run,
    state,
    step_fn,
    batch_fn,
    extras_fn,
    name: str,
    loss_key: str = "train/loss",
    validate_fn=None,
    validate_first: bool = False,
    captions_fn=None,
):
    """Runs `state` to `run.total_steps` (or to `config.budget.train_s` seconds of
    training, `train/budget.py`); returns the last validation scores.

    step_fn(state, batch, step) -> (state, metrics) runs one update;
    batch_fn(position) -> the host batch at a data position;
    extras_fn(step) -> host values logged beside the step metrics;
    loss_key: the metric logged on each line and named first when a step's
    metrics or the params turn non-finite (`numerics`: the run stops);
    validate_fn(state, writer, step) -> (state, scores), default `run.validate`;
    validate_first: score the starting point too (step 0 of a fine-tuning run);
    captions_fn(state) -> captions the next step decodes (host int), logged as
    `time/decoded_captions` under a budget.
    """
    validate_fn = run.validate if validate_fn is None else validate_fn
    cfg = run.config
    start = int(state.step)
    # lines after the restored step go; with no checkpoint, all (a run killed
    # before its first checkpoint may have logged step 0)
    restored = run.manager.latest_step() is not None
    writer = MetricWriter(
        run.workdir, cfg.log.tensorboard, resume_step=start if restored else -1
    )
    clock = budget.TrainClock.resume(cfg.get("budget"), writer.path)
    position = int(state.data_position)
    history, scores = [], {}
    logging.info(
        "%s: %d steps (%d per epoch), starting at %d",
        name.upper(),
        run.total_steps,
        run.steps_per_epoch,
        start,
    )
    # not again when resuming from the step-0 checkpoint that validation saved
    if validate_first and start == 0 and run.manager.latest_step() is None:
        state, scores = validate_fn(state, writer, 0)
        if clock.enabled:
            writer.write(0, clock.metrics())
    clock.start()
    # no step when resumed after the budget was spent
    steps = range(start, start if clock.exceeded() else run.total_steps)
    for step in tqdm(
        steps,
        initial=start,
        total=run.total_steps,
        desc=name,
        mininterval=5,
        disable=not parallel.is_main_process(),
    ):
        captions = 0 if captions_fn is None else captions_fn(state)
        state, metrics = step_fn(state, batch_fn(position), step)
        clock.stepped(state, captions)
        position += 1
        history.append(metrics)
        done = step + 1
        last = done == run.total_steps or clock.exceeded()
        validating = done % cfg.evals.every_steps == 0 or last or clock.eval_due()
        saving = validating or done % cfg.ckpt.every_steps == 0
        if saving or done % cfg.log.every_steps == 0 or last:  # never log/save a NaN
            _stop_if_non_finite(run, writer, history, state.params, done, loss_key)
        if done % cfg.log.every_steps == 0 or last or (validating and clock.enabled):
            extras = extras_fn(step) | clock.lap()
            _log_train(writer, done, history, extras, loss_key)
            history = []
        with clock.stopped(state):
            if validating:
                state, scores = validate_fn(state, writer, done)
            elif done % cfg.ckpt.every_steps == 0:
                run.save(state)
            if saving and cfg.log.get("plots", False) and writer.enabled:
                write_snapshot_plots(run.workdir)
        if last:
            break
    run.manager.wait_until_finished()
    writer.close()
    return scores
