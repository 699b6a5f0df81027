"""The on-device caption reward against naive CIDEr-D, pycocoevalcap and BLEU."""

import collections
import contextlib
import functools
import io
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider_scorer import CiderScorer

from configs.default import get_config
from nic_jax import rewards
from nic_jax.data import cocotalk as cocotalk_lib
from nic_jax.data import prepro_ngrams
from nic_jax.data.dataset import load_dataset
from nic_jax.errors import InputError
from nic_jax.metrics import cider
from nic_jax.metrics import df as df_lib

N, R, T, V = 9, 4, 8, 12


def _split(seed=0, full_rows=(1,)):
    """Random references (N, R, T), 2..R per image; rows in `full_rows` hold one
    reference filling all T columns (no EOS fits)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((N, R, T), np.int32)
    num_refs = rng.integers(2, R + 1, N).astype(np.int32)
    for i in range(N):
        for j in range(num_refs[i]):
            n = T if (i in full_rows and j == 0) else rng.integers(1, T - 1)
            labels[i, j, :n] = rng.integers(1, V + 1, n)
    return types.SimpleNamespace(labels=labels, num_refs=num_refs)


def _candidates(split, seed=1):
    """(N, T) captions: random, copies of a reference, a truncated reference."""
    rng = np.random.default_rng(seed)
    cands = np.zeros((N, T), np.int32)
    for i in range(N):
        n = rng.integers(1, T + 1)
        cands[i, :n] = rng.integers(1, V + 1, n)
    cands[2] = split.labels[2, 0]
    cands[3, :3] = split.labels[3, 0, :3]
    cands[3, 3:] = 0
    return cands


def _words(row, eos):
    """self-critical's array_to_str: ids up to the first 0, which is kept if eos."""
    out = []
    for w in row.tolist():
        if w == 0:
            return out + (["0"] if eos else [])
        out.append(str(w))
    return out


def _grams(words, n):
    return collections.Counter(
        tuple(words[i : i + n]) for i in range(len(words) - n + 1)
    )


def _naive_ciderd(cand, refs, df, num_images, sigma=6.0):
    """CIDEr-D as vrama91's ciderD_scorer computes it, on lists of words."""

    def vec(words):
        v = [
            {
                g: tf * (math.log(num_images) - math.log(max(1.0, df[g])))
                for g, tf in _grams(words, n).items()
            }
            for n in range(1, 5)
        ]
        return v, [math.sqrt(sum(x * x for x in d.values())) for d in v]

    hv, hn = vec(cand)
    total = 0.0
    for ref in refs:
        rv, rn = vec(ref)
        delta = len(cand) - len(ref)
        for n in range(4):
            val = sum(
                min(h, rv[n].get(g, 0.0)) * rv[n].get(g, 0.0) for g, h in hv[n].items()
            )
            if hn[n] != 0 and rn[n] != 0:
                val /= hn[n] * rn[n]
            total += val * math.exp(-(delta**2) / (2 * sigma**2)) / 4
    return 10.0 * total / len(refs)


def _naive_train_df(split):
    """df over images of the references + "<eos>" (prepro_ngrams' counting)."""
    df = collections.Counter()
    for i in range(N):
        seen = set()
        for j in range(split.num_refs[i]):
            words = _words(split.labels[i, j], eos=False) + ["0"]
            seen |= {g for n in range(1, 5) for g in _grams(words, n)}
        df.update(seen)
    return df


def test_reward_equals_naive_ciderd_with_train_df_and_eos():
    split = _split()
    cands = _candidates(split)
    reward = rewards.build_reward(split, V)
    rows = np.array([4, 0, 2, 3, 8, 1])
    got = np.asarray(jax.jit(reward)(jnp.asarray(cands[rows]), rows))
    df = _naive_train_df(split)
    for k, i in enumerate(rows):
        refs = [_words(split.labels[i, j], True) for j in range(split.num_refs[i])]
        expected = _naive_ciderd(_words(cands[i], True), refs, df, N)
        assert got[k] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert got[2] > got[0]  # image 2's caption is one of its references


def test_reward_equals_metrics_ciderd_on_gathered_references():
    split = _split(seed=3)
    cands = jnp.asarray(_candidates(split, seed=4))
    df = rewards.train_document_frequency(split.labels, split.num_refs)
    table = df.to_table(num_words=V + 1)
    mask = np.arange(R)[None] < split.num_refs[:, None]
    rows = np.array([7, 7, 0, 5])
    expected = jax.jit(functools.partial(cider.ciderd, include_eos=True))(
        cands[:4], split.labels[rows], mask[rows], table
    )
    got = jax.jit(rewards.build_reward(split, V, df=df))(cands[:4], rows)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_reward_with_own_df_equals_pycocoevalcap_on_text():
    split = _split(seed=5, full_rows=())  # every reference has room for its EOS
    cands = _candidates(split, seed=6)
    got = np.asarray(jax.jit(rewards.build_reward(split, V))(cands, np.arange(N)))
    scorer = CiderScorer(n=4, sigma=6.0)
    for i in range(N):
        refs = [split.labels[i, j] for j in range(split.num_refs[i])]
        scorer += (
            " ".join(_words(cands[i], True)),
            [" ".join(_words(r, True)) for r in refs],
        )
    _, expected = scorer.compute_score()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _with_end_word(tokens):
    """Ids with the EOS written as an explicit word V + 1 (where it fits)."""
    tokens = np.asarray(tokens)
    padded = np.concatenate([tokens, np.zeros_like(tokens[..., :1])], -1)
    first = (padded == 0).argmax(-1)
    out = padded.copy()
    np.put_along_axis(out, first[..., None], V + 1, -1)
    fits = first < tokens.shape[-1]
    return np.where(fits[..., None], out, padded)


