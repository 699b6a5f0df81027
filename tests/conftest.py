"""Test set-up: 4 fake CPU devices before JAX starts, a private dataset cache, and
one compilation cache for the session (tests and their subprocesses compile the
same tiny trainers many times; XLA compile time dominates the suite on 2 cores).

Tests and the subprocesses they start compile with LLVM at -O0
(`--xla_backend_optimization_level=0`; the benchmark smoke tests start theirs
with an empty XLA_FLAGS, as a user runs them): XLA's own HLO passes still run and
floating-point semantics are the same (no fast math either way), the tiny
programs run a little slower and compile much faster (tests/models/test_in5400.py
with tests/train/test_scst.py: 102 s -> 66 s on 2 cores). Benchmarks and the
command lines compile at XLA's default level."""

import os
import tempfile

from nic_jax import xla_flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = " ".join(  # the tests assume 4 devices, whatever was set
    word
    for word in os.environ.get("XLA_FLAGS", "").split()
    if not word.startswith("--xla_force_host_platform_device_count")
)
xla_flags.add_xla_flag("xla_force_host_platform_device_count", "4")
xla_flags.add_xla_flag("xla_backend_optimization_level", "0")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="nic_jax_xla_cache_")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

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


def write_cocotalk_dataset(
    root: pathlib.Path, num_images=30, feat_dim=16, seed=0, regions=(4, 4)
):
    """A small self-critical.pytorch-style dataset: Karpathy json, cocotalk files
    (through our prepro) and cocobu fc/att directories, each image with a region
    count drawn from `regions` (low, high) inclusive. Returns the config.data
    overrides that train on it."""
    import json

    import numpy as np

    from nic_jax.data.prepro_labels import prepro_labels

    rng = np.random.default_rng(seed)
    words = [
        "a",
        "red",
        "blue",
        "circle",
        "square",
        "left",
        "of",
        "the",
        "big",
        "small",
    ]
    images = []
    for i in range(num_images):
        split = ["train", "restval", "val", "test"][min(i * 4 // num_images, 3)]
        sents = [
            {"tokens": list(rng.choice(words, rng.integers(3, 9))), "raw": ""}
            for _ in range(5)
        ]
        for s in sents:
            s["raw"] = " ".join(s["tokens"]).capitalize() + "."
        images.append(
            {
                "split": split,
                "filepath": "imgs",
                "filename": f"{i}.png",
                "cocoid": 1000 + i,
                "sentences": sents,
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    dataset_json = root / "dataset_tiny.json"
    dataset_json.write_text(json.dumps({"images": images}))
    prepro_labels(str(dataset_json), str(root / "talk.json"), str(root / "talk"))
    (root / "bu_fc").mkdir(exist_ok=True)
    (root / "bu_att").mkdir(exist_ok=True)
    for img in images:
        att = rng.random((rng.integers(regions[0], regions[1] + 1), feat_dim))
        att = att.astype(np.float32)
        np.save(root / "bu_fc" / f"{img['cocoid']}.npy", att.mean(0))
        np.savez(root / "bu_att" / f"{img['cocoid']}.npz", feat=att)
    return {
        "data.name": "cocotalk",
        "data.input_json": str(root / "talk.json"),
        "data.input_label_h5": str(root / "talk_label.h5"),
        "data.input_fc_dir": str(root / "bu_fc"),
        "data.input_att_dir": str(root / "bu_att"),
        "data.dataset_json": str(dataset_json),
        "data.batch_size": 4,
        "model.fc_feat_size": feat_dim,
    }


@pytest.fixture
def make_cocotalk(tmp_path):
    """A function writing a small cocotalk dataset into tmp_path/<name>."""
    return lambda name="cocotalk", **kw: write_cocotalk_dataset(tmp_path / name, **kw)


@pytest.fixture
def cocotalk_dataset(make_cocotalk):
    """config overrides for a small cocotalk dataset written into tmp_path."""
    return make_cocotalk()


def pytest_terminal_summary(terminalreporter):
    from tests.reliability import tally

    tally.report(terminalreporter)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist: adds a finished worker's fault tally to the session's."""
    from tests.reliability import tally

    tally.TALLY.update(getattr(node, "workeroutput", {}).get("fault_tally", {}))
