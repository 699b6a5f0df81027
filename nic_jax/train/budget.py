"""Wall-clock budgets of training runs, so that methods compare on equal time.

`config.budget.train_s` > 0 makes `common.fit` stop after the step during which the
training clock passes it (validating and saving there), validate also every
`config.budget.eval_every_s` seconds of that clock, and log `time/elapsed_s` and
`time/decoded_captions` (captions the trainer decoded so far, from its
`captions_fn`) at every log and validation step: the x-axes of curves against time
and against work.

The clock counts the seconds of training steps, batch preparation included and
JAX compilation excluded (the spans JAX reports under `/jax/core/compile/`, logged
as `time/compile_s`: set-up, as loading the data is), and stops during validation
and checkpoint saves, so runs validated at different rates get the same training
time. While it runs, each step is waited for (`block_until_ready`): asynchronous
dispatch would otherwise move the compute of earlier steps into the stopped
sections. A resumed run continues the clock from the last value logged at or
before its checkpoint. Without a budget nothing is timed or logged, and steps are
not waited for.
"""

import contextlib
import functools
import math
import time

import jax

from nic_jax.errors import InputError
from nic_jax.train.metric_writer import read_metrics

ELAPSED, DECODED = "time/elapsed_s", "time/decoded_captions"
COMPILE = "time/compile_s"

# (start, end) wall times of every JAX compilation phase of this process
_compile_spans: list = []


def _record_span(name: str, start: float, end: float, **_) -> None:
    if name.startswith("/jax/core/compile/"):
        _compile_spans.append((start, end))


@functools.cache
def _listen() -> None:
    jax.monitoring.register_event_time_span_listener(_record_span)


def covered_seconds(spans, start: float, end: float) -> float:
    """Length of the union of the (a, b) `spans` within [start, end]."""
    total, reach = 0.0, start
    for a, b in sorted(spans):
        a, b = max(a, reach), min(b, end)
        if b > a:
            total += b - a
            reach = b
    return total


class TrainClock:
    """Training seconds and decoded captions of one run, against a budget."""

    def __init__(self, train_s=0.0, eval_every_s=0.0, resumed=None):
        if train_s < 0 or eval_every_s < 0:
            raise InputError(
                f"config budget.train_s={train_s} and budget.eval_every_s="
                f"{eval_every_s} must be >= 0 (0: no budget, no timed validation)"
            )
        self.train_s, self.eval_every_s = float(train_s), float(eval_every_s)
        self.enabled = self.train_s > 0
        resumed = resumed or {}
        self.decoded = int(resumed.get(DECODED, 0))
        self._elapsed = float(resumed.get(ELAPSED, 0.0))
        self._compile = float(resumed.get(COMPILE, 0.0))
        self._since, self._first_span = None, 0
        self._lap = None  # `metrics` at the end of the last step
        self._next_eval = self._next_multiple(self._elapsed)

    @classmethod
    def resume(cls, budget_config, metrics_path: str):
        """The clock of `config.budget` (None: no budget), continued from the last
        time logged in `metrics_path` (already truncated to the restored step)."""
        if budget_config is None:
            return cls()
        timed = [m for m in read_metrics(metrics_path) if ELAPSED in m]
        last = timed[-1] if timed else None
        return cls(budget_config.train_s, budget_config.eval_every_s, last)

    def _next_multiple(self, seconds: float) -> float:
        if not self.eval_every_s:
            return math.inf
        return (math.floor(seconds / self.eval_every_s) + 1) * self.eval_every_s

    def _window(self) -> tuple[float, float]:
        """(wall seconds, compile seconds) since the clock last started."""
        if self._since is None:
            return 0.0, 0.0
        now = time.time()
        spans = _compile_spans[self._first_span :]
        return now - self._since, covered_seconds(spans, self._since, now)

    def elapsed(self) -> float:
        wall, compiling = self._window()
        return self._elapsed + wall - compiling

    def start(self) -> None:
        if self.enabled and self._since is None:
            _listen()
            self._since, self._first_span = time.time(), len(_compile_spans)

    def stepped(self, state, captions: int) -> None:
        """Counts a step that decoded `captions`, once its compute is done."""
        if self.enabled:
            jax.block_until_ready(state)
            self.decoded += int(captions)
            self._lap = self.metrics()

    def lap(self) -> dict:
        """`metrics` as of the end of the last step (now, before any step): what
        `exceeded` and `eval_due` judge and the step's log line reports, so the
        bookkeeping after a step cannot log a time past the budget that step
        was judged within."""
        return self.metrics() if self._lap is None else self._lap

    def _lap_elapsed(self) -> float:
        return self.lap().get(ELAPSED, 0.0)

    def exceeded(self) -> bool:
        return self.enabled and self._lap_elapsed() >= self.train_s

    def eval_due(self) -> bool:
        """A timed validation is due (then the next one is one interval later)."""
        if not self.enabled or self._lap_elapsed() < self._next_eval:
            return False
        self._next_eval = self._next_multiple(self._lap_elapsed())
        return True

    @contextlib.contextmanager
    def stopped(self, state):
        """Stops the clock (after `state`'s compute) for validation or saving."""
        if self.enabled and self._since is not None:
            jax.block_until_ready(state)
            wall, compiling = self._window()
            self._elapsed += wall - compiling
            self._compile += compiling
            self._since = None
            try:
                yield
            finally:
                self.start()
        else:
            yield

    def metrics(self) -> dict:
        """{time/elapsed_s, time/decoded_captions, time/compile_s}, or {}."""
        if not self.enabled:
            return {}
        wall, compiling = self._window()
        return {
            ELAPSED: self._elapsed + wall - compiling,
            DECODED: self.decoded,
            COMPILE: self._compile + compiling,
        }