def test_counting_eos_equals_scoring_an_explicit_end_word():
    split = _split(seed=7, full_rows=())
    cands = _candidates(split, seed=8)
    with_eos = jax.jit(rewards.build_reward(split, V))(cands, np.arange(N))
    explicit = types.SimpleNamespace(
        labels=_with_end_word(split.labels), num_refs=split.num_refs
    )
    mask = np.arange(R)[None] < split.num_refs[:, None]
    df = df_lib.from_references(explicit.labels, mask, include_eos=False)
    without = rewards.build_reward(explicit, V + 1, df=df, include_eos=False)
    np.testing.assert_allclose(
        with_eos, jax.jit(without)(_with_end_word(cands), np.arange(N)), rtol=1e-5
    )


def test_eos_penalises_a_caption_cut_before_its_end():
    ref = np.array([3, 5, 7, 9, 11, 0, 0, 0], np.int32)
    labels = np.zeros((N, R, T), np.int32)
    labels[:, :] = ref
    labels[1:, :, 0] = 1 + np.arange(N - 1)[:, None]  # other images, other words
    split = types.SimpleNamespace(labels=labels, num_refs=np.full(N, R, np.int32))
    full = ref[None]
    cut = np.where(np.arange(T) < 4, ref, 0)[None]
    scores = {}
    for eos in (True, False):
        reward = jax.jit(rewards.build_reward(split, V, include_eos=eos))
        ratio = reward(cut, np.array([0])) / reward(full, np.array([0]))
        scores[eos] = float(ratio[0])
    assert scores[True] < scores[False] < 1.0


def test_bleu_weight_adds_pycocoevalcap_sentence_bleu4():
    split = _split(seed=9)
    cands = _candidates(split, seed=10)
    rows = np.arange(N)
    only_cider = jax.jit(rewards.build_reward(split, V))(cands, rows)
    mixed = jax.jit(rewards.build_reward(split, V, bleu_weight=0.5))(cands, rows)
    scorer = BleuScorer(n=4)
    for i in range(N):
        refs = [split.labels[i, j] for j in range(split.num_refs[i])]
        scorer += (
            " ".join(_words(cands[i], True)),
            [" ".join(_words(r, True)) for r in refs],
        )
    with contextlib.redirect_stdout(io.StringIO()):
        _, per_sentence = scorer.compute_score(option="closest")
    np.testing.assert_allclose(
        mixed - only_cider, 0.5 * np.asarray(per_sentence[3]), rtol=1e-4, atol=1e-6
    )


def test_vmapped_over_a_population_equals_a_loop():
    split = _split(seed=11)
    reward = rewards.build_reward(split, V, bleu_weight=0.3)
    population = np.stack([_candidates(split, seed=s)[:5] for s in range(3)])
    rows = np.array([0, 2, 4, 6, 8])
    batched = jax.jit(jax.vmap(reward, in_axes=(0, None)))(population, rows)
    one = jax.jit(reward)
    for p in range(3):
        np.testing.assert_allclose(batched[p], one(population[p], rows), rtol=1e-6)


def test_references_prepared_in_chunks_equal_one_pass():
    split = _split(seed=12)
    table = rewards.train_document_frequency(split.labels, split.num_refs).to_table()
    mask = rewards.reference_mask(split.num_refs, R)
    chunked = rewards._prepare_in_chunks(split.labels, mask, table, True, chunk=4)
    prepare = jax.jit(functools.partial(cider.prepare_refs, include_eos=True))
    whole = prepare(split.labels, mask, table)
    for a, b in zip(chunked, whole):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_policy_mask_is_self_criticals():
    tokens = np.array([[4, 2, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
    upstream = np.concatenate([np.ones((3, 1)), tokens[:, :-1] > 0], 1).astype(bool)
    np.testing.assert_array_equal(rewards.policy_mask(jnp.asarray(tokens)), upstream)


def test_zero_weights_are_refused():
    with pytest.raises(InputError, match="weights"):
        rewards.build_reward(_split(), V, cider_weight=0.0)


def test_train_df_equals_prepro_ngrams_of_the_cocotalk_labels(make_cocotalk):
    config = get_config("tiny").copy_and_resolve_references()
    for key, value in make_cocotalk(num_images=16).items():
        section, name = key.split(".")
        config[section][name] = value
    train = load_dataset(config.data, 16, False, ("train",)).splits["train"]
    ours = rewards.train_document_frequency(train.labels, train.num_refs)
    talk = cocotalk_lib.load_cocotalk(
        config.data.input_json, config.data.input_label_h5
    )
    theirs = prepro_ngrams.df_from_cocotalk(talk, "train")
    assert ours.num_images == theirs.num_images == len(train.image_ids)
    assert ours.as_dict() == theirs.as_dict()
