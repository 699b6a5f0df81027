"""What the evolution trainers (NIC-NES `nes.py`, NIC-ES `es.py`) share.

One generation is one jit-compiled function of (state, batch, reward, noise):
ask -> evaluate the implicit population on the batch with the on-device fitness ->
tell, then the strategy-specific `after_tell` (the GA scores its elite candidates
on validation there). Between generations the host anneals sigma, batch size and
learning rate (`evolution.annealing`), and the step loop, logging, validation and
checkpoints are `train.common.fit`'s, so a killed run resumes exactly: the
checkpoint holds the strategy state (theta or the parents and podium), the PRNG
key, the data position, the annealing state and the best score.

On a mesh of several devices (`config.mesh.population`) the generation runs as
one program per device (`parallel.spmd`): the state, batch, reward and noise
table are replicated, each device scores its slice of the members, and only the
fitness scalars (and, for NES, one summed update) cross devices.

Metric names: `es/fitness_mean`, `es/sigma`, `es/update_ratio`, `es/batch_size`, ...;
validation adds `val/CIDEr-D` (greedy captions, train-split df, EOS counted: the
reward the strategies optimise) beside the usual metrics.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from nic_jax import parallel, rewards
from nic_jax.data.batches import gather_features, train_batch
from nic_jax.errors import InputError
from nic_jax.evolution import annealing, fitness, lowrank, safe_mutations
from nic_jax.evolution import noise as noise_lib
from nic_jax.growth import mutation
from nic_jax.metrics import df as df_lib
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.train import architecture, common, rollback


@flax.struct.dataclass
class EvoState:
    """Everything an evolution trainer needs to continue exactly."""

    step: jax.Array  # () int32: generations completed
    params: dict  # the exported model: NES theta, the GA's best ever
    strategy: Any  # NESState or GAState
    anneal: annealing.AnnealState
    key: jax.Array  # raw key data of the run's base key
    data_position: jax.Array  # () int32: training batches consumed
    best_score: jax.Array  # () float32: best validation score so far
    # () int32: did the last validation improve the best score (1/0), or -1 when
    # none ran since the last generation (NES's patience rule reads it)
    validation_improved: jax.Array


def anneal_config(es_config) -> annealing.AnnealConfig:
    """The static annealing settings of `config.es`."""
    return annealing.AnnealConfig(
        schedule_start=es_config.schedule_start,
        schedule_limit=es_config.schedule_limit,
        patience=es_config.patience,
        stdev_divisor=es_config.stdev_divisor,
        bs_multiplier=es_config.bs_multiplier,
        stepsize_divisor=es_config.stepsize_divisor,
    )


def noise_source(es_config, seed: int) -> noise_lib.NoiseSource:
    """A shared noise table (`es.noise="table"`) or noise drawn from member keys."""
    if es_config.get("noise_rank", 0) > 0:  # low-rank factors come from keys
        return noise_lib.generated()
    if es_config.noise == "table":
        return noise_lib.shared_table(seed, es_config.noise_table_size)
    if es_config.noise == "generated":
        return noise_lib.generated(es_config.noise_chunk_size)
    raise InputError(
        f"config es.noise={es_config.noise!r} is unknown; valid: table, generated"
    )


def train_and_val_rewards(es_config, train, val, vocab_size: int):
    """CIDEr-D (+ BLEU-4) rewards against the train and validation references,
    both with the train split's document frequencies (or `es.cached_tokens`)."""
    path = es_config.cached_tokens
    df = (
        df_lib.load(path)
        if path
        else rewards.train_document_frequency(train.labels, train.num_refs)
    )
    make = functools.partial(
        rewards.build_reward,
        vocab_size=vocab_size,
        df=df,
        cider_weight=es_config.cider_reward_weight,
        bleu_weight=es_config.bleu_reward_weight,
        include_eos=es_config.include_eos,
    )
    return make(train), make(val)


def validation_batch(split, num_items: int, need_att: bool) -> dict:
    """Features and split rows of the first `num_items` images (-1: all)."""
    count = len(split.image_ids) if num_items < 0 else num_items
    rows = np.arange(min(count, len(split.image_ids)))
    return dict(gather_features(split, rows, need_att), index=rows)


