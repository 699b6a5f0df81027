"""The digits sanity task: NIC-NES and NIC-ES both reach 90% test accuracy."""

import json
import subprocess
import sys

import numpy as np
import pytest

from nic_jax.errors import InputError
from nic_jax.experiments import digits


@pytest.mark.parametrize("strategy", ["nes", "ga"])
def test_reaches_ninety_percent_test_accuracy(strategy):
    result = digits.run(strategy)
    assert result["strategy"] == strategy
    assert result["test_accuracy"] >= 0.9, result


def test_splits_partition_the_bundled_digits():
    from sklearn.datasets import load_digits

    splits = digits.load_splits(seed=0)
    assert [len(y) for _, y in splits.values()] == [1078, 359, 360]
    full = load_digits()
    expected = np.column_stack([full.data / 16.0, full.target])
    got = np.concatenate([np.column_stack([x, y]) for x, y in splits.values()])
    # Same multiset of (image, label) rows: nothing lost, nothing repeated.
    np.testing.assert_allclose(
        got[np.lexsort(got.T)], expected[np.lexsort(expected.T)], atol=1e-6
    )


def test_unknown_strategy():
    with pytest.raises(InputError, match="--strategy='cmaes' is unknown"):
        digits.run("cmaes")


def test_cli_prints_one_json_line():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nic_jax.experiments.digits",
            "--strategy=nes",
            "--generations=2",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["strategy"] == "nes" and record["generations"] == 2
    assert 0.0 <= record["test_accuracy"] <= 1.0
