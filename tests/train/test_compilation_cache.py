"""`compute.compilation_cache_dir`: a second run of the same config loads its
programs from JAX's persistent cache instead of compiling them; a run without
it puts JAX's settings back."""

import os

import jax
import jax.numpy as jnp
import pytest

from configs.default import get_config
from nic_jax.train import common, xe

HIT = "/jax/compilation_cache/cache_hits"


@pytest.fixture
def cache_hits():
    """Counts the cache's hits; after the test, JAX's cache settings as they
    were (`stop_compilation_cache`)."""
    hits = []

    def listener(event, **kwargs):
        if event == HIT:
            hits.append(event)

    before = {name: getattr(jax.config, name) for name in common._CACHE_SETTINGS}
    jax.monitoring.register_event_listener(listener)
    try:
        yield hits
    finally:
        jax.monitoring.unregister_event_listener(listener)
        common.stop_compilation_cache()
        assert {n: getattr(jax.config, n) for n in before} == before


def _reloads_programs(folder, hits) -> bool:
    """Whether this machine's XLA reads its own cached programs back (on some
    CPUs every cached CPU program is rejected on load: jax-ml/jax#38445)."""
    common.use_compilation_cache(str(folder), 0.0)
    probe = lambda: jax.jit(lambda x: jnp.cos(x) * 7)(jnp.ones(9)).block_until_ready()
    probe()
    jax.clear_caches()
    before = len(hits)
    probe()
    return len(hits) > before


def test_a_second_run_loads_its_programs_from_the_cache(tmp_path, cache_hits):
    if not _reloads_programs(tmp_path / "probe", cache_hits):
        pytest.skip("this CPU's XLA rejects its cached programs (jax-ml/jax#38445)")
    config = get_config("tiny").copy_and_resolve_references()
    config.evals.final_split = ""
    config.xe.num_epochs = 1
    config.compute.compilation_cache_dir = str(tmp_path / "xla")
    config.compute.compilation_cache_min_compile_s = 0.0  # the tests compile at -O0
    jax.clear_caches()  # programs of earlier tests in this process: compile anew
    xe.train_and_evaluate(config, str(tmp_path / "first"))
    cached = os.listdir(tmp_path / "xla")
    assert any(name.startswith("jit_") for name in cached), cached
    first_hits = len(cache_hits)
    jax.clear_caches()  # as a new process: nothing compiled in memory
    xe.train_and_evaluate(config, str(tmp_path / "second"))
    assert len(cache_hits) - first_hits >= 10  # 83 programs when written
    assert len(os.listdir(tmp_path / "xla")) == len(cached)  # nothing new


def test_home_expands_a_new_folder_replaces_the_old_and_short_ones_are_left(
    tmp_path, monkeypatch, cache_hits
):
    monkeypatch.setenv("HOME", str(tmp_path))
    common.use_compilation_cache("~/a", 0.0)
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "a")
    jax.jit(lambda x: x * 3 + 1)(jnp.ones(5)).block_until_ready()
    common.use_compilation_cache("~/b", 60.0)  # keeps only what took a minute
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 60.0
    jax.jit(lambda x: x * 5 - 2)(jnp.ones(7)).block_until_ready()
    assert os.listdir(tmp_path / "a")
    assert not (tmp_path / "b").exists() or not os.listdir(tmp_path / "b")


def test_a_run_without_a_cache_puts_back_what_a_run_with_one_set(tmp_path, cache_hits):
    before = {name: getattr(jax.config, name) for name in common._CACHE_SETTINGS}
    config = get_config("tiny").copy_and_resolve_references()
    config.compute.compilation_cache_dir = "gs://a-bucket/xla"
    common.apply_compute(config)
    assert jax.config.jax_compilation_cache_dir == "gs://a-bucket/xla"
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.1
    assert jax.config.jax_persistent_cache_enable_xla_caches == "none"
    config.compute.compilation_cache_dir = str(tmp_path / "local")  # gs:// -> local
    common.apply_compute(config)
    xla_caches = before["jax_persistent_cache_enable_xla_caches"]
    assert jax.config.jax_persistent_cache_enable_xla_caches == xla_caches
    config.compute.compilation_cache_dir = ""
    common.apply_compute(config)
    assert {n: getattr(jax.config, n) for n in before} == before
