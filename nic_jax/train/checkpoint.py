"""One orbax CheckpointManager per workdir: params, trainer state and metadata.

Each checkpoint has three items: `params` (so evaluation restores params only),
`train` (optimizer state, step, PRNG key data, data position, best score: everything
else needed to continue exactly) and `meta` (JSON: resolved config, vocabulary,
data fingerprint). The latest `max_to_keep` checkpoints are kept, plus the best one
by validation score.

Failures leave the last complete checkpoint usable:
* orbax writes `<step>.orbax-checkpoint-tmp` and renames it to `<step>` once every
  item is written, so a killed save leaves only a temporary directory, which
  readers ignore and the next save of that step replaces;
* a write that fails (disk full, quota, I/O error; orbax raises it at the next
  save or `wait_until_finished` when saving asynchronously) raises
  `CheckpointWriteError` naming the step, the cause and the last complete step,
  and the trainer stops there;
* a resume refuses a checkpoint of another vocabulary, model shape or training
  data (`check_data`; `ckpt.allow_data_change=True` overrides the last).
"""

import errno
import os
import re
import threading
import time

import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as ocm

from nic_jax.errors import InputError, WriteError

ITEMS = ("params", "train", "meta")


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


class CheckpointWriteError(WriteError):
    """A checkpoint could not be written: disk full, quota, I/O error."""


_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")  # tensorstore's messages


def _storage_cause(error: BaseException) -> str | None:
    """A short cause when `error` is a failed write, else None (not ours to hide).

    Python writers raise OSError; tensorstore (the array items) raises ValueError
    "RESOURCE_EXHAUSTED: ... [os_error_code='28']" for the same full disk.
    """
    if isinstance(error, OSError):
        return os.strerror(error.errno) if error.errno else str(error)
    match = _OS_ERROR_CODE.search(str(error))
    if match:
        return os.strerror(int(match.group(1)))
    if "RESOURCE_EXHAUSTED" in str(error):
        return os.strerror(errno.ENOSPC)
    return None


def complete_steps(directory) -> list:
    """Steps of the finished checkpoints in `directory` (orbax renames a step's
    temporary directory to the bare number once all of it is written)."""
    try:
        names = os.listdir(os.fspath(directory))
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def _settle_writers(timeout: float = 30.0) -> None:
    """Waits (at most `timeout` seconds) for orbax's writer threads: after one
    item's write failed, the others still run, and would report their own
    failures after the run's error and into event loops closed at exit."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and type(
            thread
        ).__module__.startswith("orbax."):
            # the plain join: orbax's own re-raises the thread's error
            threading.Thread.join(thread, max(0.0, deadline - time.monotonic()))


class Manager(ocp.CheckpointManager):
    """orbax's manager whose failed writes raise `CheckpointWriteError`.

    A failed asynchronous save surfaces at the next `save` or
    `wait_until_finished`; waiting first in `save` keeps the blame on its step.
    """

    _pending_step = None

    def save(self, step, *args, **kwargs):
        self.wait_until_finished()
        try:
            saved = super().save(step, *args, **kwargs)
        except Exception as error:
            self._raise_write_error(error, step)
            raise
        self._pending_step = step
        return saved

    def wait_until_finished(self):
        try:
            super().wait_until_finished()
        except Exception as error:
            self._raise_write_error(error, self._pending_step)
            raise
        self._pending_step = None

    def _raise_write_error(self, error: BaseException, step) -> None:
        cause = _storage_cause(error)
        if cause is None:
            return
        self._pending_step = None
        _settle_writers()
        # the step's temporary directory stays (the next save of the step
        # replaces it): removing it under writers still at work breaks them
        directory = os.fspath(self.directory)
        done = [s for s in complete_steps(directory) if s != step]
        last = f"step {done[-1]}" if done else "none yet"
        raise CheckpointWriteError(
            f"checkpoint step {step} could not be written to {directory}: {cause}. "
            f"The run stopped; the last complete checkpoint is {last}. Free space "
            "(or fix the disk) and rerun the same command to resume from it"
        ) from None


def make_manager(workdir: str, ckpt_config, best_metric: str, read_only=False):
    """The workdir's manager; `best_metric` names the metrics entry to maximise."""
    policy = ocm.AnyPreservationPolicy(
        [
            ocm.LatestN(n=ckpt_config.max_to_keep),
            ocm.BestN(
                get_metric_fn=lambda metrics: metrics[best_metric],
                n=1,
                keep_checkpoints_without_metrics=False,
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        # without best_fn orbax neither writes nor reads the metrics, so BestN and
        # `best_step` would see none once the process ends
        best_fn=lambda metrics: metrics[best_metric],
        enable_async_checkpointing=ckpt_config.async_save and not read_only,
        read_only=read_only,
        create=not read_only,
    )
    return Manager(checkpoint_dir(workdir), item_names=ITEMS, options=options)


def save(manager, step: int, params, train, meta: dict, metrics=None) -> None:
    """Saves all three items at `step` (asynchronously when configured)."""
    manager.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            train=ocp.args.StandardSave(train),
            meta=ocp.args.JsonSave(meta),
        ),
        metrics=metrics,
        force=True,
    )


