"""A non-finite loss, reward, fitness or parameter stops the run, naming the step
and the quantity, before anything non-finite is saved."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from nic_jax.train import evolution, numerics, xe
from tests.reliability import harness


def test_check_metrics_names_the_first_bad_step_and_every_bad_quantity():
    finite = {"train/loss": jnp.float32(2.0), "scst/reward_mean": jnp.float32(0.5)}
    bad = {
        "train/loss": jnp.float32(math.nan),
        "scst/reward_mean": jnp.float32(-np.inf),
    }
    numerics.check_metrics([finite, finite], 12, "train/loss")
    with pytest.raises(numerics.NonFiniteError) as raised:
        numerics.check_metrics([finite, bad, bad], 12, "train/loss")
    message = str(raised.value)
    assert "non-finite train/loss=nan, scst/reward_mean=-inf at step 11;" in message
    assert isinstance(raised.value, FloatingPointError)


def test_check_params_names_the_bad_leaves():
    params = {"embed": jnp.ones((3, 2)), "lstm": {"w": jnp.zeros(4)}}
    numerics.check_params(params, 5)
    params["lstm"]["w"] = params["lstm"]["w"].at[2].set(jnp.inf)
    with pytest.raises(numerics.NonFiniteError, match=r"after step 5 \(in \['lstm'\]"):
        numerics.check_params(params, 5)


def test_xe_stops_at_the_step_whose_loss_is_nan(tmp_path, monkeypatch, tally):
    real = xe.train_batch

    def nan_features_at_position_4(split, seed, position, *args):
        batch = real(split, seed, position, *args)
        if position == 4:  # the 5th update
            batch["fc"] = np.full_like(batch["fc"], np.nan)
        return batch

    monkeypatch.setattr(xe, "train_batch", nan_features_at_position_4)
    with pytest.raises(numerics.NonFiniteError, match=r"train/loss=nan.* at step 5;"):
        harness.train_in_process("xe", tmp_path)
    tally["faults_injected"] += 1
    assert harness.complete_steps(tmp_path) == [3]  # step 6 was never saved
    _, params, _, _ = harness.restore(tmp_path)
    assert all(np.isfinite(np.asarray(x)).all() for x in _leaves(params))
    assert all(
        math.isfinite(v) for line in harness.metrics(tmp_path) for v in line.values()
    )


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def _nan_train_reward(monkeypatch):
    real = evolution.train_and_val_rewards

    def rewards(*args):
        train, val = real(*args)
        return train.replace(cider_weight=math.nan), val

    monkeypatch.setattr(evolution, "train_and_val_rewards", rewards)


NAN_RUNS = [("nes", "es/fitness_mean")]
if harness.FULL:  # the short version (CI) compiles one evolution trainer
    NAN_RUNS += [("scst", "scst/reward_mean"), ("es", "es/fitness")]


@pytest.mark.parametrize("trainer, quantity", NAN_RUNS)
def test_nan_reward_or_fitness_stops_the_run(
    trainer, quantity, tmp_path, monkeypatch, tally
):
    _nan_train_reward(monkeypatch)
    with pytest.raises(numerics.NonFiniteError, match=rf"{quantity}\S*=nan.* step 1;"):
        harness.train_in_process(trainer, tmp_path)
    tally["faults_injected"] += 1
    assert max(harness.complete_steps(tmp_path), default=0) == 0


@pytest.mark.skipif(not harness.FULL, reason="full version: NIC_JAX_FULL_FAULTS=1")
def test_ga_params_blown_up_by_sigma_stop_the_run(tmp_path, tally):
    """Only the params turn non-finite (fitness of inf params is still finite)."""
    with pytest.raises(numerics.NonFiniteError, match=r"non-finite parameters after"):
        harness.train_in_process("es", tmp_path, **{"es.sigma": 1e38})
    tally["faults_injected"] += 1
    step, params, _, _ = harness.restore(tmp_path)
    assert all(np.isfinite(np.asarray(x)).all() for x in _leaves(params))
