"""Installs nic_jax: caption decoders trained by gradient and by evolution in JAX."""

from pathlib import Path

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.7,<0.11",
    "flax>=0.11,<0.13",
    "optax>=0.2.4,<0.3",
    "evosax>=0.2,<0.4",
    "orbax-checkpoint>=0.11,<0.13",
    "numpy>=1.26,<3",
    "h5py>=3.10,<4",
    "pycocoevalcap>=1.2,<2",
    "absl-py>=2.1,<3",
    "ml-collections>=0.1.1,<2",
    "tqdm>=4.66,<5",
    "pillow>=10,<14",
    "matplotlib>=3.8,<4",
    "scikit-learn>=1.3,<2",  # the bundled 8x8 digits of the evolution sanity task
]

EXTRAS_REQUIRE = {
    # torch: the conversion tests build PyTorch reference models (CPU wheel).
    "test": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",  # the suite runs one process per CPU (README)
        "hypothesis>=6.100,<7",
        "ruff>=0.6",
        "torch==2.13.0",
        # tests/test_notebooks.py executes colab/*.ipynb
        "nbclient>=0.10,<1",
        "nbformat>=5.9,<6",
        "ipykernel>=6.29,<8",
    ],
    "tb": ["tensorboardX>=2.6,<3"],
    # a gs:// compute.compilation_cache_dir (JAX's cache reads and writes it so)
    "gcs": ["gcsfs>=2024.2"],
    # Only for importing PyTorch state_dicts; 2.13.0 is the CPU wheel the target
    # machines carry, and any range that admits it installs nothing more.
    "torch": ["torch>=2.2,<=2.14.1"],
}

setup(
    name="nic_jax",
    version="0.1.0",
    description=(
        "Image-caption decoders trained by cross-entropy, SCST, NIC-NES and NIC-ES "
        "in JAX"
    ),
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["nic_jax", "nic_jax.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "nic-train=nic_jax.main:run",
            "nic-eval=nic_jax.evaluate:run",
            "nic-prepro=nic_jax.prepro:run",
            "nic-score=nic_jax.score:run",
            "nic-convert=nic_jax.convert:run",
            "nic-caption=nic_jax.caption:run",
            "nic-plot=nic_jax.plot:run",
            "nic-grow=nic_jax.grow:run",
            "nic-ensemble=nic_jax.ensemble:run",
        ]
    },
)
