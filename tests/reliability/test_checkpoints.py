"""Checkpoints survive what clusters do to runs: a SIGKILL in the middle of a save,
a full disk, a corrupt step directory, and a resume on other data or another model.
Each resumed run ends where the uninterrupted one ends."""

import errno
import os
import pathlib
import shutil
import subprocess
import uuid

import h5py
import numpy as np
import pytest
from orbax.checkpoint._src.handlers import json_checkpoint_handler as json_handler

from nic_jax.data.dataset import data_files
from nic_jax.errors import InputError
from nic_jax.train import checkpoint, xe
from tests.reliability import harness


@pytest.fixture
def reference(reference_of):
    """The uninterrupted XE run every resumed run must end equal to."""
    return reference_of("xe")


def test_sigkill_in_the_middle_of_a_save_keeps_the_previous_one(
    reference, tmp_path, tally
):
    workdir, marker = tmp_path / "w", tmp_path / "saving_6"
    proc = harness.start(harness.cli_args("xe", workdir), f"slow_save:6:{marker}")
    assert harness.wait_for(marker.exists, proc), harness.output(proc)[-3000:]
    harness.kill(proc)
    tally["faults_injected"] += 1
    where = checkpoint.checkpoint_dir(str(workdir))
    assert os.path.isdir(os.path.join(where, "6.orbax-checkpoint-tmp"))
    assert harness.complete_steps(workdir) == [3]
    step, params, _, meta = harness.restore(workdir)
    assert step == 3 and meta["vocab"] and jax_finite(params)
    tally["checkpoints_verified"] += 1

    code, err = harness.run(harness.cli_args("xe", workdir))
    assert code == 0, err[-3000:]
    assert "resumed from step 3" in err
    tally["runs_resumed"] += 1
    assert not os.path.exists(os.path.join(where, "6.orbax-checkpoint-tmp"))
    harness.assert_same_run(reference, workdir)


def jax_finite(tree) -> bool:
    import jax

    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


def _disk_full_at(monkeypatch, step: int):
    real = json_handler.JsonCheckpointHandler._save_fn

    async def full(self, x, directory):
        if f"/{step}.orbax-checkpoint-tmp" in str(directory):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
        return await real(self, x, directory)

    monkeypatch.setattr(json_handler.JsonCheckpointHandler, "_save_fn", full)


def test_disk_full_stops_the_run_and_a_rerun_resumes(
    reference, tmp_path, monkeypatch, tally
):
    workdir = tmp_path / "w"
    _disk_full_at(monkeypatch, 6)
    with pytest.raises(checkpoint.CheckpointWriteError) as raised:
        harness.train_in_process("xe", workdir)
    tally["faults_injected"] += 1
    message = str(raised.value)
    assert "checkpoint step 6 could not be written" in message
    assert "No space left on device" in message
    assert "the last complete checkpoint is step 3" in message
    # the failed step is left as a temporary directory; the last good one restores
    where = checkpoint.checkpoint_dir(str(workdir))
    assert harness.complete_steps(workdir) == [3]
    assert harness.restore(workdir)[0] == 3
    tally["checkpoints_verified"] += 1

    monkeypatch.undo()
    harness.train_in_process("xe", workdir)
    tally["runs_resumed"] += 1
    assert not os.path.exists(os.path.join(where, "6.orbax-checkpoint-tmp"))
    harness.assert_same_run(reference, workdir)


def test_disk_full_on_the_command_line_is_one_error_line(tmp_path, tally):
    code, err = harness.run(harness.cli_args("xe", tmp_path / "w"), "disk_full:9")
    tally["faults_injected"] += 1
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: checkpoint step 9 could not be written"), last
    assert "No space left on device" in last and "complete checkpoint is step 6" in last


def test_max_to_keep_keeps_the_latest_and_the_best(reference):
    config = harness.make_config("xe")
    scores = {
        m["step"]: m["val/CIDEr"]
        for m in harness.metrics(reference)
        if "val/CIDEr" in m
    }
    best = max(scores, key=scores.get)
    latest = [9, 12][-config.ckpt.max_to_keep :]
    assert harness.complete_steps(reference) == sorted({*latest, best})


