"""SIGKILL at random points of XE, SCST, NES and ES runs, then the same command
again, until the run ends: it ends where an uninterrupted run ends, and no kill
loses a finished checkpoint or a logged metric before it.

Kill points are drawn from a seeded generator (`NIC_JAX_FAULT_SEED`, printed on
failure): at a random time from the start (during start-up, compilation or
training), or a random time after a randomly chosen checkpoint is complete (in
the middle of a step, of a validation or of the next save). The short version
(CI) kills one NES run once; `NIC_JAX_FULL_FAULTS=1` kills every trainer three
times. One kill is placed exactly: in the save of the first validation, after
its metrics were logged. XE is killed mid-save in `test_checkpoints.py` too.
"""

import math
import os
import random
import signal
import time

import jax
import numpy as np
import pytest

from tests.reliability import harness

KILLS = 3 if harness.FULL else 1
TRAINERS = ("xe", "scst", "nes", "es") if harness.FULL else ("nes",)
SEED = int(os.environ.get("NIC_JAX_FAULT_SEED", time.time_ns() % 100_000))


def _checkpoint_steps(trainer: str) -> list:
    config = harness.make_config(trainer)
    first = 0 if trainer in ("nes", "es", "scst") else config.ckpt.every_steps
    every = config.ckpt.every_steps
    return list(range(first, harness.total_steps(trainer) + 1, every))


def _kill_point(rng: random.Random, trainer: str, latest: int):
    """(checkpoint step to reach, then seconds to wait), or None when no
    checkpoint is left before the last one. Step -1: from the start."""
    later = [s for s in _checkpoint_steps(trainer)[:-1] if s > latest]
    if not later:
        return None
    if rng.random() < 0.25:  # anywhere from the start, start-up included
        return -1, rng.uniform(0.5, 12.0)
    return rng.choice(later), rng.uniform(0.0, 0.5)


def _latest(workdir) -> int:
    return max(harness.complete_steps(workdir), default=-1)


def _kill_once(args, workdir, point, guard: int, tally) -> tuple[bool, str]:
    """Runs the command until the kill point, or until checkpoint `guard` is
    complete (so that a kill never misses the run's end); (killed, output)."""
    proc = harness.start(args)
    step, delay = point
    if not harness.wait_for(lambda: _latest(workdir) >= step, proc):
        return False, harness.output(proc)
    deadline = time.time() + delay
    while time.time() < deadline and _latest(workdir) < guard:
        if proc.poll() is not None:
            return False, harness.output(proc)
        time.sleep(0.01)
    text = harness.kill(proc)
    killed = proc.returncode == -signal.SIGKILL  # not ended on its own just before
    tally["faults_injected"] += killed
    return killed, text


# -inf until the first validation (best score) or generation (the GA's empty
# podium and offspring of its step-0 checkpoint)
_EMPTY_MARKERS = ("best_score", "podium_scores", "offspring_fitness")


def _check_nothing_lost(workdir, latest_before: int, tally) -> int:
    """The latest complete checkpoint did not go back and restores, finite."""
    latest = _latest(workdir)
    assert latest >= latest_before, f"checkpoint {latest_before} lost (seed {SEED})"
    if latest >= 0:
        step, params, train, _ = harness.restore(workdir)
        assert step == latest
        for path, x in jax.tree_util.tree_leaves_with_path((params, train)):
            x = np.asarray(x)
            if any(name in jax.tree_util.keystr(path) for name in _EMPTY_MARKERS):
                x = np.where(x == -np.inf, 0.0, x)  # -inf: nothing scored yet
            assert x.dtype.kind not in "fc" or np.isfinite(x).all(), path
        tally["checkpoints_verified"] += 1
        logged = [m["step"] for m in harness.metrics(workdir)]
        assert logged == sorted(logged)
        assert all(
            math.isfinite(v) for m in harness.metrics(workdir) for v in m.values()
        )
    return latest


@pytest.mark.parametrize("trainer", TRAINERS)
def test_random_sigkills_then_resume_end_like_an_uninterrupted_run(
    trainer, reference_of, tmp_path, tally
):
    rng = random.Random(f"{SEED}-{trainer}")
    reference, workdir = reference_of(trainer), tmp_path / "killed"
    args = harness.cli_args(trainer, workdir)
    kills, latest = 0, -1
    for _ in range(4 * KILLS):  # a kill point may come after the run ended
        point = _kill_point(rng, trainer, latest)
        if kills == KILLS or point is None:
            break
        guard = _checkpoint_steps(trainer)[-2]
        killed, text = _kill_once(args, workdir, point, guard, tally)
        tally["runs_resumed"] += "resumed from step" in text
        assert killed or "Traceback" not in text, text[-3000:]
        kills += killed
        latest = _check_nothing_lost(workdir, latest, tally)
    assert kills >= 1, f"no kill landed mid-run (seed {SEED})"
    code, text = harness.run(args)
    assert code == 0, text[-3000:]
    tally["runs_resumed"] += "resumed from step" in text
    harness.assert_same_run(reference, workdir)


@pytest.mark.parametrize("trainer", ("nes", "scst") if harness.FULL else ("nes",))
def test_killed_while_saving_the_first_validation(
    trainer, reference_of, tmp_path, tally
):
    """The step-0 validation is logged, then its checkpoint is killed mid-save:
    the rerun starts afresh and logs step 0 once."""
    workdir, marker = tmp_path / "w", tmp_path / "saving_0"
    args = harness.cli_args(trainer, workdir)
    proc = harness.start(args, f"slow_save:0:{marker}")
    assert harness.wait_for(marker.exists, proc), harness.output(proc)[-3000:]
    harness.kill(proc)
    tally["faults_injected"] += 1
    assert harness.complete_steps(workdir) == []
    assert [m["step"] for m in harness.metrics(workdir)] == [0]
    code, text = harness.run(args)
    assert code == 0, text[-3000:]
    harness.assert_same_run(reference_of(trainer), workdir)