def validation_fn(decoder, reward, batch: dict, max_len: int):
    """`fn(params, key) -> 100 x mean CIDEr-D` of greedy captions of `batch`."""
    greedy = fitness.make_fitness("greedy", decoder, reward, max_len)
    return lambda params, key: greedy(params, key, batch)


def mutation_scale_fn(es_config, decoder, num_params: int):
    """`fn(params, batch) -> (N,) or None`: the safe-mutation noise factor."""
    kind = es_config.safe_mutation
    vector = None
    if kind == "SM-VECTOR":
        vector = safe_mutations.load_sensitivity_vector(
            es_config.sensitivity_file, num_params, es_config.sm_underflow
        )

    def scale_fn(params, batch):
        feats = {k: batch[k] for k in fitness.FEATURE_KEYS if k in batch}
        outputs_fn = safe_mutations.greedy_logprob_groups(decoder, feats)
        return safe_mutations.mutation_scale(
            kind, params, outputs_fn, es_config.sm_underflow, vector
        )

    return None if kind == "" else scale_fn


def new_state(config, dataset, strategy, make_params, arch=None) -> EvoState:
    """Generation 0 around the initial params (fresh or `ckpt.init_from`; with
    architecture mutation, of bucket 0 padded to the widest bucket)."""
    params_key, run_key = jax.random.split(jax.random.key(config.seed))
    if arch is None:
        params = common.initial_params(config, dataset, params_key)
    else:
        base_config = architecture.bucket0_config(arch, config)
        base = common.initial_params(base_config, dataset, params_key)
        params = architecture.padded_params(arch, base)
    strategy_state = strategy.init(params, config.es.sigma)
    state = EvoState(
        step=jnp.zeros((), jnp.int32),
        params=make_params(strategy, strategy_state),
        strategy=strategy_state,
        anneal=annealing.init(config.es.batch_size),
        key=jax.random.key_data(run_key),
        data_position=jnp.zeros((), jnp.int32),
        best_score=jnp.full((), -jnp.inf, jnp.float32),
        validation_improved=jnp.full((), -1, jnp.int32),
    )
    return state  # placed on the run's mesh by `common.restore_or_make`


def generation(
    strategy,
    decoder,
    fitness_name: str,
    max_len: int,
    scale_fn,
    after_tell,
    state: EvoState,
    batch: dict,
    reward,
    source,
    arch_masks=None,
    table=None,
):
    """One generation; pure. Returns (state, metrics, improved or None).

    arch_masks (K, N): the GA's width-bucket masks (`train/architecture.py`):
    each child's noise is masked to its parent's bucket.
    table: the train split's features (`train_table`) when every antithetic pair
    draws its own batch (`es.single_batch=False`; `batch` then sets the size and
    feeds the safe-mutation sensitivity); None: every member scores `batch`."""
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    ask_key, fitness_key, after_key = jax.random.split(key, 3)
    params = strategy.params(state.strategy)
    scale = None if scale_fn is None else scale_fn(params, batch)
    if arch_masks is not None:
        scale = mutation.mutation_scale(state.strategy.parents, arch_masks, scale)
    population, strategy_state = strategy.ask(ask_key, state.strategy, scale)
    fitness_fn = fitness.make_fitness(fitness_name, decoder, reward, max_len)
    if table is not None:
        fitness_fn = fitness.on_own_batches(fitness_fn, table)
    fitness_values = strategy.evaluate(
        functools.partial(fitness_fn, batch=batch), population, fitness_key, source
    )
    strategy_state, metrics = strategy.tell(
        population, fitness_values, strategy_state, source
    )
    strategy_state, extra, improved = after_tell(strategy_state, after_key)
    metrics = {f"es/{k}": v for k, v in (metrics | extra).items()}
    state = state.replace(
        step=state.step + 1,
        params=strategy.params(strategy_state),
        strategy=strategy_state,
        data_position=state.data_position + 1,
    )
    return state, metrics, improved


