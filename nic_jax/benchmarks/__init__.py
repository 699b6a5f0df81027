"""Benchmarks run as `python -m nic_jax.benchmarks.<name>`; figures in BENCHMARKS.md."""
