"""The mesh from config, the placement helpers, the per-device member split and
when jax.distributed is asked for, on the 4 fake CPU devices of conftest."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from configs.default import get_config
from nic_jax import parallel
from nic_jax.data.batches import train_batch
from nic_jax.errors import InputError
from nic_jax.evolution.ranks import centered_ranks
from nic_jax.parallel import distributed, members
from nic_jax.train import common


def _mesh_config(**kw):
    config = get_config("tiny").mesh.copy_and_resolve_references()
    config.update(kw)
    return config


def test_mesh_axes_sizes_and_type():
    mesh = parallel.make_mesh(_mesh_config(), parallel.POPULATION)
    assert mesh.axis_names == ("population",) and mesh.shape["population"] == 4
    assert mesh.axis_types == (AxisType.Auto,)
    data = parallel.make_mesh(_mesh_config(), parallel.DATA, 8, "data.batch_size")
    assert data.shape["data"] == 4
    # a batch of 10 does not split 4 ways: the most devices that divide it
    assert parallel.make_mesh(_mesh_config(), "data", 10, "b").shape["data"] == 2
    assert parallel.make_mesh(_mesh_config(population=3), "population").size == 3


@pytest.mark.parametrize(
    "overrides, axis, divides, words",
    [
        ({"data": 5}, "data", None, ["mesh.data=5", "1..4"]),
        ({"data": 0}, "data", None, ["mesh.data=0"]),
        ({"data": 4}, "data", 10, ["mesh.data=4", "data.batch_size=10"]),
        ({}, "model", None, ["'model'", "data", "population"]),
    ],
)
def test_bad_mesh_settings_name_the_field(overrides, axis, divides, words):
    with pytest.raises(InputError) as error:
        parallel.make_mesh(_mesh_config(**overrides), axis, divides, "data.batch_size")
    for word in words:
        assert word in str(error.value)


def test_auto_axes_rank_a_sharded_population_explicit_axes_do_not():
    """Why the mesh is Auto: ranking (argsort) a fitness vector split over an
    Explicit axis is a type error; Auto lets XLA gather the P scalars."""
    fitness = jax.random.normal(jax.random.key(0), (16,))
    expected = centered_ranks(fitness)
    for axis_type, works in [(AxisType.Auto, True), (AxisType.Explicit, False)]:
        mesh = jax.make_mesh((4,), ("population",), axis_types=(axis_type,))
        split = jax.device_put(fitness, NamedSharding(mesh, P("population")))
        with jax.set_mesh(mesh):
            if works:
                np.testing.assert_allclose(
                    jax.jit(centered_ranks)(split), expected, atol=1e-6
                )
            else:
                with pytest.raises(Exception, match="sort"):
                    jax.jit(centered_ranks)(split)


def test_map_and_sum_over_members_equal_one_device():
    """13 members over 4 devices (4 each, 3 padding slots): the per-device split
    gives what one device computes, and padding adds nothing."""
    mesh = parallel.sub_mesh(4)
    table = jax.random.normal(jax.random.key(1), (13, 5))
    weights = jnp.arange(13.0) - 6.0
    member_fn = lambda i: (jnp.sin(table[i]).sum(), i)
    weighted = lambda w, rows: w @ rows

    def program(table, weights, axis):
        values = members.map_members(member_fn, 13, 3, axis)
        total = members.sum_over_members(weighted, (weights, table), axis)
        return values, total

    one = jax.jit(lambda t, w: program(t, w, None))(table, weights)
    split = jax.jit(
        parallel.spmd(lambda t, w: program(t, w, parallel.POPULATION), mesh)
    )(table, weights)
    np.testing.assert_array_equal(split[0][1], np.arange(13))  # in member order
    np.testing.assert_allclose(split[0][0], one[0][0], rtol=1e-6)
    np.testing.assert_allclose(split[1], one[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one[1], np.asarray(weights) @ np.asarray(table), 1e-5)


def test_batch_placement_helpers():
    mesh = parallel.sub_mesh(4, parallel.DATA)
    assert parallel.process_rows(8) == slice(0, 8)  # one process owns every row
    local = {"fc": np.arange(24.0).reshape(8, 3), "index": np.arange(8)}
    batch = parallel.global_batch(local, mesh, parallel.DATA)
    assert batch["fc"].sharding.is_equivalent_to(parallel.split(mesh, "data"), 2)
    np.testing.assert_array_equal(batch["fc"], local["fc"])
    replicated = parallel.replicate(jnp.ones(3), parallel.replicated(mesh))
    assert len(replicated.sharding.device_set) == 4
    copy = parallel.local_copy({"w": replicated, "n": 3})
    assert copy["w"].devices() == {jax.devices()[0]} and copy["n"] == 3


def test_process_shares_of_a_batch_make_up_the_batch():
    config = get_config("tiny").copy_and_resolve_references()
    dataset, _ = common.setup_data_and_decoder(config, ("train",))
    split = dataset.splits["train"]
    whole = train_batch(split, 0, 3, 10, 5, False)
    for count in (2, 5):
        share = 10 // count
        shares = [
            train_batch(split, 0, 3, 10, 5, False, slice(i * share, (i + 1) * share))
            for i in range(count)
        ]
        for key, value in whole.items():
            np.testing.assert_array_equal(
                np.concatenate([s[key] for s in shares]), value, err_msg=key
            )


@pytest.mark.parametrize(
    "environ, asked",
    [
        ({}, False),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, False),  # sbatch, one task
        ({"SLURM_STEP_ID": "0", "SLURM_NTASKS": "4"}, True),  # srun, four tasks
        ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234"}, True),
        ({"NIC_JAX_DISTRIBUTED": "1"}, True),
        ({"NIC_JAX_DISTRIBUTED": "0"}, False),
    ],
)
def test_distributed_only_when_asked(environ, asked):
    assert distributed.requested(_mesh_config(), environ) is asked
    assert distributed.requested(_mesh_config(distributed=True), environ)
    if not asked:  # nothing to join: returns without touching jax.distributed
        assert distributed.initialize(_mesh_config(), environ) is False


def test_launcher_variables_become_initialize_arguments():
    environ = {
        "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
    }
    assert distributed._explicit_arguments(environ) == {
        "coordinator_address": "127.0.0.1:1234",
        "num_processes": 2,
        "process_id": 1,
    }
    assert distributed._explicit_arguments({}) == {}  # SLURM / TPU: JAX detects
