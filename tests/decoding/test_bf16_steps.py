"""At "bfloat16" matmul precision the decode loops read the vocabulary
projection's kernel cast to bf16 once before the loop (XLA:GPU cast each
member's kernel again at every step, BENCHMARKS.md, GPU run 2), for every
registered decoder, greedy (while and scan loops) and beam search: no cast of
that kernel inside a loop, and the same captions as when the loop casts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from nic_jax.decoding import beam, beam_search, decode, search
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.models.layers import VOCABULARY_PROJECTIONS
from nic_jax.models.registry import MODELS

VOCAB, BATCH, MAX_LEN = 12, 3, 6
LOOPS = ("while", "scan")


def _setup(name):
    """The tiny preset's model (`configs/default.py`) as `name`."""
    config = get_config("tiny").model
    config.name = name
    rng = np.random.default_rng(0)
    att = (BATCH, config.num_regions, config.att_feat_size)
    feats = {
        "fc": jnp.asarray(3 * rng.normal(size=(BATCH, config.fc_feat_size))),
        "att": jnp.asarray(rng.normal(size=att), jnp.float32),
    }
    params = init_params(config, VOCAB, jax.random.key(1))
    return build_decoder(config, VOCAB), params, feats


def _projection_shapes(params) -> set:
    """The vocabulary projection's kernel shape, and with a folded bias row."""
    shapes = set()
    for name in VOCABULARY_PROJECTIONS:
        if name in params:
            rows, cols = params[name]["kernel"].shape
            shapes |= {(rows, cols), (rows + 1, cols)}
    assert shapes, sorted(params)
    return shapes


def _casts_in_loops(jaxpr, inside=False) -> list:
    """Operand shapes of the dtype casts inside loop bodies (while, scan)."""
    found = []
    for eqn in jaxpr.eqns:
        if inside and eqn.primitive.name == "convert_element_type":
            found.append(eqn.invars[0].aval.shape)
        for name, value in eqn.params.items():
            sub = getattr(value, "jaxpr", value)
            if hasattr(sub, "eqns"):
                loop = eqn.primitive.name == "scan" or "body" in name
                found += _casts_in_loops(sub, inside or loop)
    return found


def _runs(decoder, params, feats):
    """jitted greedy (while and scan loops) and beam-3 decodes of `params`."""
    runs = {
        loop: lambda p, stop=(loop == "while"): decode(
            decoder, p, feats, max_len=MAX_LEN, early_stop=stop
        )
        for loop in LOOPS
    }
    runs["beam"] = lambda p: beam_search(decoder, p, feats, 3, max_len=MAX_LEN)
    return {kind: jax.jit(run) for kind, run in runs.items()}


CASES = [(name, ("cpu", "gpu")[i % 2]) for i, name in enumerate(sorted(MODELS))]


@pytest.mark.parametrize("name,backend", CASES)
def test_decode_loops_read_the_projection_cast_before_them(name, backend, monkeypatch):
    """The backend's name stubbed, alternating over the models ("cpu": the bias
    folded into the kernel; "gpu": kept apart)."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    decoder, params, feats = _setup(name)
    shapes = _projection_shapes(params)
    with jax.default_matmul_precision("bfloat16"):
        hoisted = {}
        for kind, run in _runs(decoder, params, feats).items():
            casts = _casts_in_loops(jax.make_jaxpr(run)(params).jaxpr)
            assert not shapes & set(casts), (kind, casts)
            hoisted[kind] = run(params)
        for module in (search, beam):  # the loops cast, as before
            monkeypatch.setattr(module, "kernels_for_steps", lambda p: p)
        for kind, run in _runs(decoder, params, feats).items():
            casts = _casts_in_loops(jax.make_jaxpr(run)(params).jaxpr)
            assert shapes & set(casts), kind  # the check sees a cast in a loop
            for got, want in zip(hoisted[kind], run(params), strict=True):
                np.testing.assert_array_equal(got, want, err_msg=kind)
