"""Sharded == unsharded on the 4 fake CPU devices of conftest: an XE step, an SCST
step (batch split over `data`, params replicated) and an NES and an ES generation
(members split over `population`), each against the trainer's own step function
jitted plainly on one device."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.es import get_config as es_config
from configs.scst import get_config as scst_config
from nic_jax import parallel
from nic_jax.data.batches import train_batch
from nic_jax.evolution import noise as noise_lib
from nic_jax.evolution import population as population_lib
from nic_jax.models.functional import init_params
from nic_jax.train import common, es, evolution, nes, scst, xe
from nic_jax.train.optim import make_optimizer

ATOL = 1e-5


@pytest.fixture(scope="module")
def tiny():
    """configs/scst.py:tiny with 8 images a batch (4 devices x 2), data, decoder."""
    config = scst_config("tiny").copy_and_resolve_references()
    config.data.batch_size = 8
    config.es.batch_size = 4
    dataset, decoder = common.setup_data_and_decoder(config, ("train", "val"))
    return config, dataset, decoder


def _assert_close(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=ATOL)


def _assert_split_over(array, mesh, axis):
    """The array's leading axis really is split over the mesh's devices."""
    shards = {str(shard.index) for shard in array.addressable_shards}
    assert array.sharding.spec[0] == axis
    assert len(shards) == mesh.shape[axis] == 4


def _two_steps(update, state, batches, extra):
    metrics = []
    for batch in batches:
        state, step_metrics = update(state, batch, extra)
        metrics.append(step_metrics)
    return jax.device_get((state, metrics))


def _gradient_steps(config, dataset, decoder, step_fn, extra, seq_per_img):
    """Two updates on one device (plain jit) and data-parallel over 4 devices."""
    optimizer = make_optimizer(config.optim, 10)
    state = common.new_train_state(config, dataset, optimizer)
    step = functools.partial(step_fn, decoder, optimizer)
    batches = [
        train_batch(dataset.splits["train"], 0, p, 8, seq_per_img, False)
        for p in range(2)
    ]
    if seq_per_img == 1:
        batches = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    single = _two_steps(jax.jit(step), state, batches, extra)
    mesh = parallel.sub_mesh(4, parallel.DATA)
    sharded = [parallel.global_batch(b, mesh, parallel.DATA) for b in batches]
    _assert_split_over(sharded[0]["fc"], mesh, parallel.DATA)
    update = common.jit_data_parallel(step, mesh)
    state = jax.device_put(state, parallel.replicated(mesh))
    extra = parallel.replicate(extra, parallel.replicated(mesh))
    return single, _two_steps(update, state, sharded, extra)


def test_xe_steps_sharded_equal_unsharded(tiny):
    config, dataset, decoder = tiny
    single, sharded = _gradient_steps(
        config, dataset, decoder, xe.train_step, jnp.float32(0.25), 5
    )
    _assert_close(single, sharded)
    assert single[0].step == 2 and np.isfinite(single[1][-1]["train/loss"])


def test_scst_steps_sharded_equal_unsharded(tiny):
    config, dataset, decoder = tiny
    train = dataset.splits["train"]
    reward, _ = evolution.train_and_val_rewards(
        config.scst, train, train, dataset.vocab_size
    )
    step_fn = functools.partial(
        scst.train_step,
        num_samples=config.scst.num_samples,
        baseline="greedy",
        max_len=config.data.max_length,
    )
    single, sharded = _gradient_steps(config, dataset, decoder, step_fn, reward, 1)
    _assert_close(single, sharded)
    # a real policy gradient: the samples earned different rewards
    assert single[1][0]["scst/advantage_std"] > 0


def _evolution_config(trainer, population):
    config = es_config("tiny").copy_and_resolve_references()
    config.trainer = trainer
    config.es.batch_size = 4
    config.es.num_pairs = population // 2
    config.es.population_size = population
    config.es.eval_chunk_size = 3
    # NES regenerates noise from member keys; the GA reads a replicated table
    config.es.noise = "generated" if trainer == "nes" else "table"
    config.mesh.population = -1
    return config


def _generation(config, dataset, decoder, tmp_path, mesh, trainer_module):
    """One generation of the trainer's `EvolutionLoop` (annealing included)."""
    run = common.Run(
        config, str(tmp_path), dataset, decoder, 0, config.es.num_steps, mesh=mesh
    )
    val = dataset.splits["val"]
    reward, val_reward = evolution.train_and_val_rewards(
        config.es, run.train, val, dataset.vocab_size
    )
    abstract = jax.eval_shape(
        lambda: init_params(config.model, dataset.vocab_size, jax.random.key(0))
    )
    template = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), abstract)
    split = mesh.shape[parallel.POPULATION] > 1
    axis = parallel.POPULATION if split else None
    strategy = trainer_module.build_strategy(config, template, axis)
    make_params = lambda strategy, state: strategy.params(state)
    state = common.restore_or_make(
        run, lambda cfg: evolution.new_state(cfg, dataset, strategy, make_params)
    )
    after_tell = (
        es.elite_validation(run, strategy, val_reward)
        if trainer_module is es
        else nes._no_validation(run, strategy, val_reward)
    )
    source = evolution.noise_source(config.es, config.seed)
    loop = evolution.EvolutionLoop(run, strategy, reward, source, after_tell)
    state, metrics = loop.step(state, None, 0)
    return jax.device_get((state, metrics))


@pytest.mark.parametrize(
    "trainer, single_batch", [("nes", True), ("es", True), ("nes", False)]
)
def test_generation_sharded_equals_unsharded(tiny, tmp_path, trainer, single_batch):
    """P = 10 members padded to 12 over 4 devices (3 each); NES builds its update
    both from per-device partial sums (psum) and on every device (replicated);
    with pair batches (`es.single_batch=False`) every device holds the split."""
    _, dataset, decoder = tiny
    config = _evolution_config(trainer, 10)
    config.es.single_batch = single_batch
    module = {"nes": nes, "es": es}[trainer]
    four = parallel.make_mesh(config.mesh, parallel.POPULATION)
    assert four.shape[parallel.POPULATION] == 4
    single = _generation(
        config, dataset, decoder, tmp_path / "one", parallel.sub_mesh(1), module
    )
    state, metrics = single
    assert state.step == 1 and metrics["es/fitness_std"] > 0  # members differ
    both = trainer == "nes" and single_batch
    for nes_gradient in ["psum", "replicated"] if both else ["psum"]:
        config.mesh.nes_gradient = nes_gradient
        workdir = tmp_path / nes_gradient
        sharded = _generation(config, dataset, decoder, workdir, four, module)
        _assert_close(single, sharded)


def test_evaluate_runs_each_member_on_its_own_device():
    """The member axis is really split: device d scores members of its slice."""
    mesh = parallel.sub_mesh(4)
    population = population_lib.antithetic(
        jnp.zeros(3), 0.1, jax.random.key(0), num_pairs=5
    )

    def fitness_fn(params, key):
        del params, key
        return jax.lax.axis_index(parallel.POPULATION).astype(jnp.float32)

    evaluate = lambda population: population_lib.evaluate(
        fitness_fn,
        lambda flat: flat,
        population,
        noise_lib.generated(),
        jax.random.key(1),
        2,
        parallel.POPULATION,
    )
    owner = jax.jit(parallel.spmd(evaluate, mesh))(population)
    # 10 members padded to 12: 3 per device, in order
    np.testing.assert_array_equal(owner, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3][:10])
