"""IN5400 cells: the handout's official cases, and random-weight float64 cases that
tell the handout's forms from their look-alikes (reset-after GRU, [h; x] order)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nic_jax.models import cells

BATCH, INPUT, HIDDEN = 3, 5, 4


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _np_gru(p, x, h, reset_after=False, h_first=False):
    """Plain-numpy GRU; the flags switch to the look-alike forms."""
    xh = np.concatenate([h, x] if h_first else [x, h], -1)
    u = _sig(xh @ p["weight_u"] + p["bias_u"])
    r = _sig(xh @ p["weight_r"] + p["bias_r"])
    if reset_after:  # cuDNN / torch.nn.GRU: r multiplies (h W_h), not h
        w_x, w_h = p["weight"][: x.shape[-1]], p["weight"][x.shape[-1] :]
        cand = np.tanh(x @ w_x + r * (h @ w_h) + p["bias"])
    else:
        parts = [r * h, x] if h_first else [x, r * h]
        cand = np.tanh(np.concatenate(parts, -1) @ p["weight"] + p["bias"])
    return u * h + (1 - u) * cand


def _np_lstm(p, x, hc, h_first=False):
    h, c = np.split(hc, 2, axis=-1)
    xh = np.concatenate([h, x] if h_first else [x, h], -1)
    f, i, o = (_sig(xh @ p["weight_" + k] + p["bias_" + k]) for k in "fio")
    c = f * c + i * np.tanh(xh @ p["weight"] + p["bias"])
    return np.concatenate([o * np.tanh(c), c], -1)


def _np_rnn(p, x, h, h_first=False):
    xh = np.concatenate([h, x] if h_first else [x, h], -1)
    return np.tanh(xh @ p["weight"] + p["bias"])


NUMPY_CELLS = {"rnn": _np_rnn, "gru": _np_gru, "lstm": _np_lstm}


def _random_case(kind, seed, input_size=INPUT):
    """float64 params with biases drawn too (the init's zeros would hide terms)."""
    rng = np.random.default_rng(seed)
    params = {
        prefix + suffix: rng.normal(size=(input_size + HIDDEN, HIDDEN))
        if prefix == "weight"
        else rng.normal(size=(1, HIDDEN))
        for suffix in cells.GATE_SUFFIXES[kind]
        for prefix in ("weight", "bias")
    }
    x = rng.normal(size=(BATCH, input_size))
    h = rng.normal(size=(BATCH, cells.state_size(kind, HIDDEN)))
    return params, x, h


def _jax_cell(kind, params, x, h):
    with jax.enable_x64(True):
        as_jax = lambda a: jnp.asarray(a, jnp.float64)
        out = cells.CELLS[kind](jax.tree.map(as_jax, params), as_jax(x), as_jax(h))
        assert out.dtype == jnp.float64
        return np.asarray(out)


def _official(shared_data, name):
    return dict(np.load(shared_data / "in5400" / f"{name}_official_cases.npz"))


@pytest.mark.parametrize("name", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_official_case_passes_within_its_atol(shared_data, name, dtype):
    cases = _official(shared_data, name)
    keys = [p + s for s in cells.GATE_SUFFIXES[name] for p in ("weight", "bias")]
    with jax.enable_x64(dtype == "float64"):
        params = {k: jnp.asarray(cases[k], dtype) for k in keys}
        cell = jax.jit(jax.vmap(cells.CELLS[name]))
        out = cell(
            params, jnp.asarray(cases["x"], dtype), jnp.asarray(cases["h"], dtype)
        )
        out = np.asarray(out, np.float64)
    assert out.shape == cases["expected"].shape and len(out) > 80
    error = np.abs(out - cases["expected"]).reshape(len(out), -1).max(-1)
    failing = [cases["test_id"][i] for i in np.flatnonzero(error > cases["atol"])]
    assert not failing, failing[:5]
    published = cases.get("published_expected")
    if published is not None:  # the handout's own expected value, every element
        known = ~np.isnan(published)
        assert known.sum() > 700
        flat = out[known].reshape(known.sum(), -1)
        error = np.abs(flat - published[known][:, None]).max(-1)
        assert np.all(error <= cases["atol"][known])


@pytest.mark.parametrize("seed", range(3))
def test_gru_is_reset_before_with_x_first(seed):
    params, x, h = _random_case("gru", seed)
    ours = _jax_cell("gru", params, x, h)
    np.testing.assert_allclose(ours, _np_gru(params, x, h), rtol=1e-12, atol=1e-12)
    assert np.abs(ours - _np_gru(params, x, h, reset_after=True)).max() > 1e-3
    assert np.abs(ours - _np_gru(params, x, h, h_first=True)).max() > 1e-3
    assert np.abs(ours - h).max() > 1e-3 and ours.shape == (BATCH, HIDDEN)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("seed", range(3))
def test_rnn_and_lstm_read_x_first(kind, seed):
    params, x, h = _random_case(kind, seed)
    ours = _jax_cell(kind, params, x, h)
    reference = NUMPY_CELLS[kind]
    np.testing.assert_allclose(ours, reference(params, x, h), rtol=1e-12, atol=1e-12)
    assert np.abs(ours - reference(params, x, h, h_first=True)).max() > 1e-3
    assert ours.shape == h.shape


def test_lstm_state_is_h_then_c():
    params, x, hc = _random_case("lstm", 7)
    ours = _jax_cell("lstm", params, x, hc)
    h, c = np.split(hc, 2, -1)
    swapped = _np_lstm(params, x, np.concatenate([c, h], -1))
    swapped = np.concatenate(np.split(swapped, 2, -1)[::-1], -1)
    assert np.abs(ours - swapped).max() > 1e-3
    # h' = o * tanh(c'): |h'| <= |tanh(c')| elementwise
    new_h, new_c = np.split(ours, 2, -1)
    assert np.all(np.abs(new_h) <= np.abs(np.tanh(new_c)) + 1e-15)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_stack_feeds_each_layer_the_h_below(kind, num_layers):
    rng = np.random.default_rng(num_layers)
    layers = [
        _random_case(kind, 10 + i, INPUT if i == 0 else HIDDEN)[0]
        for i in range(num_layers)
    ]
    x = rng.normal(size=(BATCH, INPUT))
    state = rng.normal(size=(BATCH, num_layers, cells.state_size(kind, HIDDEN)))
    expected, inputs = [], x
    for i, p in enumerate(layers):
        expected.append(NUMPY_CELLS[kind](p, inputs, state[:, i]))
        inputs = expected[-1][:, :HIDDEN]
    with jax.enable_x64(True):
        top, new_state = cells.stack_step(
            cells.CELLS[kind], jax.tree.map(jnp.asarray, layers), x, jnp.asarray(state)
        )
    np.testing.assert_allclose(new_state, np.stack(expected, 1), atol=1e-12)
    np.testing.assert_allclose(top, expected[-1][:, :HIDDEN], atol=1e-12)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_init_follows_the_handout(kind):
    params = cells.init_cell_params(jax.random.key(0), kind, 300, 212)
    assert set(params) == {
        p + s for s in cells.GATE_SUFFIXES[kind] for p in ("weight", "bias")
    }
    bias = 2.0 if kind == "lstm" else 0.0
    for name, value in params.items():
        if name.startswith("weight"):
            assert value.shape == (512, 212)
            assert abs(float(value.mean())) < 0.003
            np.testing.assert_allclose(float(value.std()), 1 / np.sqrt(512), rtol=0.02)
        else:
            assert value.shape == (1, 212)
            np.testing.assert_array_equal(value, bias)
    stack = cells.init_stack_params(jax.random.key(1), kind, 300, 212, 3)
    assert [p["weight"].shape for p in stack] == [(512, 212), (424, 212), (424, 212)]
    assert not np.allclose(stack[1]["weight"], stack[2]["weight"])


def test_cells_jit_and_differentiate():
    params = cells.init_cell_params(jax.random.key(0), "gru", INPUT, HIDDEN)
    x, h = jnp.ones((BATCH, INPUT)), jnp.zeros((BATCH, HIDDEN))
    loss = lambda p: jax.jit(cells.gru_cell)(p, x, h).sum()
    grads = jax.grad(loss)(params)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["weight"]).sum()) > 0
