"""Ensembles of decoders that decode as one: greedy, sampling, beam search.

self-critical.pytorch's `AttEnsemble` (models/AttEnsemble.py, used by
eval_ensemble.py): every member keeps its own context and state and advances on the
shared previous word; each step's log-probs are combined, by default as the log of
the (weighted) mean probability, log sum_i w_i p_i (upstream's rule), or as the
mean log-prob sum_i w_i log p_i renormalised over the vocabulary (a product of
experts). "Deep Neuroevolution With Shared Weights: Ensembling A Better Solution"
ensembles the best members of a population this way.

`Ensemble` has the interface of `models.functional.Decoder` with params a tuple
(one params dict per member), so `decode`, `beam_search`, `teacher_forced_logprobs`
and the evaluation code take it unchanged. Members may differ in architecture and
width (e.g. a widened copy beside its parent); they must share the vocabulary.
"""

import dataclasses

import jax
import jax.numpy as jnp

from nic_jax.errors import InputError

COMBINES = ("mean_prob", "mean_logprob")


def combine_logprobs(logprobs, combine: str = "mean_prob", weights=None):
    """Combines member log-probs (M, ..., V + 1) into (..., V + 1).

    mean_prob: log sum_i w_i exp(logprobs_i); mean_logprob: log_softmax of
    sum_i w_i logprobs_i. `weights` (M,) are normalised to sum 1 (None: uniform).
    """
    count = logprobs.shape[0]
    weights = jnp.ones((count,)) if weights is None else jnp.asarray(weights)
    weights = (weights / weights.sum()).astype(logprobs.dtype)
    shaped = weights.reshape((count,) + (1,) * (logprobs.ndim - 1))
    if combine == "mean_prob":
        return jax.nn.logsumexp(logprobs + jnp.log(shaped), axis=0)
    if combine == "mean_logprob":
        return jax.nn.log_softmax((logprobs * shaped).sum(0), axis=-1)
    raise InputError(f"ensemble combine={combine!r} is unknown; valid: {COMBINES}")


def _split_key(key, count: int):
    return (None,) * count if key is None else tuple(jax.random.split(key, count))


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """Several `Decoder`s decoding as one; params: a tuple, one dict per member.

    combine: "mean_prob" (self-critical.pytorch's AttEnsemble) or "mean_logprob".
    weights: one positive weight per member, or None for equal weights.
    """

    members: tuple
    combine: str = "mean_prob"
    weights: tuple | None = None

    def __post_init__(self):
        if not self.members:
            raise InputError("an ensemble needs at least one member")
        sizes = sorted({m.vocab_size for m in self.members})
        if len(sizes) > 1:
            raise InputError(
                f"ensemble members have vocabularies of {sizes} words; members must "
                "be trained on the same vocabulary"
            )
        if self.combine not in COMBINES:
            raise InputError(
                f"ensemble combine={self.combine!r} is unknown; valid: {COMBINES}"
            )
        if self.weights is not None and (
            len(self.weights) != len(self.members) or min(self.weights) <= 0
        ):
            raise InputError(
                f"ensemble weights {self.weights}: expected {len(self.members)} "
                "positive numbers, one per member"
            )

    @property
    def name(self) -> str:
        return "ensemble(" + ",".join(m.name for m in self.members) + ")"

    @property
    def vocab_size(self) -> int:
        return self.members[0].vocab_size

    @property
    def uses_att(self) -> bool:
        return any(m.uses_att for m in self.members)

    def encode(self, params, feats: dict, key=None) -> tuple:
        """Each member's context from the same features."""
        keys = _split_key(key, len(self.members))
        return tuple(
            m.encode(p, feats, k) for m, p, k in zip(self.members, params, keys)
        )

    def init_state(self, params, ctx) -> tuple:
        return tuple(m.init_state(p, c) for m, p, c in zip(self.members, params, ctx))

    def member_logprobs(self, params, ctx, state, token, key=None):
        """One step of every member: (log-probs (M, ..., V + 1), new states)."""
        keys = _split_key(key, len(self.members))
        results = [
            m.step(p, c, s, token, k)
            for m, p, c, s, k in zip(self.members, params, ctx, state, keys)
        ]
        return jnp.stack([r[0] for r in results]), tuple(r[1] for r in results)

    def step(self, params, ctx, state, token, key=None):
        """One step on the shared previous word: (combined log-probs (..., V + 1),
        the members' new states)."""
        logprobs, state = self.member_logprobs(params, ctx, state, token, key)
        return combine_logprobs(logprobs, self.combine, self.weights), state

    def step_logits(self, params, ctx, state, token, key=None):
        """`step`: combined log-probs are their own logits."""
        return self.step(params, ctx, state, token, key)
