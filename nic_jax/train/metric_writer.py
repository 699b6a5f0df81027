"""Metrics to `metrics.jsonl` (always) and TensorBoard (tensorboardX, optional).

Only process 0 writes. On resume, lines from steps after the restored checkpoint are
dropped first, so the file reads as one uninterrupted run.
"""

import json
import math
import os

import jax
from absl import logging

from nic_jax.errors import InputError


def _finite_or_str(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


class MetricWriter:
    """Appends `{"step": s, name: value, ...}` lines; names like `train/loss`."""

    def __init__(self, workdir: str, tensorboard: bool = False, resume_step: int = 0):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if not self.enabled:
            return
        _truncate_after(self.path, resume_step)
        if tensorboard:
            self._tb = _tensorboard_writer(workdir)

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        line = {"step": int(step)}
        line.update({k: _finite_or_str(v) for k, v in metrics.items()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        if self._tb is not None:
            for name, value in metrics.items():
                self._tb.add_scalar(name, float(value), int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _tensorboard_writer(workdir: str):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        logging.warning(
            "log.tensorboard=True but tensorboardX is missing: pip install "
            "'nic_jax[tb]'; writing metrics.jsonl only"
        )
        return None
    return SummaryWriter(os.path.join(workdir, "tensorboard"))


def read_metrics(path: str) -> list:
    """All lines of a metrics.jsonl file as dicts.

    A last line cut short (a run killed while writing it) is dropped: its step
    is after the last checkpoint, so the resumed run writes it again.
    """
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines) and not line.endswith("\n"):
                break
            raise InputError(
                f"{path}: line {number} is not JSON ({error.msg}); expected one "
                "metrics object per line"
            ) from None
    return records


def _truncate_after(path: str, step: int) -> None:
    kept = [m for m in read_metrics(path) if m["step"] <= step]
    if not os.path.exists(path):
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(m) + "\n" for m in kept)
    os.replace(tmp, path)
