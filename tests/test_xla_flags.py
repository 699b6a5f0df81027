"""The XLA flags the command lines set before JAX starts (nic_jax.xla_flags)."""

import os
import subprocess
import sys

from nic_jax import xla_flags


def test_add_xla_flag_appends_to_the_users_flags():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    xla_flags.add_xla_flag("xla_gpu_enable_triton_gemm", "false", environ)
    assert environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        "--xla_gpu_enable_triton_gemm=false",
    ]


def test_add_xla_flag_starts_an_empty_environment():
    environ = {}
    xla_flags.add_xla_flag("xla_force_host_platform_device_count", "4", environ)
    assert environ == {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}


def test_a_flag_whose_name_only_begins_the_same_is_another_flag():
    environ = {"XLA_FLAGS": "--xla_gpu_enable_triton_gemm_int4=true"}
    xla_flags.add_default_xla_flags(environ)
    assert environ["XLA_FLAGS"].split() == [
        "--xla_gpu_enable_triton_gemm_int4=true",
        "--xla_gpu_enable_triton_gemm=false",
    ]


def test_a_flag_the_user_set_is_kept_as_set():
    environ = {"XLA_FLAGS": "--xla_gpu_enable_triton_gemm=true"}
    xla_flags.add_default_xla_flags(environ)
    assert environ["XLA_FLAGS"] == "--xla_gpu_enable_triton_gemm=true"


def test_importing_nic_jax_starts_jax_with_the_defaults():
    """Importing the package sets the defaults (so every command line, and a
    notebook that imports nic_jax before JAX runs, has them), and XLA:CPU accepts
    them (an unknown flag in XLA_FLAGS aborts the backend's start)."""
    program = (
        "import os\n"
        "import nic_jax\n"
        "import jax.numpy as jnp\n"
        "print(os.environ['XLA_FLAGS'])\n"
        "print(float(jnp.ones((2, 2)).sum()))\n"
    )
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    flags_line, total = done.stdout.split("\n")[:2]
    assert flags_line == "--xla_gpu_enable_triton_gemm=false"
    assert float(total) == 4.0
