"""Decoding over a pure decoder step: teacher forcing, greedy, sampling, beam search
(`lax` loops under jit) and the step constraints users rely on."""

from nic_jax.decoding.beam import Beams, apply_length_penalty, beam_search
from nic_jax.decoding.search import (
    HARD_TRIGRAM_PENALTY,
    SOFT_TRIGRAM_PENALTY,
    DecodeOptions,
    bad_ending_ids,
    constrain_logprobs,
    decode,
)
from nic_jax.decoding.teacher import caption_lengths, teacher_forced_logprobs

__all__ = [
    "HARD_TRIGRAM_PENALTY",
    "SOFT_TRIGRAM_PENALTY",
    "Beams",
    "DecodeOptions",
    "apply_length_penalty",
    "bad_ending_ids",
    "beam_search",
    "caption_lengths",
    "constrain_logprobs",
    "decode",
    "teacher_forced_logprobs",
]
