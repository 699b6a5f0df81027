"""The IN5400 decoders: the handout's wiring against numpy, the decoder contract
(normalised, batch-independent, teacher forcing == stepping, vmappable), and XE."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from configs.default import get_config
from nic_jax.decoding import teacher_forced_logprobs
from nic_jax.errors import InputError
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.train import xe
from nic_jax.train.metric_writer import read_metrics

NAMES = ["in5400_rnn", "in5400_gru", "in5400_lstm", "in5400_att"]
VOCAB, BATCH, HIDDEN, REGIONS = 11, 3, 6, 5
STATE_SHAPES = {
    "in5400_rnn": (1, HIDDEN),
    "in5400_gru": (2, HIDDEN),
    "in5400_lstm": (2, 2 * HIDDEN),
    "in5400_att": (2, 2 * HIDDEN),
}


def _config(name):
    return ConfigDict(
        dict(
            name=name,
            fc_feat_size=12,
            att_feat_size=9,
            input_encoding_size=8,
            rnn_size=HIDDEN,
            nn_map_size=7,
            num_regions=REGIONS,
            drop_prob_lm=0.5,
        )
    )


@functools.cache
def _jitted_init(name):
    """One compilation per model instead of one per eager initialiser op."""
    return jax.jit(lambda key: init_params(_config(name), VOCAB, key))


@functools.cache
def _setup(name, seed=0):
    params = _jitted_init(name)(jax.random.key(seed))
    return build_decoder(_config(name), VOCAB), params


def _feats(seed=0, batch=BATCH):
    rng = np.random.default_rng(seed)
    return {
        "fc": jnp.asarray(rng.normal(size=(batch, 12)), jnp.float32),
        "att": jnp.asarray(rng.normal(size=(batch, REGIONS, 9)), jnp.float32),
    }


@functools.partial(jax.jit, static_argnames=("decoder", "tokens"))
def _first_steps(decoder, params, feats, tokens=(0, 3)):
    """Log-probs of steps over `tokens` (the same token for every row); jitted
    because op-by-op dispatch compiles every primitive on its own."""
    ctx = decoder.encode(params, feats)
    state = decoder.init_state(params, ctx)
    batch = feats["fc"].shape[0]
    outputs = []
    for token in tokens:
        logprobs, state = decoder.step(params, ctx, state, jnp.full(batch, token))
        outputs.append(logprobs)
    return jnp.stack(outputs, 1), state


# Plain numpy: the cells (as tests/models/test_cells.py), then the handout's wiring.
def _sig(z):
    return 1 / (1 + np.exp(-z))


def _np_cell(kind, p, x, state):
    xh = np.concatenate([x, state[:, :HIDDEN]], -1)
    gate = lambda k, inp=xh: inp @ p["weight" + k] + p["bias" + k]
    if kind == "rnn":
        return np.tanh(gate(""))
    if kind == "gru":
        u, r = _sig(gate("_u")), _sig(gate("_r"))
        cand = np.tanh(gate("", np.concatenate([x, r * state], -1)))
        return u * state + (1 - u) * cand
    c = _sig(gate("_f")) * state[:, HIDDEN:] + _sig(gate("_i")) * np.tanh(gate(""))
    return np.concatenate([_sig(gate("_o")) * np.tanh(c), c], -1)


def _np_dense(p, x):
    return x @ p["kernel"] + p["bias"]


def _np_leaky(x):
    return np.where(x > 0, x, 0.01 * x)


def _np_log_softmax(logits):
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def _np_stacked_step(kind, p, img, token, states):
    inputs = np.concatenate([p["embed"]["embedding"][token], img], -1)
    for i in range(len(states)):
        states[i] = _np_cell(kind, p["rnn"][f"layer{i}"], inputs, states[i])
        inputs = states[i][:, :HIDDEN]
    return _np_log_softmax(_np_dense(p["output_layer"], inputs))


def _np_attention_step(p, regions, token, states):
    pooled = regions.max(1)
    x0 = np.concatenate([p["embed"]["embedding"][token], pooled], -1)
    states[0] = _np_cell("lstm", p["lstm0"]["layer0"], x0, states[0])
    scores = _np_dense(p["att_out"], _np_leaky(_np_dense(p["att_hidden"], states[0])))
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = (weights[:, :, None] * regions).sum(1)
    x1 = np.concatenate([states[0][:, :HIDDEN], attended], -1)
    states[1] = _np_cell("lstm", p["lstm1"]["layer0"], x1, states[1])
    return _np_log_softmax(_np_dense(p["output_layer"], states[1][:, :HIDDEN]))


@pytest.mark.parametrize("name", NAMES)
def test_two_steps_match_the_handout_equations_in_numpy(name):
    decoder, params = _setup(name)
    feats = _feats()
    ours, _ = _first_steps(decoder, params, feats)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    width = STATE_SHAPES[name][1]
    states = [np.zeros((BATCH, width)) for _ in range(STATE_SHAPES[name][0])]
    if name == "in5400_att":
        att = np.asarray(feats["att"], np.float64)
        regions = _np_leaky(_np_dense(p["input_layer"]["linear"], att))
        step = lambda token: _np_attention_step(p, regions, token, states)
    else:
        fc = np.asarray(feats["fc"], np.float64)
        img = _np_leaky(_np_dense(p["input_layer"]["linear"], fc))
        kind = name.split("_")[1]
        step = lambda token: _np_stacked_step(kind, p, img, token, states)
    expected = np.stack([step(np.full(BATCH, t)) for t in (0, 3)], 1)
    np.testing.assert_allclose(ours, expected, atol=2e-5)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_state_and_normalised_logprobs(name):
    decoder, params = _setup(name)
    ctx = decoder.encode(params, _feats())
    state = decoder.init_state(params, ctx)
    assert state.shape == (BATCH,) + STATE_SHAPES[name]
    np.testing.assert_array_equal(state, 0.0)
    logprobs, state = _first_steps(decoder, params, _feats())
    assert logprobs.shape == (BATCH, 2, VOCAB + 1)
    assert state.shape == (BATCH,) + STATE_SHAPES[name]
    np.testing.assert_allclose(jnp.exp(logprobs).sum(-1), 1.0, atol=1e-5)
    assert decoder.uses_att == (name == "in5400_att")


def test_params_use_the_handout_names_layout_and_init():
    _, params = _setup("in5400_lstm")
    layer1 = params["rnn"]["layer1"]
    assert set(layer1) == {
        "weight_f", "weight_i", "weight_o", "weight",
        "bias_f", "bias_i", "bias_o", "bias",
    }  # fmt: skip
    assert layer1["weight_f"].shape == (2 * HIDDEN, HIDDEN)
    assert params["rnn"]["layer0"]["weight"].shape == (8 + 7 + HIDDEN, HIDDEN)
    np.testing.assert_array_equal(layer1["bias_o"], np.full((1, HIDDEN), 2.0))
    _, gru = _setup("in5400_gru")
    assert set(gru["rnn"]["layer0"]) == {
        "weight_u", "bias_u", "weight_r", "bias_r", "weight", "bias"
    }  # fmt: skip
    np.testing.assert_array_equal(gru["rnn"]["layer1"]["bias_r"], 0.0)
    _, rnn = _setup("in5400_rnn")
    assert set(rnn["rnn"]) == {"layer0"}


@pytest.mark.parametrize("name", NAMES)
def test_rows_are_independent(name):
    decoder, params = _setup(name)
    feats = _feats(1)
    together, _ = _first_steps(decoder, params, feats)
    for row in range(BATCH):
        alone = {k: v[row : row + 1] for k, v in feats.items()}
        single, _ = _first_steps(decoder, params, alone)
        np.testing.assert_allclose(single[0], together[row], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_teacher_forcing_equals_stepping(name):
    decoder, params = _setup(name)
    feats = _feats(2)
    labels = np.array(
        [[[3, 5, 2, 0], [7, 1, 0, 0]], [[4, 4, 4, 4], [1, 0, 0, 0]], [[9, 8, 0, 0]] * 2]
    )
    forced = teacher_forced_logprobs(decoder, params, feats, jnp.asarray(labels))
    assert forced.shape == (BATCH, 2, 5)
    for ref in range(2):
        inputs = np.concatenate([np.zeros((BATCH, 1), int), labels[:, ref]], 1)
        ctx = decoder.encode(params, feats)
        state = decoder.init_state(params, ctx)
        step = jax.jit(decoder.step)
        for t in range(5):
            logprobs, state = step(params, ctx, state, jnp.asarray(inputs[:, t]))
            target = np.append(labels[:, ref], np.zeros((BATCH, 1), int), 1)[:, t]
            picked = np.asarray(logprobs)[np.arange(BATCH), target]
            np.testing.assert_allclose(forced[:, ref, t], picked, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_vmapped_population_equals_each_member(name):
    decoder, _ = _setup(name)
    members = [_setup(name, seed)[1] for seed in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
    run = lambda params: _first_steps(decoder, params, _feats(3))[0]
    batched = jax.jit(jax.vmap(run))(stacked)
    for i, member in enumerate(members):
        np.testing.assert_allclose(batched[i], run(member), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_dropout_only_with_a_key(name):
    decoder, params = _setup(name)
    feats = _feats(4)
    plain = decoder.encode(params, feats)
    again = decoder.encode(params, feats, None)
    dropped = decoder.encode(params, feats, jax.random.key(1))
    for key in plain:
        np.testing.assert_array_equal(plain[key], again[key])
        assert np.abs(np.asarray(plain[key]) - np.asarray(dropped[key])).max() > 1e-3
    state = decoder.init_state(params, plain)
    token = jnp.full(BATCH, 2)
    eval_lp, _ = decoder.step(params, plain, state, token, None)
    train_lp, _ = decoder.step(params, plain, state, token, jax.random.key(2))
    if name == "in5400_att":  # the attention MLP's dropout 0.25
        assert np.abs(eval_lp - train_lp).max() > 1e-4
    else:  # no dropout inside the handout's recurrence
        np.testing.assert_array_equal(eval_lp, train_lp)


def test_masked_regions_do_not_matter():
    decoder, params = _setup("in5400_att")
    feats = _feats(5)
    mask = np.ones((BATCH, REGIONS), np.float32)
    mask[0, 3:] = 0
    mask[2, :1] = 0
    noisy = np.asarray(feats["att"]).copy()
    noisy[mask == 0] = 50.0
    masked = lambda att: dict(feats, att=jnp.asarray(att), att_mask=jnp.asarray(mask))
    a, _ = _first_steps(decoder, params, masked(feats["att"]))
    b, _ = _first_steps(decoder, params, masked(noisy))
    np.testing.assert_allclose(a, b, atol=1e-5)
    unmasked, _ = _first_steps(decoder, params, dict(feats, att=jnp.asarray(noisy)))
    assert np.abs(unmasked - b).max() > 1e-3


@pytest.mark.parametrize(
    "name, feats, field",
    [
        ("in5400_gru", {"fc": jnp.ones((2, 5))}, "fc_feat_size"),
        ("in5400_att", {"fc": jnp.ones((2, 12))}, "att_feat_size"),
        ("in5400_att", {"att": jnp.ones((2, REGIONS + 1, 9))}, "num_regions"),
    ],
)
def test_wrong_features_raise_input_error(name, feats, field):
    decoder, params = _setup(name)
    with pytest.raises(InputError, match=field):
        decoder.encode(params, feats)


@pytest.mark.parametrize("name", NAMES)
def test_xe_on_tiny_synthetic_data_lowers_the_loss(name, tmp_path):
    config = get_config("tiny").copy_and_resolve_references()
    config.model.name = name
    config.xe.num_epochs = 1
    config.optim.learning_rate = 5e-3  # a clear drop within 12 steps
    config.log.every_steps = 4
    config.evals.every_steps = 1000  # evaluate once, at the end
    config.evals.final_split = ""
    scores = xe.train_and_evaluate(config, str(tmp_path))
    lines = read_metrics(os.path.join(tmp_path, "metrics.jsonl"))
    losses = [m["train/loss"] for m in lines if "train/loss" in m]
    assert len(losses) == 3 and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.1
    assert 0.0 <= scores["val/CIDEr"] < 10.0
