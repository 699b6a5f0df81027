"""The method comparison end to end on `:tiny`, and the training clock under it."""

import itertools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib import image

from nic_jax.errors import InputError
from nic_jax.experiments import compare
from nic_jax.train import budget
from nic_jax.train.metric_writer import read_metrics

BUDGET_S = 2.0


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    settings = compare.Settings(
        workdir=str(tmp_path_factory.mktemp("compare")),
        budget_s=BUDGET_S,
        eval_every_s=1.0,
        tiny=True,
    )
    return settings, compare.run_comparison(settings)


def _timed_lines(workdir):
    lines = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    return [m for m in lines if budget.ELAPSED in m]


def test_table_and_plot_are_written(comparison):
    settings, summary = comparison
    with open(summary["files"]["table"], encoding="utf-8") as f:
        rows = [line for line in f.read().splitlines() if line.startswith("| XE")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| XE",
        "| XE→SCST",
        "| XE→NIC-NES",
        "| XE→NIC-ES",
    ]
    for row, method in zip(rows, ("xe", *compare.METHODS)):
        greedy = summary["results"][method]["test"][1]["CIDEr"]
        assert f"{greedy:.3f} / " in row  # the greedy test CIDEr-D of that run
    pixels = image.imread(summary["files"]["plot"])
    assert pixels.shape[:2] == (450, 1200)
    assert pixels[..., :3].std() > 0.05  # drawn, not blank


def test_every_method_stops_on_its_budget_with_a_curve(comparison):
    settings, summary = comparison
    for method in compare.METHODS:
        result = summary["results"][method]
        curve = result["curve"]
        assert len(curve) >= 3, method  # the XE start, a timed one, the last step
        assert curve[0]["step"] == 0 and curve[0]["elapsed_s"] == 0
        seconds = [p["elapsed_s"] for p in curve]
        assert seconds == sorted(seconds)
        timed = _timed_lines(result["workdir"])
        # stopped after the step during which the budget ran out, not before
        assert timed[-1][budget.ELAPSED] >= BUDGET_S
        assert all(m[budget.ELAPSED] < BUDGET_S for m in timed[:-1]), method
        assert timed[-1]["step"] == result["steps"] == curve[-1]["step"]


def test_decoded_captions_follow_each_algorithm(comparison):
    settings, summary = comparison
    xe = compare.load_config(settings, "xe")
    batch, val_images = xe.data.batch_size, xe.data.shapes.num_val
    es = xe.es
    per_step = {
        "scst": (5 + 1) * batch,  # 5 samples and the greedy baseline per image
        "nes": 2 * es.num_pairs * es.batch_size,
        "es": es.population_size * es.batch_size
        + es.num_elite_candidates * min(es.num_val_items, val_images),
    }
    for method, captions in per_step.items():
        last = summary["results"][method]["curve"][-1]
        assert last["decoded_captions"] == last["step"] * captions, method


def test_the_best_validation_checkpoint_is_evaluated(comparison):
    settings, summary = comparison
    for method in compare.METHODS:
        result = summary["results"][method]
        cider = {p["step"]: p["cider_d"] for p in result["curve"]}
        assert cider[result["ckpt_step"]] == max(cider.values()), method


def test_all_methods_start_from_the_same_xe_scores(comparison):
    settings, summary = comparison
    starts = [summary["results"][m]["curve"][0]["cider_d"] for m in compare.METHODS]
    np.testing.assert_allclose(starts, starts[0], rtol=1e-6)
    xe_test = summary["results"]["xe"]["test"]
    for method in compare.METHODS:  # evaluated at step 0 when nothing improved
        result = summary["results"][method]
        if result["ckpt_step"] == 0:
            assert result["test"] == xe_test


def test_unknown_method_is_refused_before_training(tmp_path):
    settings = compare.Settings(workdir=str(tmp_path), methods=("scst", "ppo"))
    with pytest.raises(InputError, match="--methods=scst,ppo"):
        compare.run_comparison(settings)
    assert os.listdir(tmp_path) == []


def test_covered_seconds_is_the_union_of_spans():
    rng = np.random.default_rng(0)
    for _ in range(20):
        starts = rng.uniform(0, 10, 6)
        spans = list(zip(starts, starts + rng.uniform(0, 3, 6)))
        grid = np.linspace(2, 9, 70001)[:-1] + 0.5e-4
        inside = np.zeros_like(grid, bool)
        for a, b in spans:
            inside |= (grid >= a) & (grid < b)
        expected = inside.mean() * 7
        got = budget.covered_seconds(spans, 2.0, 9.0)
        np.testing.assert_allclose(got, expected, atol=1e-3)


def test_clock_leaves_out_stopped_time_and_compilation():
    clock = budget.TrainClock(train_s=100.0)
    clock.start()
    time.sleep(0.2)
    with clock.stopped(None):
        time.sleep(0.3)
    # a new shape compiles: the clock leaves that out as well
    fn = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(0) + jnp.cumsum(x, 1)[:, 0])
    clock.stepped(fn(jnp.ones((37, 41))), captions=7)
    metrics = clock.metrics()
    assert metrics[budget.COMPILE] > 0.005
    assert 0.2 <= metrics[budget.ELAPSED] < 0.2 + 0.25
    assert metrics[budget.DECODED] == 7
    assert not clock.exceeded()


def test_timed_validation_comes_every_interval():
    clock = budget.TrainClock(train_s=100.0, eval_every_s=0.1)
    clock.start()
    due = []
    for _ in itertools.repeat(None, 30):
        time.sleep(0.02)
        due.append(clock.eval_due())
    assert 4 <= sum(due) <= 7  # about 0.6 s / 0.1 s
    assert not budget.TrainClock().enabled and budget.TrainClock().metrics() == {}