def restore(manager, step: int, abstract_params=None, abstract_train=None):
    """Restores (params, train, meta) at `step` against abstract (eval_shape)
    trees; None restores that item as saved (plain containers)."""
    restored = _restore(
        manager,
        step,
        ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            train=ocp.args.StandardRestore(abstract_train),
            meta=ocp.args.JsonRestore(),
        ),
    )
    return restored.params, restored.train, restored.meta


def restore_params(manager, step: int, abstract_params):
    """Restores (params, meta) only, as evaluation does."""
    restored = _restore(
        manager,
        step,
        ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            meta=ocp.args.JsonRestore(),
        ),
    )
    return restored.params, restored.meta


def restore_meta(manager, step: int) -> dict:
    """The JSON metadata (config, vocabulary, fingerprint) of `step`."""
    meta = _restore(manager, step, ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    if not isinstance(meta, dict):
        raise InputError(
            f"checkpoint {_step_dir(manager, step)}: meta is not an object"
        )
    return meta


def _step_dir(manager, step: int) -> str:
    return os.path.join(os.fspath(manager.directory), str(step))


def _restore(manager, step: int, args):
    """manager.restore, any failure as an InputError naming the checkpoint."""
    try:
        return manager.restore(step, args=args)
    except InputError:
        raise
    except Exception as error:
        older = [s for s in manager.all_steps() if s < step]
        hint = f"; move it aside to resume from step {older[-1]}" if older else ""
        raise InputError(
            f"checkpoint {_step_dir(manager, step)} cannot be restored "
            f"({type(error).__name__}: {str(error)[:300]}){hint}"
        ) from error


def best_step(manager, metric: str):
    """The step with the highest `metric` among kept checkpoints, or None."""
    scored = []
    for step in manager.all_steps():
        metrics = manager.metrics(step)
        if metrics and metric in metrics:
            scored.append((metrics[metric], step))
    return max(scored)[1] if scored else None


def check_vocabulary(meta: dict, ix_to_word: dict, where: str) -> None:
    """Refuses a checkpoint trained on another vocabulary (its ids mean other words)."""
    saved = meta.get("vocab", [])
    current = [ix_to_word[i] for i in sorted(ix_to_word)]
    if saved != current:
        diff = next((i for i, (a, b) in enumerate(zip(saved, current)) if a != b), None)
        detail = (
            f"word {diff + 1} is {saved[diff]!r} there and {current[diff]!r} here"
            if diff is not None
            else f"{len(saved)} words there, {len(current)} here"
        )
        raise InputError(
            f"checkpoint {where} was trained on another vocabulary than the data "
            f"({detail}); use the data it was trained on"
        )


def _changed_data_fields(meta: dict, data_config) -> list:
    saved = meta.get("config", {}).get("data", {})
    current = data_config.to_dict() if data_config is not None else {}
    return sorted(k for k in set(saved) & set(current) if saved[k] != current[k])


def check_data(
    meta: dict,
    fingerprint: str,
    where: str,
    data_config=None,
    allow_change: bool = False,
) -> None:
    """Refuses to resume on other training data than the checkpoint's.

    The fingerprint (`data.dataset`) covers the vocabulary, the train split's
    images, captions and features: on other data, the saved data position would
    not continue the same run. "" on either side (converted checkpoints) or
    fingerprints of another version (`<version>-<hex>`; older ones had no
    version) cannot be compared and pass.
    """
    saved = meta.get("data_fingerprint") or ""
    if not saved or not fingerprint or saved == fingerprint:
        return
    if saved.partition("-")[0] != fingerprint.partition("-")[0]:
        logging.warning("checkpoint %s: data fingerprint of another version", where)
        return
    changed = _changed_data_fields(meta, data_config)
    detail = (
        f"; config fields changed: data.{', data.'.join(changed)}" if changed else ""
    )
    message = (
        f"checkpoint {where} was trained on other data: its data fingerprint is "
        f"{saved}, the data now gives {fingerprint}{detail}"
    )
    if allow_change:
        logging.warning("%s; resuming anyway (ckpt.allow_data_change=True)", message)
        return
    raise InputError(
        f"{message}. Use the run's data, another workdir, or "
        "--config.ckpt.allow_data_change=True to resume on the new data"
    )
