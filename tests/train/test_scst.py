"""SCST: the loss and baselines of self-critical.pytorch, the gradient's direction,
learning from a tiny XE checkpoint, and exact resume."""

import functools
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from ml_collections import ConfigDict

from configs.default import get_config as xe_config
from configs.scst import get_config as scst_config
from nic_jax import rewards
from nic_jax.decoding import decode, teacher_forced_logprobs
from nic_jax.errors import InputError
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.train import checkpoint, common, scst, xe
from nic_jax.train.metric_writer import read_metrics

V, N, T = 7, 6, 6


def _tiny(drop=0.0, name="fc"):
    config = ConfigDict(
        dict(
            name=name,
            fc_feat_size=5,
            att_feat_size=4,
            input_encoding_size=8,
            rnn_size=8,
            att_hid_size=6,
            num_layers=2,
            drop_prob_lm=drop,
        )
    )
    params = init_params(config, V, jax.random.key(1))
    params["logit"]["bias"] = params["logit"]["bias"].at[0].add(1.0)  # short captions
    fc = jax.random.normal(jax.random.key(2), (N, 5)) * 3
    att = jax.random.normal(jax.random.key(3), (N, 3, 4))
    return build_decoder(config, V), params, {"fc": fc, "att": att}


def _reward():
    rng = np.random.default_rng(0)
    labels = np.zeros((N, 2, T), np.int32)
    for i in range(N):
        for j in range(2):
            n = rng.integers(1, T)
            labels[i, j, :n] = rng.integers(1, V + 1, n)
    split = types.SimpleNamespace(labels=labels, num_refs=np.full(N, 2, np.int32))
    return rewards.build_reward(split, V)


@functools.partial(jax.jit, static_argnums=0)
def _sequence_logprob(decoder, params, feats, tokens):
    """(B, n) log p of each caption's words and EOS by teacher forcing, eval mode."""
    per_token = teacher_forced_logprobs(decoder, params, feats, tokens)[..., :T]
    return jnp.where(rewards.policy_mask(tokens), per_token, 0.0).sum(-1)


def test_loss_is_self_criticals_reward_criterion():
    rng = np.random.default_rng(0)
    tokens = np.array([[3, 1, 0, 0], [2, 2, 2, 2], [0, 0, 0, 0]])
    logprobs = np.where(tokens > 0, -rng.random(tokens.shape), 0.0)
    logprobs[0, 2] = logprobs[2, 0] = -0.7  # the EOS steps
    advantage = np.array([0.5, -2.0, 1.5])
    mask = np.concatenate([np.ones((3, 1)), tokens[:, :-1] > 0], 1)
    expected = -(logprobs * advantage[:, None] * mask).sum() / mask.sum()
    got = scst.policy_gradient_loss(jnp.asarray(logprobs), tokens, advantage)
    assert float(got) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["fc", "topdown"])
def test_samples_score_as_teacher_forcing_and_first_entropy_is_the_models(name):
    decoder, params, feats = _tiny(name=name)
    sample = jax.jit(scst.sample_captions, static_argnums=(0, 4, 5))
    tokens, logprobs, entropy = sample(decoder, params, feats, jax.random.key(0), 3, T)
    assert tokens.shape == (N, 3, T) and len(np.unique(tokens[:, :, 0])) > 1
    done = np.cumsum(np.asarray(tokens) == 0, -1) > 0
    assert np.all(np.asarray(tokens)[done] == 0)  # 0 after the end
    np.testing.assert_allclose(
        logprobs.sum(-1), _sequence_logprob(decoder, params, feats, tokens), atol=1e-5
    )
    ctx = decoder.encode(params, feats)
    bos = jnp.zeros(N, jnp.int32)
    first, _ = jax.jit(decoder.step)(params, ctx, decoder.init_state(params, ctx), bos)
    expected = -(jnp.exp(first) * first).sum(-1)  # the same for every sample
    np.testing.assert_allclose(
        entropy[:, :, 0], np.broadcast_to(expected[:, None], (N, 3)), rtol=1e-5
    )


def test_a_positive_advantage_makes_the_sampled_caption_likelier():
    decoder, params, feats = _tiny()
    feats = {"fc": feats["fc"][:1]}  # one caption: its own gradient alone
    key = jax.random.key(11)  # draws a two-word caption and its EOS
    sample = jax.jit(lambda p: scst.sample_captions(decoder, p, feats, key, 1, T))
    tokens, _, _ = sample(params)
    assert int((tokens > 0).sum()) >= 2

    def loss(params, advantage):
        _, logprobs, _ = scst.sample_captions(decoder, params, feats, key, 1, T)
        return scst.policy_gradient_loss(logprobs, tokens, advantage)

    grad_fn = jax.jit(jax.grad(loss))
    before = _sequence_logprob(decoder, params, feats, tokens)
    for sign in (1.0, -1.0):
        grads = grad_fn(params, jnp.full((1, 1), sign))
        stepped = jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)
        after = _sequence_logprob(decoder, stepped, feats, tokens)
        assert float(sign * (after - before)[0, 0]) > 1e-4


def test_mean_baseline_is_the_other_samples_mean():
    sample_rewards = jnp.asarray(np.random.default_rng(0).random((4, 5)))
    baseline = scst.mean_baseline(sample_rewards)
    for b in range(4):
        for j in range(5):
            others = np.delete(np.asarray(sample_rewards[b]), j)
            assert float(baseline[b, j]) == pytest.approx(others.mean(), rel=1e-6)
    np.testing.assert_allclose((sample_rewards - baseline).sum(1), 0.0, atol=1e-6)


