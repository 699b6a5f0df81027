"""Widening is function-preserving for every registered decoder, both methods, the
bottom and the top layer; r2r keeps old entries bit for bit and SGD breaks its pairs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from nic_jax.decoding import teacher_forced_logprobs
from nic_jax.errors import InputError
from nic_jax.growth import (
    apply,
    layer_widening,
    num_layers,
    widen,
    widen_optimizer_state,
)
from nic_jax.losses import masked_xe
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.models.registry import MODELS

VOCAB, BATCH, REFS, WORDS = 12, 3, 2, 10  # 11 teacher-forced steps
EXTRA = 4


def model_config(name: str) -> ConfigDict:
    return ConfigDict(
        dict(
            name=name,
            fc_feat_size=9,
            att_feat_size=9,
            att_hid_size=7,
            num_layers=2,  # ShowTell: two stacked LSTMs, bottom != top
            nn_map_size=6,
            num_regions=5,
            input_encoding_size=8,
            rnn_size=10,
            drop_prob_lm=0.5,
        )
    )


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    feats = {
        "fc": jnp.asarray(rng.normal(size=(BATCH, 9)), jnp.float32),
        "att": jnp.asarray(rng.normal(size=(BATCH, 5, 9)), jnp.float32),
    }
    labels = jnp.asarray(rng.integers(1, VOCAB + 1, (BATCH, REFS, WORDS)))
    return feats, labels


def rollout_fn(decoder, num_members=None):
    """(params, feats, labels) -> (teacher-forced log-probs (B, R, T + 1), greedy
    tokens (B, L), their log-probs (B, L)), stepping the decoder from Python with
    one compiled step (fast to compile): teacher forcing feeds BOS then the labels,
    greedy its argmax (0 after EOS). With `num_members` M, params are stacked
    (M, ...) and outputs lead with M.
    """

    def start(params, feats):
        ctx = decoder.encode(params, feats)
        return ctx, decoder.init_state(params, ctx)

    step = decoder.step
    if num_members:
        start, step = jax.vmap(start, in_axes=(0, None)), jax.vmap(step)
    start, step = jax.jit(start), jax.jit(step)
    lead = (num_members,) if num_members else ()
    tile = lambda x: jnp.broadcast_to(x, lead + x.shape)

    def run(params, feats, labels, greedy_len=16):
        batch, refs, words = labels.shape
        rows = {k: jnp.repeat(v, refs, axis=0) for k, v in feats.items()}
        flat = labels.reshape(batch * refs, words)
        inputs = tile(jnp.pad(flat, ((0, 0), (1, 0))))  # BOS, w1..wT
        targets = tile(jnp.pad(flat, ((0, 0), (0, 1))))  # w1..wT, EOS
        ctx, state = start(params, rows)
        picked = []
        for t in range(words + 1):
            logprobs, state = step(params, ctx, state, inputs[..., t])
            picked.append(jnp.take_along_axis(logprobs, targets[..., t, None], -1))
        forced = jnp.concatenate(picked, -1).reshape(lead + (batch, refs, words + 1))
        ctx, state = start(params, feats)
        token = jnp.zeros(lead + (batch,), int)
        done, tokens, chosen = token > 0, [], []
        for _ in range(greedy_len):
            logprobs, state = step(params, ctx, state, token)
            token = jnp.where(done, 0, jnp.argmax(logprobs, -1))
            chosen.append(jnp.where(done, 0.0, logprobs.max(-1)))
            done = done | (token == 0)
            tokens.append(token)
        return forced, jnp.stack(tokens, -1), jnp.stack(chosen, -1)

    return run


def scale_output(params: dict, factor: float) -> dict:
    out = "logit" if "logit" in params else "output_layer"
    return params | {out: jax.tree.map(lambda x: factor * x, params[out])}


def peaked(params, run, feats, labels) -> dict:
    """Random params with the output layer scaled so the log-probs spread with std
    2 (fresh decoders are near uniform): greedy argmaxes then differ by far more
    than float rounding, and log-probs stay small enough for float32 to 1e-5."""
    logprobs = run(params, feats, labels)[0]
    return scale_output(params, 2.0 / float(jnp.std(logprobs)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_widening_preserves_logprobs_and_greedy_captions(name):
    """Bottom and top layer (one layer: the same), r2r and net2net."""
    config = model_config(name)
    feats, labels = inputs()
    run = rollout_fn(build_decoder(config, VOCAB))
    params = peaked(init_params(config, VOCAB, jax.random.key(0)), run, feats, labels)
    ref_logprobs, ref_tokens, ref_greedy_logprobs = run(params, feats, labels)
    assert ref_logprobs.shape == (BATCH, REFS, WORDS + 1)
    assert float(jnp.std(ref_logprobs)) > 1.0  # peaked: the checks below can fail
    for layer in sorted({0, num_layers(params, name) - 1}):
        grown = {}
        for method in ("r2r", "net2net"):
            grown[method], grown_config = widen(params, config, layer, EXTRA, method, 3)
        sizes = list(grown_config.hidden_sizes)
        assert sizes[layer] == config.rnn_size + EXTRA
        assert sum(sizes) == config.rnn_size * len(sizes) + EXTRA
        # both grown decoders share shapes: one compiled step, vmapped over methods
        stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), *grown.values())
        run = rollout_fn(build_decoder(grown_config, VOCAB), num_members=2)
        logprobs, tokens, greedy_logprobs = run(stacked, feats, labels)
        for index, method in enumerate(grown):
            where = f"{name} layer {layer} {method}"
            np.testing.assert_allclose(
                logprobs[index], ref_logprobs, atol=1e-5, rtol=0, err_msg=where
            )
            np.testing.assert_array_equal(tokens[index], ref_tokens, err_msg=where)
            np.testing.assert_allclose(  # the greedy path's own log-probs
                greedy_logprobs[index], ref_greedy_logprobs, atol=1e-5, err_msg=where
            )


def test_a_broken_pair_changes_the_outputs():
    """Negative control: the same check catches r2r rows that do not cancel."""
    config = model_config("fc")
    params = init_params(config, VOCAB, jax.random.key(0))
    grown, grown_config = widen(params, config, 0, EXTRA, "r2r", 1)
    logit = np.array(grown["logit"]["kernel"])
    logit[config.rnn_size + 1] = logit[config.rnn_size]  # +v, +v instead of +v, -v
    broken = {**grown, "logit": {**grown["logit"], "kernel": jnp.asarray(logit)}}
    feats, labels = inputs()
    decoder = build_decoder(grown_config, VOCAB)
    good = teacher_forced_logprobs(decoder, grown, feats, labels)
    bad = teacher_forced_logprobs(decoder, broken, feats, labels)
    ref = teacher_forced_logprobs(build_decoder(config, VOCAB), params, feats, labels)
    np.testing.assert_allclose(good, ref, atol=1e-5)
    assert float(jnp.max(jnp.abs(bad - ref))) > 1e-3


def old_entry_masks(params, widening):
    """True where a widened array holds an old entry: widen all-ones with zeros."""
    ones = jax.tree.map(jnp.ones_like, params)
    return jax.tree.map(lambda x: np.asarray(x) == 1, apply(ones, widening, "zeros"))


@pytest.mark.parametrize("name", ["topdown", "in5400_att", "showtell"])
@pytest.mark.parametrize("layer", [0, 1])
def test_r2r_keeps_every_old_entry_bit_for_bit(name, layer):
    config = model_config(name)
    params = init_params(config, VOCAB, jax.random.key(0))
    widening = layer_widening(params, name, layer, EXTRA)
    grown, _ = widen(params, config, layer, EXTRA, "r2r", 5)
    masks = old_entry_masks(params, widening)
    touched = 0
    for old, new, mask in zip(
        jax.tree.leaves(params), jax.tree.leaves(grown), jax.tree.leaves(masks)
    ):
        assert mask.sum() == old.size  # old entries form a sub-grid, in order
        np.testing.assert_array_equal(np.asarray(new)[mask], np.asarray(old).ravel())
        touched += new.shape != old.shape
        if new.shape != old.shape:  # new entries are drawn, not left at zero
            assert np.count_nonzero(np.asarray(new)[~mask]) > 0.9 * (~mask).sum()
    assert touched >= 3


def pair_columns(params, widening, path):
    """The incoming entries of each new unit of a producer: (N, ...) per unit."""
    entry = next(p for p in widening.producers if p.path == path)
    array = params
    for name in path:
        array = array[name]
    blocks = jnp.moveaxis(array, entry.axis, -1)
    blocks = blocks.reshape(blocks.shape[:-1] + (entry.gates, -1))
    return jnp.moveaxis(blocks[..., widening.width :], -1, 0)


@pytest.mark.parametrize("name", ["fc", "in5400_gru"])
def test_one_sgd_step_breaks_r2r_pair_symmetry(name):
    config = model_config(name)
    params = scale_output(init_params(config, VOCAB, jax.random.key(0)), 10.0)
    widening = layer_widening(params, name, 0, EXTRA)
    grown, grown_config = widen(params, config, 0, EXTRA, "r2r", 2)
    decoder = build_decoder(grown_config, VOCAB)
    feats, labels = inputs(1)

    def loss_fn(p):  # evaluation mode: no dropout masks tell the pair apart
        return masked_xe(teacher_forced_logprobs(decoder, p, feats, labels), labels)[0]

    grads = jax.grad(loss_fn)(grown)
    stepped = jax.tree.map(lambda p, g: p - 1.0 * g, grown, grads)
    for producer in widening.producers:
        before = pair_columns(grown, widening, producer.path)
        after = pair_columns(stepped, widening, producer.path)
        np.testing.assert_array_equal(before[0::2], before[1::2])
        if "kernel" in producer.path or producer.path[-1].startswith("weight"):
            gap = jnp.abs(after[0::2] - after[1::2]).reshape(EXTRA // 2, -1).max(-1)
            assert bool(jnp.all(gap > 1e-7)), (producer.path, gap)


def test_optimizer_state_carries_over_with_zeros_for_new_entries():
    config = model_config("topdown")
    params = init_params(config, VOCAB, jax.random.key(0))
    optimizer = optax.adam(1e-3)
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)
    _, opt_state = jax.jit(optimizer.update)(grads, optimizer.init(params), params)
    widening = layer_widening(params, "topdown", 1, EXTRA)
    grown, _ = widen(params, config, 1, EXTRA, "net2net", 0)
    grown_state = widen_optimizer_state(opt_state, params, widening)
    masks = old_entry_masks(params, widening)
    adam = grown_state[0]
    assert int(adam.count) == 1
    for moment, old_moment in ((adam.mu, opt_state[0].mu), (adam.nu, opt_state[0].nu)):
        for new, old, mask in zip(
            jax.tree.leaves(moment), jax.tree.leaves(old_moment), jax.tree.leaves(masks)
        ):
            np.testing.assert_array_equal(
                np.asarray(new)[mask], np.asarray(old).ravel()
            )
            assert not np.asarray(new)[~mask].any()
    assert jax.tree.structure(adam.mu) == jax.tree.structure(grown)
    grown_grads = jax.tree.map(jnp.ones_like, grown)
    updates, _ = jax.jit(optimizer.update)(grown_grads, grown_state, grown)
    assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, grown)


def test_bad_requests_name_the_flag():
    config = model_config("in5400_lstm")
    params = init_params(config, VOCAB, jax.random.key(0))
    with pytest.raises(InputError, match="--extra=3: r2r adds units in \\+v/-v pairs"):
        widen(params, config, 0, 3, "r2r")
    with pytest.raises(InputError, match="--layer=2: .* has layers 0..1"):
        widen(params, config, 2, 4, "r2r")
    with pytest.raises(InputError, match="method 'deeper' is unknown"):
        widen(params, config, 0, 4, "deeper")
    grown, grown_config = widen(params, config, 0, 3, "net2net")  # odd is fine
    assert list(grown_config.hidden_sizes) == [13, 10]
    assert grown["rnn"]["layer0"]["weight_f"].shape == (8 + 6 + 13, 13)
