"""CI smoke of the benchmark suite: each `--quick` run prints one JSON line with
its documented keys, and the checks it carries hold (the baselines decode the
same captions, the two XE layouts give the same loss). Plus the FLOP and
parameter counts behind the roofline fractions against independent counts, and
the PyTorch baseline's FC model against ours."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from jax.flatten_util import ravel_pytree

from nic_jax.benchmarks import es_workload, torch_baseline, workload
from nic_jax.decoding import decode

MACHINE_KEYS = {"benchmark", "device", "platform", "cpu_cores", "load_average_1min"}


def run_quick(name: str, *flags: str) -> dict:
    """Runs `python -m nic_jax.benchmarks.<name> --quick`; its one JSON line."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    done = subprocess.run(
        [sys.executable, "-m", f"nic_jax.benchmarks.{name}", "--quick", *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    assert result["benchmark"] == name
    assert result.keys() >= MACHINE_KEYS
    return result


def test_es_throughput_quick():
    result = run_quick("es_throughput", "--baseline_members=1")
    keys = {
        "offspring_per_s",
        "baseline_offspring_per_s",
        "ratio",
        "peak_rss_mb",
        "rss_ratio",
        "peak_matmul_gflops",
        "gflop_per_offspring",
        "fraction_of_peak",
        "baseline_seconds",
    }
    assert result.keys() >= keys
    assert set(result["peak_rss_mb"]) == {"8", "32"}
    assert result["offspring_per_s"] > 0 and result["baseline_offspring_per_s"] > 0
    expected_ratio = result["offspring_per_s"] / result["baseline_offspring_per_s"]
    assert result["ratio"] == pytest.approx(expected_ratio, rel=1e-3)
    # one generation of the largest P (32) takes P / rate seconds
    generation = result["generation_s"] * result["offspring_per_s"]
    assert generation == pytest.approx(32, rel=1e-2)
    low_rank = result["low_rank_offspring_per_s"] / result["baseline_offspring_per_s"]
    assert result["low_rank"] == 1 and result["low_rank_offspring_per_s"] > 0
    assert result["low_rank_ratio"] == pytest.approx(low_rank, rel=1e-3)
    versus_full = result["low_rank_offspring_per_s"] / result["offspring_per_s"]
    assert result["low_rank_vs_full_rank"] == pytest.approx(versus_full, rel=1e-3)
    generation = result["low_rank_generation_s"] * result["low_rank_offspring_per_s"]
    assert generation == pytest.approx(32, rel=1e-2)
    assert set(result["baseline_seconds"]) == {"noise_and_perturb", "decode", "cider"}
    flops = es_workload.fc_flops_per_image(es_workload.QUICK) * 8
    assert result["gflop_per_offspring"] == pytest.approx(flops / 1e9, rel=1e-3)
    # torch is a test dependency: the PyTorch (es-img-captioning) baseline runs,
    # and its copy of the model decodes the same captions as ours
    assert result["torch_agreement"] == 1.0
    torch_ratio = result["offspring_per_s"] / result["torch_baseline_offspring_per_s"]
    assert result["torch_ratio"] == pytest.approx(torch_ratio, rel=1e-3)


def test_memory_quick():
    result = run_quick("memory")
    assert result["populations"] == [4, 16]
    rss = result["peak_rss_mb"]
    assert len(rss) == 2 and min(rss) > 0
    assert result["rss_ratio"] == pytest.approx(rss[1] / rss[0], rel=1e-3)
    n = result["num_params"]
    assert result["materialised_population_mb"] == pytest.approx(
        [4 * n * 4 / 1e6, 4 * n * 16 / 1e6], rel=1e-3
    )


def test_decode_quick():
    result = run_quick("decode")
    assert set(result["models"]) == set(workload.QUICK_MODELS)
    for record in result["models"].values():
        for kind in ("greedy", "beam"):
            assert record[f"{kind}_captions_per_s"] > 0
            assert record[f"{kind}_baseline_captions_per_s"] > 0
            assert record[f"{kind}_ratio"] > 0
            assert record[f"{kind}_fraction_of_peak"] > 0
            # the host-loop baselines run the same search: the same captions
            assert record[f"{kind}_agreement"] == 1.0


def test_xe_step_quick():
    result = run_quick("xe_step")
    assert set(result["models"]) == {"fc"}
    for record in result["models"].values():
        assert record["captions_per_s"] > 0 and record["baseline_captions_per_s"] > 0
        assert record["ratio"] == pytest.approx(
            record["captions_per_s"] / record["baseline_captions_per_s"], rel=1e-3
        )
        assert record["loss_abs_diff"] < 1e-5  # the two layouts: the same loss
        assert record["gflop_per_step"] > 0 and record["fraction_of_peak"] > 0


def test_lowrank_quick():
    forms = "--products=grouped,shared"
    result = run_quick(
        "lowrank", "--processes=1", "--repeats=2", forms, "--low_rank_chunk_size=4"
    )
    assert result["chunk_size"] == 8 and result["low_rank_chunk_size"] == 4
    full, low = result["full_rank_seconds"], result["low_rank_seconds"]
    assert len(full) == len(low) == 2
    assert result["ratio"] == pytest.approx(min(full) / min(low), rel=1e-3)
    assert result["full_rank_generations_per_s"] == pytest.approx(1 / min(full), 1e-3)
    # the same pairs, sigma and images: both fitness means are CIDEr-D scores
    assert 0 <= result["full_rank_fitness_mean"] <= 10
    assert 0 <= result["low_rank_fitness_mean"] <= 10
    grouped, shared = result["products"]["grouped"], result["products"]["shared"]
    assert result["low_rank_product"] == "grouped"
    assert grouped["seconds"] == low and len(shared["seconds"]) == 2
    assert shared["ratio"] == pytest.approx(min(full) / min(shared["seconds"]), 1e-3)
    # the same members' noise in both forms: the same greedy captions' scores
    assert grouped["fitness_mean"] == pytest.approx(shared["fitness_mean"], abs=1e-4)


def test_profile_generation_quick(tmp_path):
    result = run_quick("profile_generation", "--top=5", f"--trace_dir={tmp_path}")
    assert result["population"] == 16 and result["rank"] == 4
    for name in ("full_rank", "low_rank"):
        variant = result[name]
        assert variant["source"] == "host events"  # a CPU: XLA's ops on threads
        assert variant["kernel_ms"] is None and variant["busy_fraction"] is None
        assert variant["wall_s"] > 0 and variant["traced_wall_s"] > 0
        rows = variant["top"]
        assert 0 < len(rows) <= 5
        assert all(ms > 0 and calls >= 1 for _, ms, calls, _ in rows)
        assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)
        assert sum(share for *_, share in rows) <= 1.0 + 1e-3
        assert not any(r[0].startswith("$") or "::" in r[0] for r in rows)
        assert list((tmp_path / name).rglob("*.trace.json.gz"))  # kept
    expected = result["full_rank"]["wall_s"] / result["low_rank"]["wall_s"]
    assert result["low_rank_vs_full_rank"] == pytest.approx(expected, rel=1e-2)


