"""Ensembles decode as self-critical.pytorch's AttEnsemble: members advance on the
shared previous word; per-step log-probs are combined; greedy and beam search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from ml_collections import ConfigDict

from configs.default import get_config
from nic_jax.decoding import beam_search, decode, teacher_forced_logprobs
from nic_jax.decoding.ensemble import Ensemble, combine_logprobs
from nic_jax.errors import InputError
from nic_jax.evaluation.ensemble import evaluate_ensemble, podium_members
from nic_jax.growth import widen
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.train import checkpoint, common

VOCAB = 11


def member(name: str, seed: int, vocab=VOCAB):
    config = ConfigDict(
        dict(
            name=name,
            fc_feat_size=6,
            att_feat_size=6,
            att_hid_size=5,
            input_encoding_size=8,
            rnn_size=8,
            drop_prob_lm=0.5,
        )
    )
    params = init_params(config, vocab, jax.random.key(seed))
    out = "logit"  # fresh decoders are near uniform: peak them
    params = params | {out: jax.tree.map(lambda x: 30.0 * x, params[out])}
    return config, build_decoder(config, vocab), params


def features(seed=0, batch=3):
    rng = np.random.default_rng(seed)
    return {
        "fc": jnp.asarray(rng.normal(size=(batch, 6)), jnp.float32),
        "att": jnp.asarray(rng.normal(size=(batch, 4, 6)), jnp.float32),
    }


@pytest.mark.parametrize("weights", [None, (1.0, 3.0)])
def test_combine_matches_numpy(weights):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, VOCAB + 1)) * 3
    logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    w = np.ones(2) if weights is None else np.asarray(weights)
    w = (w / w.sum())[:, None, None]
    mean_prob = np.log((w * np.exp(logprobs)).sum(0))
    geometric = (w * logprobs).sum(0)
    geometric -= np.log(np.exp(geometric).sum(-1, keepdims=True))
    got = jnp.asarray(logprobs, jnp.float32)
    np.testing.assert_allclose(
        combine_logprobs(got, "mean_prob", weights), mean_prob, atol=1e-5
    )
    np.testing.assert_allclose(
        combine_logprobs(got, "mean_logprob", weights), geometric, atol=1e-5
    )


def reference_greedy(members, feats, combine, max_len=16):
    """Per-step Python loop: each member steps on the shared previous word; the
    combined distribution (numpy) picks the next word."""
    ctxs = [d.encode(p, feats) for _, d, p in members]
    states = [d.init_state(p, c) for (_, d, p), c in zip(members, ctxs)]
    steps = [jax.jit(d.step) for _, d, _ in members]
    token = np.zeros(feats["fc"].shape[0], np.int32)
    done, tokens = np.zeros_like(token, bool), []
    for _ in range(max_len):
        outs = [
            step(p, c, s, jnp.asarray(token))
            for step, (_, _, p), c, s in zip(steps, members, ctxs, states)
        ]
        states = [s for _, s in outs]
        logprobs = np.stack([np.asarray(lp, np.float64) for lp, _ in outs])
        if combine == "mean_prob":
            combined = np.log(np.exp(logprobs).mean(0))
        else:
            combined = logprobs.mean(0)
        token = np.where(done, 0, combined.argmax(-1))
        done |= token == 0
        tokens.append(token)
    return np.stack(tokens, -1)


@pytest.mark.parametrize("combine", ["mean_prob", "mean_logprob"])
def test_greedy_of_mixed_members_equals_a_step_by_step_reference(combine):
    fc = member("fc", 0)
    topdown = member("topdown", 1)
    params, grown_config = widen(topdown[2], topdown[0], 0, 2, "r2r", 0)
    wide = (grown_config, build_decoder(grown_config, VOCAB), params)
    members = [fc, topdown, wide]  # three architectures, one vocabulary
    ensemble = Ensemble(tuple(d for _, d, _ in members), combine)
    feats = features()
    tokens, _ = jax.jit(lambda p: decode(ensemble, p, feats))(
        tuple(p for _, _, p in members)
    )
    expected = reference_greedy(members, feats, combine)
    np.testing.assert_array_equal(tokens, expected)
    alone = [np.asarray(decode(d, p, feats)[0]) for _, d, p in members]
    assert any((tokens != a).any() for a in alone)  # the ensemble is not one member


@pytest.mark.parametrize("beam_size", [1, 3])
def test_copies_of_one_member_decode_as_the_member(beam_size):
    _, decoder, params = member("att2in2", 2)
    feats = features(1)
    for combine in ("mean_prob", "mean_logprob"):
        ensemble = Ensemble((decoder, decoder), combine, weights=(1.0, 2.0))
        got = beam_search(ensemble, (params, params), feats, beam_size)
        want = beam_search(decoder, params, feats, beam_size)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    if beam_size == 1:  # beam 1 is greedy
        np.testing.assert_array_equal(got[0], decode(decoder, params, feats)[0])


def test_mean_prob_likelihood_is_at_least_the_members_mean():
    """Jensen: log mean_i p_i >= mean_i log p_i at each step, so the ensemble's
    teacher-forced log-likelihood is at least its members' average."""
    members = [member("fc", seed) for seed in range(3)]
    ensemble = Ensemble(tuple(d for _, d, _ in members))
    feats = features(2)
    labels = jnp.asarray(np.random.default_rng(3).integers(1, VOCAB + 1, (3, 2, 7)))
    both = teacher_forced_logprobs(
        ensemble, tuple(p for _, _, p in members), feats, labels
    ).sum(-1)
    each = [teacher_forced_logprobs(d, p, feats, labels).sum(-1) for _, d, p in members]
    average = np.mean(each, axis=0)
    assert np.all(np.asarray(both) >= average - 1e-5)
    assert np.all(np.asarray(both) > np.min(each, axis=0))
    assert float(np.max(np.asarray(both) - average)) > 1e-3  # strictly, here


