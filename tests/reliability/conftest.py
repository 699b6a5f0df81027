"""Fault-injection suite set-up: the short/full switch and the fault tally.

`NIC_JAX_FULL_FAULTS=1` runs the full version (every trainer killed several
times, thousands of fuzzed files, a real full tmpfs where it can be mounted);
the default is the short version CI runs. The tally of faults injected, bad
inputs tried, runs resumed and checkpoints verified is printed at the end of
the session, and written as JSON to `$NIC_JAX_FAULT_REPORT` when set.
"""

import collections
import json
import os

import pytest

FULL = os.environ.get("NIC_JAX_FULL_FAULTS", "") == "1"
TALLY = collections.Counter()


@pytest.fixture(scope="session")
def tally() -> collections.Counter:
    """Counts by kind: faults_injected, bad_inputs_tried, runs_resumed, ..."""
    return TALLY


@pytest.fixture(scope="session")
def reference_of(tmp_path_factory):
    """trainer -> the workdir of its uninterrupted run (`harness.RUNS`), made once
    per session; tests copy it before changing anything in it."""
    from tests.reliability import harness

    done = {}

    def reference(trainer: str):
        if trainer not in done:
            done[trainer] = tmp_path_factory.mktemp(f"reference_{trainer}")
            harness.train_in_process(trainer, done[trainer])
        return done[trainer]

    return reference


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    mode = "full" if FULL else "short (NIC_JAX_FULL_FAULTS=1 for the full one)"
    terminalreporter.write_sep("-", f"fault injection, {mode}")
    for kind, count in sorted(TALLY.items()):
        terminalreporter.write_line(f"{kind}: {count}")
    path = os.environ.get("NIC_JAX_FAULT_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"full": FULL, **TALLY}, f, indent=1, sort_keys=True)
