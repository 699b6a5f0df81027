"""ShowTell, Att2in2 and TopDown against numpy ports of self-critical.pytorch.

The numpy references below are written from upstream's equations (models/
ShowTellModel.py, models/AttModel.py: Attention, Att2in2Core, TopDownCore) and
read the same params dict; parameter counts are checked against issue 4's figures.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from ml_collections import ConfigDict

from configs.default import get_config
from nic_jax.data.batches import train_batch
from nic_jax.decoding import caption_lengths, decode, teacher_forced_logprobs
from nic_jax.errors import InputError
from nic_jax.models.attention import Attention
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.models.registry import get_model_class
from nic_jax.train import common, xe
from nic_jax.train.optim import make_optimizer

NAMES = ("showtell", "att2in2", "topdown")
VOCAB = 9
SMALL = dict(
    fc_feat_size=6,
    att_feat_size=5,
    input_encoding_size=4,
    rnn_size=3,
    att_hid_size=7,
    drop_prob_lm=0.5,
    num_layers=2,
)


def _config(name, **overrides):
    return ConfigDict(dict(SMALL, name=name, **overrides))


def _feats(batch=3, regions=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "fc": jnp.asarray(rng.normal(size=(batch, 6)), jnp.float32),
        "att": jnp.asarray(rng.normal(size=(batch, regions, 5)), jnp.float32),
    }


def _setup(name, seed=0):
    config = _config(name)
    params = init_params(config, VOCAB, jax.random.key(seed))
    return build_decoder(config, VOCAB), params


@functools.partial(jax.jit, static_argnums=0)
def _run_steps(decoder, params, feats, tokens):
    """Log-probs (B, T, V + 1) after feeding tokens (T, B) one step at a time."""
    ctx = decoder.encode(params, feats)
    state = decoder.init_state(params, ctx)
    out = []
    for token in tokens:
        logprobs, state = decoder.step(params, ctx, state, token)
        out.append(logprobs)
    return jnp.stack(out, 1)


# ---- numpy references (float64) ---------------------------------------------


def _lin(p, x):
    return x @ p["kernel"] + p["bias"]


def _sig(z):
    return 1 / (1 + np.exp(-z))


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_attention(p, h, att, p_att, mask=None):
    scores = _lin(p["alpha_net"], np.tanh(p_att + _lin(p["h2att"], h)[:, None]))[..., 0]
    weight = np.exp(scores - scores.max(-1, keepdims=True))
    weight = weight / weight.sum(-1, keepdims=True)
    if mask is not None:
        weight = weight * mask
        weight = weight / weight.sum(-1, keepdims=True)
    return np.einsum("bk,bkd->bd", weight, att)


def _np_torch_lstm(x, h, c, w_ih, w_hh, b_ih=0.0, b_hh=0.0):
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = _sig(f) * c + _sig(i) * np.tanh(g)
    return _sig(o) * np.tanh(c), c


def _np_showtell(p, feats, tokens):
    core = p["core"]

    def lstm(x, hs, cs):
        for k in range(2):
            w = (core[f"weight_ih_l{k}"], core[f"weight_hh_l{k}"])
            hs[k], cs[k] = _np_torch_lstm(x, hs[k], cs[k], *w)
            x = hs[k]
        return x

    hs, cs = [np.zeros((len(tokens[0]), 3)) for _ in range(2)], [0.0, 0.0]
    lstm(_lin(p["img_embed"], feats["fc"]), hs, cs)
    outs = [lstm(p["embed"]["embedding"][t], hs, cs) for t in tokens]
    return np.stack([_log_softmax(_lin(p["logit"], o)) for o in outs], 1)


def _np_embedded(p, feats):
    att = np.maximum(_lin(p["att_embed"], feats["att"]), 0)
    return att, _lin(p["ctx2att"], att)


def _np_att2in2(p, feats, tokens):
    att, p_att = _np_embedded(p, feats)
    core, outs = p["core"], []
    h = c = np.zeros((len(tokens[0]), 3))
    for t in tokens:
        xt = np.maximum(p["embed"]["embedding"][t], 0)
        ctx = _np_attention(core["attention"], h, att, p_att)
        sums = _lin(core["i2h"], xt) + _lin(core["h2h"], h)
        cand = sums[:, 9:] + _lin(core["a2c"], ctx)
        c = _sig(sums[:, 3:6]) * c + _sig(sums[:, :3]) * np.maximum(
            cand[:, :3], cand[:, 3:]
        )
        h = _sig(sums[:, 6:9]) * np.tanh(c)
        outs.append(_log_softmax(_lin(p["logit"], h)))
    return np.stack(outs, 1)


def _cell(p, x, h, c):
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return _np_torch_lstm(x, h, c, *(p[n] for n in names))


def _np_topdown(p, feats, tokens):
    att, p_att = _np_embedded(p, feats)
    fc = np.maximum(_lin(p["fc_embed"], feats["fc"]), 0)
    core, outs = p["core"], []
    h_att = c_att = h_lang = c_lang = np.zeros((len(tokens[0]), 3))
    for t in tokens:
        xt = np.maximum(p["embed"]["embedding"][t], 0)
        x1 = np.concatenate([h_lang, fc, xt], -1)
        h_att, c_att = _cell(core["att_lstm"], x1, h_att, c_att)
        ctx = _np_attention(core["attention"], h_att, att, p_att)
        x2 = np.concatenate([ctx, h_att], -1)
        h_lang, c_lang = _cell(core["lang_lstm"], x2, h_lang, c_lang)
        outs.append(_log_softmax(_lin(p["logit"], h_lang)))
    return np.stack(outs, 1)


REFERENCES = {"showtell": _np_showtell, "att2in2": _np_att2in2, "topdown": _np_topdown}


# ---- tests ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_log_probs_match_numpy_reference_and_normalise(name):
    decoder, params = _setup(name)
    feats = _feats()
    tokens = np.array([[0, 0, 0], [4, 9, 1], [2, 2, 7]])
    got = np.asarray(_run_steps(decoder, params, feats, tokens))
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    f64 = {k: np.asarray(v, np.float64) for k, v in feats.items()}
    np.testing.assert_allclose(got, REFERENCES[name](p64, f64, tokens), atol=1e-5)
    np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, atol=1e-5)


UPSTREAM_512 = dict(
    input_encoding_size=512,
    rnn_size=512,
    att_hid_size=512,
    fc_feat_size=2048,
    att_feat_size=2048,
    drop_prob_lm=0.5,
    num_layers=1,
)


def _count(name, vocab=9487):
    config = ConfigDict(dict(UPSTREAM_512, name=name))
    cls = get_model_class(name)
    model = nnx.eval_shape(lambda: cls(config, vocab, nnx.Rngs(params=0)))
    return sum(x.size for x in jax.tree.leaves(nnx.state(model)))


@pytest.mark.parametrize(
    "name,millions",
    [("fc", 13.40), ("att2in2", 14.45), ("topdown", 19.70), ("updown", 19.70)],
)
def test_parameter_counts_equal_published_figures(name, millions):
    assert round(_count(name) / 1e6, 2) == millions


def test_showtell_count_equals_torch_lstm_without_bias():
    enc, rnn, feat, out = 512, 512, 2048, 9488
    lstm = 4 * rnn * (enc + rnn)  # nn.LSTM(bias=False): weight_ih_l0, weight_hh_l0
    expected = feat * enc + enc + lstm + out * enc + rnn * out + out
    assert _count("showtell") == expected


def test_parameter_names_and_layouts_follow_upstream_state_dicts():
    params = init_params(_config("topdown"), VOCAB, jax.random.key(0))
    core = params["core"]
    assert sorted(params) == sorted(
        ["embed", "fc_embed", "att_embed", "ctx2att", "logit", "core"]
    )
    assert core["att_lstm"]["weight_ih"].shape == (12, 4 + 2 * 3)  # (4R, E + 2R)
    assert core["lang_lstm"]["weight_hh"].shape == (12, 3)
    assert core["lang_lstm"]["bias_ih"].shape == (12,)
    assert core["attention"]["alpha_net"]["kernel"].shape == (7, 1)
    att2in2 = init_params(_config("att2in2"), VOCAB, jax.random.key(0))
    assert "fc_embed" not in att2in2  # upstream replaces it by the identity
    assert att2in2["core"]["a2c"]["kernel"].shape == (3, 6)
    showtell = init_params(_config("showtell"), VOCAB, jax.random.key(0))
    assert sorted(showtell["core"]) == [
        "weight_hh_l0",
        "weight_hh_l1",
        "weight_ih_l0",
        "weight_ih_l1",
    ]
    np.testing.assert_array_equal(showtell["logit"]["bias"], 0.0)
    assert np.abs(showtell["embed"]["embedding"]).max() <= 0.1
    assert np.abs(showtell["core"]["weight_ih_l0"]).max() <= 1 / np.sqrt(3)


def test_attention_mask_zeroes_regions_and_all_ones_equals_no_mask():
    attention = Attention(3, 7, nnx.Rngs(params=0))
    rng = np.random.default_rng(1)
    h = jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)
    p_att = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
    mask = jnp.array([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0]], jnp.float32)
    weights = attention.weights(h, p_att, mask)
    np.testing.assert_array_equal(np.asarray(weights)[np.asarray(mask) == 0], 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights[1, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(
        attention.weights(h, p_att, jnp.ones((2, 5))),
        attention.weights(h, p_att),
        atol=1e-7,
    )


@pytest.mark.parametrize("name", ["att2in2", "topdown"])
def test_masked_padding_equals_the_valid_regions_alone(name):
    decoder, params = _setup(name)
    feats = _feats(batch=2, regions=3)
    padding = jnp.asarray(np.random.default_rng(2).normal(size=(2, 2, 5)), jnp.float32)
    padded = {
        "fc": feats["fc"],
        "att": jnp.concatenate([feats["att"], padding], 1),
        "att_mask": jnp.array([[1, 1, 1, 0, 0]] * 2),
    }
    tokens = np.array([[0, 0], [3, 5]])
    np.testing.assert_allclose(
        _run_steps(decoder, params, padded, tokens),
        _run_steps(decoder, params, feats, tokens),
        atol=1e-6,
    )
    no_mask = dict(padded, att_mask=jnp.ones((2, 5)))
    unmasked = {k: v for k, v in padded.items() if k != "att_mask"}
    np.testing.assert_allclose(
        _run_steps(decoder, params, no_mask, tokens),
        _run_steps(decoder, params, unmasked, tokens),
        atol=1e-6,
    )


@pytest.mark.parametrize("name", NAMES)
def test_rows_of_a_batch_are_independent(name):
    decoder, params = _setup(name)
    feats = _feats(batch=3)
    tokens = np.array([[0, 0, 0], [1, 6, 8]])
    batched = _run_steps(decoder, params, feats, tokens)
    for row in range(3):
        alone = {k: v[row : row + 1] for k, v in feats.items()}
        single = _run_steps(decoder, params, alone, tokens[:, row : row + 1])
        np.testing.assert_allclose(batched[row], single[0], atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_teacher_forcing_scores_greedy_captions_as_decoded(name):
    decoder, params = _setup(name, seed=3)
    feats = _feats(batch=4, seed=5)

    @jax.jit
    def greedy_then_forced(params, feats):
        tokens, logprobs = decode(decoder, params, feats, max_len=6)
        forced = teacher_forced_logprobs(decoder, params, feats, tokens[:, None])
        return tokens, logprobs, forced[:, 0]

    tokens, logprobs, forced = greedy_then_forced(params, feats)
    keep = np.arange(6) <= np.asarray(caption_lengths(tokens))[:, None]
    np.testing.assert_allclose(np.where(keep, forced[:, :6], 0.0), logprobs, atol=1e-5)


@pytest.mark.parametrize("name", ["topdown", "showtell"])
def test_encode_dropout_only_with_a_key(name):
    decoder, params = _setup(name)
    feats = _feats()
    evaluation = decoder.encode(params, feats)
    again = decoder.encode(params, feats, None)
    train = decoder.encode(params, feats, jax.random.key(4))
    for e, a, t in zip(*map(jax.tree.leaves, (evaluation, again, train))):
        np.testing.assert_array_equal(e, a)
        assert not np.allclose(e, t)
    if name == "topdown":  # inverted dropout: kept units scaled by 1 / (1 - p)
        kept = np.asarray(train["att"]) != 0
        np.testing.assert_allclose(
            np.asarray(train["att"])[kept], 2 * np.asarray(evaluation["att"])[kept]
        )


def test_wrong_region_features_raise_input_error():
    decoder, params = _setup("topdown")
    bad = dict(_feats(), att=jnp.zeros((3, 4, 8)))
    with pytest.raises(InputError, match="att_feat_size"):
        decoder.encode(params, bad)
    with pytest.raises(InputError, match="no 'att'"):
        decoder.encode(params, {"fc": bad["fc"]})


def _xe_update(decoder, optimizer, params, opt_state, batch, key):
    loss_fn = functools.partial(xe.xe_loss, decoder, batch=batch, key=key, ss_prob=0.0)
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@pytest.mark.parametrize("name", NAMES)
def test_xe_steps_on_tiny_shapes_reduce_the_loss(name):
    config = get_config("tiny").copy_and_resolve_references()
    config.model.name = name
    config.optim.learning_rate = 2e-3
    dataset, decoder = common.setup_data_and_decoder(config, ("train",))
    optimizer = make_optimizer(config.optim, 12)
    params = init_params(config.model, decoder.vocab_size, jax.random.key(0))
    opt_state = optimizer.init(params)
    update = jax.jit(functools.partial(_xe_update, decoder, optimizer))
    losses = []
    for position in range(8):
        batch = train_batch(
            dataset.splits["train"], 0, position, 10, 5, decoder.uses_att
        )
        key = jax.random.key(position)
        params, opt_state, loss = update(params, opt_state, batch, key)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
