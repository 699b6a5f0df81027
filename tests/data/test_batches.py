"""Batches: deterministic in (seed, position), one row per image, upstream picks."""

import numpy as np

from nic_jax.data.batches import eval_batches, pick_references, train_batch
from nic_jax.data.dataset import SplitData


def _split(n=23, max_refs=7):
    rng = np.random.default_rng(0)
    num_refs = rng.integers(1, max_refs + 1, n).astype(np.int32)
    labels = np.zeros((n, max_refs, 4), np.int32)
    for i in range(n):
        for r in range(num_refs[i]):
            labels[i, r] = [i + 1, r + 1, 9, 0]
    fc = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    return SplitData("train", np.arange(100, 100 + n), fc, None, labels, num_refs, [])


def test_same_position_same_batch_and_epochs_cover_every_image_once():
    split = _split()
    a = train_batch(split, 0, 7, 5, 3, False)
    b = train_batch(split, 0, 7, 5, 3, False)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    seen = np.concatenate(
        [train_batch(split, 0, p, 5, 3, False)["index"] for p in range(4)]
    )
    assert len(set(seen.tolist())) == 20  # 4 full batches of 23 images, no repeats
    nxt = np.concatenate(
        [train_batch(split, 0, p, 5, 3, False)["index"] for p in range(4, 8)]
    )
    assert set(seen.tolist()) != set(nxt.tolist()) or not np.array_equal(seen, nxt)


def test_one_row_per_image_and_labels_belong_to_it():
    split = _split()
    batch = train_batch(split, 1, 2, 6, 5, False)
    assert batch["fc"].shape == (6, 3) and batch["labels"].shape == (6, 5, 4)
    np.testing.assert_array_equal(batch["fc"][:, 0], batch["index"])
    assert (batch["labels"][..., 0] == batch["index"][:, None] + 1).all()
    refs_used = batch["labels"][..., 1] - 1
    assert (refs_used < split.num_refs[batch["index"]][:, None]).all()


def test_picks_a_contiguous_window_or_draws_with_replacement():
    rng = np.random.default_rng(0)
    picks = pick_references(rng, np.array([5, 7, 2, 1]), 5)
    np.testing.assert_array_equal(picks[0], np.arange(5))
    assert picks[1, 0] in (0, 1, 2)
    np.testing.assert_array_equal(picks[1], picks[1, 0] + np.arange(5))
    assert set(picks[2]) <= {0, 1} and set(picks[3]) == {0}


def test_eval_batches_cover_the_split_in_order_with_padding():
    split = _split()
    batches = list(eval_batches(split, 10, False))
    assert [n for _, n in batches] == [10, 10, 3]
    assert all(b["fc"].shape == (10, 3) for b, _ in batches)
    rows = np.concatenate([b["index"][:n] for b, n in batches])
    np.testing.assert_array_equal(rows, np.arange(23))
    assert [n for _, n in eval_batches(split, 10, False, num_images=12)] == [10, 2]
