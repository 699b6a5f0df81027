"""`compute.compilation_cache_dir`: a second run of the same config loads its
programs from JAX's persistent cache instead of compiling them."""

import os

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from configs.default import get_config
from nic_jax.train import common, xe

HIT = "/jax/compilation_cache/cache_hits"


@pytest.fixture
def cache_hits(monkeypatch):
    """Counts the cache's hits; keeps every program (the tests compile at -O0,
    fast); restores JAX's cache settings after the test (its folder is read once
    per process: reset)."""
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    hits = []

    def listener(event, **kwargs):
        if event == HIT:
            hits.append(event)

    old_dir = jax.config.jax_compilation_cache_dir
    old_min = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.monitoring.register_event_listener(listener)
    try:
        yield hits
    finally:
        jax.monitoring.unregister_event_listener(listener)
        compilation_cache.reset_cache()
        jax.config.update("jax_compilation_cache_dir", old_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", old_min)


def test_a_second_run_loads_its_programs_from_the_cache(tmp_path, cache_hits):
    config = get_config("tiny").copy_and_resolve_references()
    config.evals.final_split = ""
    config.xe.num_epochs = 1
    config.compute.compilation_cache_dir = str(tmp_path / "xla")
    jax.clear_caches()  # programs of earlier tests in this process: compile anew
    xe.train_and_evaluate(config, str(tmp_path / "first"))
    cached = os.listdir(tmp_path / "xla")
    assert any(name.startswith("jit_") for name in cached), cached
    first_hits = len(cache_hits)
    jax.clear_caches()  # as a new process: nothing compiled in memory
    xe.train_and_evaluate(config, str(tmp_path / "second"))
    assert len(cache_hits) - first_hits >= 10  # 83 programs when written
    assert len(os.listdir(tmp_path / "xla")) == len(cached)  # nothing new


def test_the_cache_folder_expands_home_and_a_new_one_replaces_the_old(
    tmp_path, monkeypatch, cache_hits
):
    monkeypatch.setenv("HOME", str(tmp_path))
    common.use_compilation_cache("~/a")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "a")
    jax.jit(lambda x: x * 3 + 1)(jax.numpy.ones(5)).block_until_ready()
    common.use_compilation_cache("~/b")
    jax.jit(lambda x: x * 5 - 2)(jax.numpy.ones(7)).block_until_ready()
    assert os.listdir(tmp_path / "a") and os.listdir(tmp_path / "b")


def test_short_compilations_are_not_kept_unless_the_environment_says(
    tmp_path, monkeypatch, cache_hits
):
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
    common.use_compilation_cache(str(tmp_path / "c"))
    limit = jax.config.jax_persistent_cache_min_compile_time_secs
    assert limit == common.CACHE_MIN_COMPILE_S