class EvolutionLoop:
    """Binds a strategy to a run: the jitted generation, batches and annealing."""

    def __init__(self, run, strategy, reward, source, after_tell, arch=None):
        config = run.config
        # replicated over the run's mesh once; the strategy splits the members
        replicated = run.state_sharding
        self.run, self.strategy, self.arch = run, strategy, arch
        self.reward = parallel.replicate(reward, replicated)
        self.source = parallel.replicate(source, replicated)
        self.arch_masks = None
        if arch is not None:
            self.arch_masks = parallel.replicate(arch.buckets.masks, replicated)
        self.table = None
        if not config.es.get("single_batch", True):
            self.table = parallel.replicate(
                train_table(run.train, run.decoder.uses_att), replicated
            )
        self.anneal_config = anneal_config(config.es)
        scale_fn = mutation_scale_fn(config.es, run.decoder, strategy.num_params)
        one_generation = functools.partial(
            generation,
            strategy,
            lowrank.population_decoder(strategy, run.decoder),
            config.es.fitness,
            config.data.max_length,
            scale_fn,
            after_tell,
        )
        if strategy.axis is not None:  # one program per device, members split
            one_generation = parallel.spmd(one_generation, run.mesh)
        self.generation = jax.jit(
            one_generation,
            in_shardings=replicated,
            out_shardings=replicated,
            donate_argnums=0,
        )
        self.anneal = jax.jit(
            functools.partial(annealing.anneal, self.anneal_config),
            out_shardings=replicated,
        )

    def batch(self, state: EvoState) -> dict:
        """The training batch at the state's data position and batch size."""
        config = self.run.config
        batch = train_batch(
            self.run.train,
            config.seed,
            int(state.data_position),
            int(state.anneal.batch_size),
            1,
            self.run.decoder.uses_att,
        )
        batch.pop("labels")  # the reward holds every image's references
        return batch

    def step(self, state: EvoState, position, step: int):
        """`fit`'s step_fn: one generation, then annealing for the next."""
        del position, step  # the state carries both
        state, metrics, improved = self.generation(
            state,
            self.batch(state),
            self.reward,
            self.source,
            self.arch_masks,
            self.table,
        )
        if improved is None:  # NES: the last validation, if one ran
            flag = int(state.validation_improved)
            improved = None if flag < 0 else jnp.asarray(flag > 0)
            state = state.replace(validation_improved=jnp.full((), -1, jnp.int32))
        anneal_state, strategy_state, _ = self.anneal(
            state.anneal, state.strategy, state.step, improved
        )
        metrics["es/batch_size"] = state.anneal.batch_size
        if self.arch is not None:  # widen kept offspring for the next generation
            strategy_state, widths = architecture.widen_kept_offspring(
                self.arch,
                strategy_state,
                self.strategy.num_elites,
                self.run.config.seed,
                int(state.step),
            )
            metrics |= {f"es/{k}": v for k, v in widths.items()}
        state = state.replace(anneal=anneal_state, strategy=strategy_state)
        return state, metrics


TABLE_LIMIT_BYTES = 8 * 2**30


def train_table(split, need_att: bool) -> dict:
    """The split's features for `es.single_batch=False` (every pair draws its own
    batch on the device); refuses more than `TABLE_LIMIT_BYTES` with a clear error
    (attention features of a large split)."""
    rows = np.arange(len(split.image_ids))
    size = split.fc.nbytes
    if need_att:  # measured on the first image, before reading them all
        first = gather_features(split, rows[:1], need_att)
        size += len(rows) * sum(first[k].nbytes for k in first if k != "fc")
    if size > TABLE_LIMIT_BYTES:
        raise InputError(
            f"config es.single_batch=False puts the train split's features on the "
            f"device: {size / 2**30:.1f} GiB for {len(rows)} images, more than "
            f"{TABLE_LIMIT_BYTES / 2**30:.0f} GiB; use es.single_batch=True (one "
            "batch for all pairs) or a model without region features"
        )
    return gather_features(split, rows, need_att)


def check_budget(es_config) -> None:
    """Refuses settings that cannot run, naming the field."""
    if es_config.num_steps < 1:
        raise InputError(f"config es.num_steps={es_config.num_steps} must be >= 1")
    if es_config.batch_size < 1:
        raise InputError(f"config es.batch_size={es_config.batch_size} must be >= 1")
    fitness.get_fitness(es_config.fitness)


