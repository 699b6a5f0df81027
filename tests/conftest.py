"""Test set-up: 4 fake CPU devices before JAX starts, a private dataset cache."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

import pathlib  # noqa: E402

import pytest  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _dataset_cache(tmp_path_factory):
    """Keeps generated datasets out of the user's ~/.cache during tests."""
    cache = tmp_path_factory.mktemp("nic_jax_cache")
    old = os.environ.get("NIC_JAX_CACHE")
    os.environ["NIC_JAX_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("NIC_JAX_CACHE", None)
    else:
        os.environ["NIC_JAX_CACHE"] = old


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """../shared/data beside the checkout (CI clones with shared/ beside it)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: the tests need ../shared/data beside the repo")
    return path
