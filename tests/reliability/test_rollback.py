"""With `numerics.max_rollbacks`, a non-finite value restarts the run from its last
checkpoint with smaller step sizes, recorded in the workdir, and a rolled-back run
ends where a run started with those step sizes ends, also after a kill."""

import shutil

import numpy as np
import pytest

from nic_jax.train import checkpoint, numerics, rollback
from tests.reliability import harness

HUGE = 1e38  # sigma or learning rate: the params overflow within two steps
TINY = 1e-40  # the factor that brings it back to 1e-2 (in float64)


def _rollbacks(workdir) -> list:
    return rollback.load(str(workdir))


def test_scaled_config_multiplies_every_step_size_by_every_factor():
    config = harness.make_config("nes")
    records = [dict(factor=0.5, restart_step=4), dict(factor=0.1, restart_step=8)]
    scaled = rollback.scaled_config(config, records)
    assert scaled.es.sigma == pytest.approx(config.es.sigma * 0.05)
    assert scaled.es.learning_rate == pytest.approx(config.es.learning_rate * 0.05)
    assert scaled.es.num_pairs == config.es.num_pairs
    assert rollback.scaled_config(config, []) is config


def test_restored_sigma_gets_the_factors_of_later_rollbacks_only():
    records = [dict(factor=0.5, restart_step=4), dict(factor=0.1, restart_step=8)]
    rollbacks = rollback.scaled_config(harness.make_config("es"), records)
    rollbacks = rollbacks.numerics.rollbacks
    assert rollback.restored_sigma_factor(rollbacks, 4) == pytest.approx(0.05)
    assert rollback.restored_sigma_factor(rollbacks, 8) == pytest.approx(0.1)
    assert rollback.restored_sigma_factor(rollbacks, 10) == 1.0  # saved after both


def test_ga_rolls_back_to_its_checkpoint_and_ends_as_a_run_with_that_sigma(
    tmp_path, tally
):
    """sigma 1e38 makes the first children's params infinite; the rollback restores
    the step-0 checkpoint with sigma 1e-2. Then the workdir as a kill leaves it
    right after the rollback (only the step-0 checkpoint, written before it) and
    later (a checkpoint written after it, whose sigma is already scaled) resumes
    to the same end without a second rollback."""
    keep = {"ckpt.max_to_keep": 10}  # step 0 stays for the kill cases
    settings = {"numerics.max_rollbacks": 1, "numerics.rollback_factor": TINY}
    rolled = tmp_path / "rolled"
    harness.train_in_process("es", rolled, **{"es.sigma": HUGE}, **settings, **keep)
    tally["faults_injected"] += 1
    (record,) = _rollbacks(rolled)
    assert record["restart_step"] == 0 and record["factor"] == TINY
    assert record["step"] >= 1 and "non-finite parameters" in record["error"]
    assert harness.complete_steps(rolled) == [0, 2, 4, 6, 8]

    reference = tmp_path / "reference"
    sigma = float(np.float32(HUGE)) * TINY  # what the restored sigma becomes
    harness.train_in_process("es", reference, **{"es.sigma": sigma}, **keep)
    harness.assert_same_run(reference, rolled)
    tally["checkpoints_verified"] += 1

    for last_kept in (0, 4):  # killed before / after the first save after it
        killed = tmp_path / f"killed_{last_kept}"
        shutil.copytree(rolled, killed)
        for step in harness.complete_steps(killed):
            if step > last_kept:
                shutil.rmtree(checkpoint.checkpoint_dir(str(killed)) + f"/{step}")
        harness.train_in_process("es", killed, **{"es.sigma": HUGE}, **settings, **keep)
        tally["runs_resumed"] += 1
        assert len(_rollbacks(killed)) == 1  # resumed with it, not rolled back again
        harness.assert_same_run(reference, killed)
        tally["checkpoints_verified"] += 1


def test_xe_without_a_checkpoint_restarts_from_step_0_with_the_smaller_rate(
    tmp_path, tally
):
    settings = {"numerics.max_rollbacks": 1, "numerics.rollback_factor": TINY}
    rolled = tmp_path / "rolled"
    harness.train_in_process("xe", rolled, **{"optim.learning_rate": HUGE}, **settings)
    tally["faults_injected"] += 1
    (record,) = _rollbacks(rolled)
    assert record["restart_step"] == rollback.NO_CHECKPOINT
    assert "train/loss" in record["error"]
    reference = tmp_path / "reference"
    harness.train_in_process("xe", reference, **{"optim.learning_rate": HUGE * TINY})
    harness.assert_same_run(reference, rolled)
    tally["checkpoints_verified"] += 1


@pytest.mark.skipif(not harness.FULL, reason="full version: NIC_JAX_FULL_FAULTS=1")
def test_nes_stops_once_its_rollbacks_are_spent(tmp_path, tally):
    """A learning rate too large for two halvings: two rollbacks, then the error."""
    settings = {"numerics.max_rollbacks": 2, "numerics.rollback_factor": 0.5}
    with pytest.raises(numerics.NonFiniteError, match=r"after 2 rollback\(s\)"):
        harness.train_in_process(
            "nes", tmp_path, **{"es.learning_rate": HUGE}, **settings
        )
    tally["faults_injected"] += 3
    records = _rollbacks(tmp_path)
    assert [r["restart_step"] for r in records] == [0, 0]
    _, params, _, _ = harness.restore(tmp_path)  # the step-0 checkpoint is intact
    assert all(np.isfinite(np.asarray(x)).all() for x in _leaves(params))


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)
