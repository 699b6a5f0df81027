"""Fault-injection suite set-up: the short/full switch and the fault tally.

`NIC_JAX_FULL_FAULTS=1` runs the full version (every trainer killed several
times, thousands of fuzzed files, a real full tmpfs where it can be mounted);
the default is the short version CI runs. The tally of faults injected, bad
inputs tried, runs resumed and checkpoints verified is printed at the end of
the session, and written as JSON to `$NIC_JAX_FAULT_REPORT` when set.
"""

import collections

import pytest

from tests.reliability.tally import TALLY


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


def pytest_sessionfinish(session):
    """Under pytest-xdist a worker hands its tally to the controller, which
    reports the sum (tests/conftest.py)."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["fault_tally"] = dict(TALLY)