def ciderd_scores_fn(run, reward, num_items: int):
    """extra_fn for `Run.validate`: {'CIDEr-D': mean CIDEr-D of greedy captions}."""
    batch = validation_batch(
        run.dataset.splits[run.config.evals.split], num_items, run.decoder.uses_att
    )
    score = jax.jit(
        validation_fn(run.decoder, reward, batch, run.config.data.max_length)
    )
    return lambda params: {"CIDEr-D": float(score(params, None)) / 100.0}


def captions_fn(config, num_val_images: int):
    """`fit`'s captions_fn: captions the next generation decodes, P members x B
    images (x 2 for the `self_critical` fitness: a sample and the greedy caption),
    plus, for the GA, C elite candidates x its validation images."""
    es = config.es
    per_image = 2 if es.fitness == "self_critical" else 1
    if config.trainer == "es":
        members = es.population_size
        count = num_val_images if es.num_val_items < 0 else es.num_val_items
        extra = es.num_elite_candidates * min(count, num_val_images)
    else:
        members, extra = 2 * es.num_pairs, 0
    return lambda state: members * per_image * int(state.anneal.batch_size) + extra


def make_validate(run, reward):
    """`fit`'s validate_fn: the usual scores plus on-device CIDEr-D; records whether
    the best score improved (NES's patience rule)."""
    extra_fn = ciderd_scores_fn(run, reward, run.config.evals.num_images)

    def record_improvement(state: EvoState, scores: dict) -> EvoState:
        better = scores[run.best_key] > float(state.best_score)
        return state.replace(validation_improved=jnp.asarray(int(better), jnp.int32))

    def validate(state: EvoState, writer, step: int):
        # the flag is saved with the checkpoint: a resume reads it as the
        # uninterrupted run does
        return run.validate(state, writer, step, extra_fn, record_improvement)

    return validate


def train(config, workdir: str, build_strategy, make_params, after_tell_fn) -> dict:
    """The evolution loop shared by NES and ES; returns the last validation scores.

    build_strategy(config, template_params, axis) -> strategy (its members split
    over the mesh axis `axis`, or None);
    make_params(strategy, strategy_state) -> the params pytree to export;
    after_tell_fn(run, strategy, val_reward) -> after_tell(strategy_state, key).
    """
    check_budget(config.es)
    parallel.initialize(config.mesh)
    dataset, decoder = common.setup_data_and_decoder(
        config, ("train", config.evals.split)
    )
    arch = architecture.from_config(config, dataset.vocab_size)
    if arch is not None:  # the run's model is the widest width bucket
        config = architecture.padded_config(arch)
        decoder = build_decoder(config.model, dataset.vocab_size)
    common.save_config(config, workdir)
    mesh = parallel.make_mesh(config.mesh, parallel.POPULATION)
    run = common.Run(
        config, workdir, dataset, decoder, 0, config.es.num_steps, mesh=mesh
    )
    val = dataset.splits[config.evals.split]
    reward, val_reward = train_and_val_rewards(
        config.es, run.train, val, dataset.vocab_size
    )
    abstract = jax.eval_shape(
        lambda: init_params(config.model, dataset.vocab_size, jax.random.key(0))
    )
    template = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), abstract)
    split = mesh.shape[parallel.POPULATION] > 1
    strategy = build_strategy(config, template, parallel.POPULATION if split else None)
    restored_step = run.manager.latest_step()
    state = common.restore_or_make(
        run, lambda cfg: new_state(cfg, dataset, strategy, make_params, arch)
    )
    state = rollback.scale_restored_sigma(state, config, restored_step)
    source = noise_source(config.es, config.seed)
    after_tell = after_tell_fn(run, strategy, val_reward)
    loop = EvolutionLoop(run, strategy, reward, source, after_tell, arch)
    return common.fit(
        run,
        state,
        loop.step,
        lambda position: position,
        lambda step: {},
        config.trainer,
        loss_key="es/fitness_mean",
        validate_fn=make_validate(run, val_reward),
        validate_first=True,
        captions_fn=captions_fn(config, len(val.image_ids)),
    )
