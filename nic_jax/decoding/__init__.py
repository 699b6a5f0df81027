"""Decoding over a pure decoder step: teacher forcing, greedy, sampling (lax.scan)."""

from nic_jax.decoding.search import decode
from nic_jax.decoding.teacher import caption_lengths, teacher_forced_logprobs

__all__ = ["caption_lengths", "decode", "teacher_forced_logprobs"]