def test_fc_flop_count_matches_xla_and_params_match_the_model():
    shape = es_workload.Shape()  # issue 5's FC-128, V = 9,487
    decoder, params = workload.build_model(
        "fc", shape.size, shape.feat_dim, 36, shape.vocab_size
    )
    feats = workload.feature_batch(np.random.default_rng(0), 2, shape.feat_dim)
    counted = workload.decode_flops(decoder, params, feats, 1, workload.MAX_LEN)
    analytic = 2 * es_workload.fc_flops_per_image(shape)
    # XLA also counts gates and log-softmax: at this size a few % over the matmuls
    assert analytic <= counted <= 1.05 * analytic
    flat, _ = ravel_pytree(jax.device_get(params))
    assert es_workload.num_params(shape) == flat.size


def test_torch_fc_captioner_is_our_fc_model():
    decoder, params = workload.build_model("fc", 32, 64, 36, 500)
    params = jax.device_get(params)
    feats = workload.feature_batch(np.random.default_rng(1), 6, 64)
    ours = np.asarray(decode(decoder, params, feats, None, "greedy")[0])
    model = torch_baseline.FCCaptioner(params)
    np.testing.assert_array_equal(model.greedy(feats["fc"], workload.MAX_LEN), ours)
    flat, _ = ravel_pytree(params)
    assert model.flat().shape == flat.shape
    # the perturbed vector an offspring loads is the one the model then holds
    theta = model.flat()
    shifted = theta + 0.05 * torch.randn(theta.shape, generator=torch.Generator())
    model.load_flat(shifted)
    assert torch.equal(model.flat(), shifted)
    assert not torch.equal(model.flat(), theta)


def test_scaling_quick_gives_one_line_per_device_count_with_equal_updates():
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
    )
    done = subprocess.run(
        [sys.executable, "-m", "nic_jax.benchmarks.scaling", "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [line["devices"] for line in lines] == [1, 2, 4]
    for line in lines:
        assert line["benchmark"] == "es_scaling" and line["offspring_per_s"] > 0
        assert line["max_abs_theta_diff"] <= 1e-5  # the update of one device
    assert len({line["fitness_mean"] for line in lines}) == 1
