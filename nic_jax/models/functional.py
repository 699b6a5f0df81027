"""The functional boundary: decoders as pure functions of a plain-dict params pytree.

Everything outside `models/` sees a `Decoder` whose methods take `params` first. That
one fact lets the same decoder be `jax.grad`-ed (XE, SCST) and `jax.vmap`-ed over a
population of perturbed params (NES, ES): `nnx.merge` happens at trace time only.
"""

import dataclasses

import jax
from flax import nnx

from nic_jax.models.registry import get_model_class


@dataclasses.dataclass(frozen=True)
class Decoder:
    """Pure view of an NNX decoder. `graphdef` is static and hashable."""

    name: str
    graphdef: nnx.GraphDef
    vocab_size: int  # V; outputs have V + 1 entries (0 = EOS)
    uses_att: bool

    def _module(self, params):
        return nnx.merge(self.graphdef, params)

    def encode(self, params, feats: dict, key=None):
        """Per-image context from features (computed once per image); `key` is
        the dropout key of the feature embeddings (None: evaluation)."""
        return self._module(params).encode(feats, key)

    def init_state(self, params, ctx):
        """Decoder state before the BOS token, per image."""
        return self._module(params).init_state(ctx)

    def step(self, params, ctx, state, token, key=None):
        """One decode step: (log-probs (..., V + 1), new state)."""
        return self._module(params).step(ctx, state, token, key)

    def step_logits(self, params, ctx, state, token, key=None):
        """`step` before the log-softmax: (logits (..., V + 1), new state)."""
        return self._module(params).step_logits(ctx, state, token, key)


def _make(model_config, vocab_size: int, key):
    cls = get_model_class(model_config.name)
    return cls(model_config, vocab_size, rngs=nnx.Rngs(params=key))


def build_decoder(model_config, vocab_size: int) -> Decoder:
    """Returns the pure `Decoder` for `config.model` and a vocabulary of V words."""
    abstract = nnx.eval_shape(
        lambda: _make(model_config, vocab_size, jax.random.key(0))
    )
    graphdef, _ = nnx.split(abstract)
    cls = get_model_class(model_config.name)
    return Decoder(model_config.name, graphdef, vocab_size, cls.uses_att)


def init_params(model_config, vocab_size: int, key) -> dict:
    """Fresh params as a plain nested dict of arrays.

    The initialisers run as one jit-compiled program: run eagerly, each distinct
    shape compiles its own small kernels (seconds for an attention model).
    """

    def make(key):
        _, state = nnx.split(_make(model_config, vocab_size, key))
        return nnx.to_pure_dict(state)

    return jax.jit(make)(key)