def test_greedy_baseline_is_decoded_without_dropout():
    decoder, params, feats = _tiny(drop=0.5)
    reward = _reward()
    batch = dict(feats, index=np.arange(N))
    loss_fn = functools.partial(
        scst.scst_loss, num_samples=2, baseline="greedy", max_len=T
    )
    _, metrics = jax.jit(loss_fn, static_argnums=1)(
        params, decoder, reward, batch, jax.random.key(5)
    )
    greedy = jax.jit(lambda p: decode(decoder, p, feats, max_len=T)[0])(params)
    assert float(metrics["scst/baseline_mean"]) == pytest.approx(
        float(jax.jit(reward)(greedy, np.arange(N)).mean()), rel=1e-6
    )


def test_bad_settings_name_the_field():
    config = scst_config("tiny")
    with config.unlocked():
        config.scst.baseline = "mean"
        config.scst.num_samples = 1
    with pytest.raises(InputError, match="scst.num_samples=1"):
        scst.check_scst_config(config.scst)
    with config.unlocked():
        config.scst.baseline = "average"
    with pytest.raises(InputError, match="scst.baseline='average'"):
        scst.check_scst_config(config.scst)


class _Interrupt(Exception):
    pass


def _params(workdir, config):
    manager = checkpoint.make_manager(workdir, config.ckpt, "val/CIDEr", read_only=True)
    step = manager.latest_step()
    restored = manager.restore(
        step, args=ocp.args.Composite(params=ocp.args.StandardRestore())
    )
    return step, restored.params


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny XE checkpoint and an SCST run started from it."""
    root = tmp_path_factory.mktemp("scst")
    xe_cfg = xe_config("tiny").copy_and_resolve_references()
    xe_cfg.xe.num_epochs, xe_cfg.optim.learning_rate = 6, 5e-3
    xe_cfg.evals.every_steps, xe_cfg.evals.final_split = 1000, ""
    xe.train_and_evaluate(xe_cfg, str(root / "xe"))
    config = scst_config("tiny").copy_and_resolve_references()
    config.optim.learning_rate = 1e-2  # a short run must move the tiny model
    config.ckpt.init_from = str(root / "xe")
    config.evals.final_split = ""
    scst.train_and_evaluate(config, str(root / "scst"))
    return root, config


def test_init_from_must_be_a_run_of_the_same_model(runs, tmp_path):
    root, config = runs
    config = config.copy_and_resolve_references()
    config.ckpt.init_from = str(tmp_path / "nowhere")
    with pytest.raises(InputError, match="ckpt.init_from=.*nowhere"):
        scst.train_and_evaluate(config, str(tmp_path / "a"))
    config.ckpt.init_from = str(root / "xe")
    config.model.rnn_size = 16
    with pytest.raises(InputError, match="model.rnn_size=32 but the config says 16"):
        scst.train_and_evaluate(config, str(tmp_path / "b"))


def _train_rewards(config, workdir):
    """Mean greedy and sampled (8 draws) reward over the train split."""
    dataset, decoder = common.setup_data_and_decoder(config, ("train",))
    train = dataset.splits["train"]
    reward = rewards.reward_from_config(config.scst, train, dataset.vocab_size)
    _, params = _params(workdir, config)
    rows, feats = np.arange(len(train.fc)), {"fc": train.fc}

    @functools.partial(jax.jit, static_argnums=1)
    def score(key, greedy):
        method = "greedy" if greedy else "sample"
        return reward(decode(decoder, params, feats, key, method)[0], rows).mean()

    keys = jax.random.split(jax.random.key(0), 8)
    sampled = np.mean([score(k, False) for k in keys])
    return float(score(keys[0], True)), float(sampled)


def test_scst_from_xe_raises_the_train_reward(runs):
    root, config = runs
    greedy_before, sampled_before = _train_rewards(config, root / "xe")
    greedy_after, sampled_after = _train_rewards(config, root / "scst")
    assert greedy_after > greedy_before + 0.02
    assert sampled_after > sampled_before
    lines = read_metrics(os.path.join(root / "scst", "metrics.jsonl"))
    logged = {k for line in lines for k in line}
    assert {"scst/reward_mean", "scst/baseline_mean", "scst/advantage_std"} <= logged
    assert {"scst/entropy", "val/CIDEr", "train/loss"} <= logged


def test_interrupted_then_resumed_equals_uninterrupted(runs, tmp_path, monkeypatch):
    root, config = runs
    workdir = str(tmp_path / "resumed")
    real_batch = scst.train_batch

    def crash_at_position_9(split, seed, position, *args):
        if position == 9:
            raise _Interrupt
        return real_batch(split, seed, position, *args)

    monkeypatch.setattr(scst, "train_batch", crash_at_position_9)
    with pytest.raises(_Interrupt):
        scst.train_and_evaluate(config, workdir)
    monkeypatch.setattr(scst, "train_batch", real_batch)
    scst.train_and_evaluate(config, workdir)

    step_a, params_a = _params(root / "scst", config)
    step_b, params_b = _params(workdir, config)
    assert step_a == step_b
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    full = read_metrics(os.path.join(root / "scst", "metrics.jsonl"))
    resumed = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    assert [m["step"] for m in full] == [m["step"] for m in resumed]
    for a, b in zip(full, resumed):
        for key in a:
            np.testing.assert_allclose(
                a[key], b[key], rtol=1e-6, atol=1e-6, err_msg=key
            )