def test_bad_ensembles_are_refused():
    _, small, _ = member("fc", 0, vocab=VOCAB)
    _, large, _ = member("fc", 0, vocab=VOCAB + 1)
    with pytest.raises(InputError, match="vocabularies of \\[11, 12\\] words"):
        Ensemble((small, large))
    with pytest.raises(InputError, match="combine='max' is unknown"):
        Ensemble((small, small), "max")
    with pytest.raises(InputError, match="expected 2 positive numbers"):
        Ensemble((small, small), weights=(1.0,))


def podium_workdir(root, rows_of, scores):
    """A NIC-ES-shaped workdir: config.json and one checkpoint whose train item
    holds the GA state (parents rows, podium scores), as the ES trainer saves."""
    config = get_config("tiny").copy_and_resolve_references()
    config.trainer = "es"
    config.evals.num_images = 4
    workdir = str(root)
    common.save_config(config, workdir)
    dataset, _ = common.setup_data_and_decoder(config, ("val",))
    params = init_params(config.model, dataset.vocab_size, jax.random.key(0))
    flat, _ = ravel_pytree(params)
    parents = np.stack([rows_of(flat, i) for i in range(len(scores) + 1)])
    train = {
        "step": np.int32(3),
        "strategy": {"parents": parents, "podium_scores": np.asarray(scores)},
    }
    manager = checkpoint.make_manager(workdir, config.ckpt, "val/CIDEr")
    meta = common.checkpoint_meta(config, dataset)
    checkpoint.save(manager, 3, params, train, meta)
    manager.wait_until_finished()
    manager.close()
    return workdir, parents


def test_podium_members_are_the_filled_rows_and_ensemble_evaluates(tmp_path):
    rows_of = lambda flat, i: np.asarray(flat) * (1.0 if i < 2 else 0.5)
    workdir, parents = podium_workdir(tmp_path, rows_of, [0.3, 0.2, -np.inf])
    members, reference = podium_members(workdir)
    assert [m.source for m in members] == [f"{workdir}@podium{i}" for i in (0, 1)]
    for m, row in zip(members, parents):
        np.testing.assert_array_equal(ravel_pytree(m.params)[0], row)
    result = evaluate_ensemble(members, reference, "val", num_images=4)
    first = result["members"][0]
    # two copies of one model: the ensemble's captions and scores are the member's
    assert result["ensemble"] == {k: v for k, v in first.items() if k != "source"}
    assert result["member_mean"] == result["member_best"] == result["ensemble"]
    assert len(result["captions"]) == 4
    with pytest.raises(InputError, match=">= 2 members"):
        evaluate_ensemble(members[:1], reference, "val")