def test_corrupt_step_is_named_and_the_previous_one_resumes(reference, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    where = checkpoint.checkpoint_dir(str(workdir))
    for root, _, files in os.walk(os.path.join(where, "12", "params")):
        for name in files:
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(3)
    config = harness.make_config("xe")
    with pytest.raises(InputError, match=r"checkpoints/12 cannot be restored.*step"):
        xe.train_and_evaluate(config, str(workdir))
    os.rename(os.path.join(where, "12"), str(tmp_path / "12.aside"))
    xe.train_and_evaluate(config, str(workdir))  # resumes from the one before
    harness.assert_same_run(reference, workdir)


def _copy_of_the_data(tmp_path) -> str:
    """A private copy of the cached synthetic dataset: (cache_dir, feature h5)."""
    files = data_files(harness.make_config("xe").data)
    root = pathlib.Path(files.input_json).parent
    cache_dir = tmp_path / "cache"
    shutil.copytree(root, cache_dir / root.name)
    return str(cache_dir), cache_dir / root.name / "feats_train.h5"


def test_resume_on_other_training_data_is_refused_unless_allowed(
    reference, tmp_path, tally
):
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    cache_dir, features = _copy_of_the_data(tmp_path)
    with h5py.File(features, "r+") as f:  # re-extracted features, say
        f["fc"][0] = f["fc"][0] + 1.0
    other = {"data.cache_dir": cache_dir}
    tally["bad_inputs_tried"] += 1
    with pytest.raises(
        InputError,
        match=r"was trained on other data: .* config fields changed: data\.cache_dir"
        r"\. .*--config\.ckpt\.allow_data_change=True",
    ):
        harness.train_in_process("xe", workdir, **other)
    # finished run: restores, checks, stops at once
    harness.train_in_process("xe", workdir, **other, **{"ckpt.allow_data_change": True})


def test_resume_on_a_copy_of_the_same_data_is_not_refused(reference, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    cache_dir, _ = _copy_of_the_data(tmp_path)
    harness.train_in_process("xe", workdir, **{"data.cache_dir": cache_dir})


def test_resume_on_another_vocabulary_is_refused(reference, tmp_path, tally):
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    tally["bad_inputs_tried"] += 1
    with pytest.raises(InputError, match=r"trained on another vocabulary than the"):
        harness.train_in_process("xe", workdir, **{"data.word_count_threshold": 0})


def test_resume_with_another_model_shape_is_refused(reference, tmp_path, tally):
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    tally["bad_inputs_tried"] += 1
    with pytest.raises(InputError, match=r"model\.rnn_size=32 but the config says 48"):
        harness.train_in_process("xe", workdir, **{"model.rnn_size": 48})


@pytest.mark.skipif(not harness.FULL, reason="full version: NIC_JAX_FULL_FAULTS=1")
def test_real_full_tmpfs(reference, tmp_path, tally):
    """A real 700 kB tmpfs fills up mid-run (mounting it needs root)."""
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mount)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode()[:200]}")
    try:
        _fill_then_resume(reference, mount / "w", mount, tally)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill_then_resume(reference, workdir, mount, tally):
    code, err = harness.run(harness.cli_args("xe", workdir))
    tally["faults_injected"] += 1
    assert code == 2, err[-3000:]
    assert "Traceback" not in err and "No space left on device" in err
    last_good = harness.complete_steps(workdir)[-1]
    assert harness.restore(workdir)[0] == last_good
    tally["checkpoints_verified"] += 1
    subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
    code, err = harness.run(harness.cli_args("xe", workdir))
    assert code == 0, err[-3000:]
    assert f"resumed from step {last_good}" in err
    tally["runs_resumed"] += 1
    harness.assert_same_run(reference, workdir)


def test_check_data_compares_fingerprints_of_one_version():
    meta = {"data_fingerprint": "v2-0123456789abcdef", "config": {"data": {"a": 1}}}
    checkpoint.check_data(meta, "v2-0123456789abcdef", "W")
    for unknown in ("", "0123456789abcdef"):  # converted; older version
        checkpoint.check_data(meta, unknown, "W")
        checkpoint.check_data({"data_fingerprint": unknown}, "v2-ffff", "W")
    with pytest.raises(InputError, match=r"checkpoint W was trained on other data"):
        checkpoint.check_data(meta, "v2-ffffffffffffffff", "W")
    checkpoint.check_data(meta, "v2-ffffffffffffffff", "W", allow_change=True)
