"""Deterministic host batches: a pure function of (seed, position), so resume is exact.

Training position p means epoch p // steps_per_epoch, batch p % steps_per_epoch of a
per-epoch permutation seeded by (seed, epoch). The last partial batch of an epoch is
dropped so every step has one shape (one compilation). Each image contributes one
row and `seq_per_img` of its references, chosen as self-critical.pytorch does.
"""

import functools

import numpy as np


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Full batches in one pass over `num_images`."""
    return num_images // batch_size


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, num_images: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_images)


def pick_references(rng, num_refs: np.ndarray, seq_per_img: int) -> np.ndarray:
    """Indices (B, seq_per_img) into each image's references.

    As self-critical.pytorch's DataLoader: with fewer references than
    `seq_per_img`, draw with replacement; otherwise a random contiguous window.
    """
    num_refs = np.asarray(num_refs)
    window = rng.integers(0, np.maximum(num_refs - seq_per_img + 1, 1))
    offsets = window[:, None] + np.arange(seq_per_img)[None]
    drawn = rng.integers(0, num_refs[:, None], (len(num_refs), seq_per_img))
    return np.where((num_refs >= seq_per_img)[:, None], offsets, drawn)


def gather_features(split, rows: np.ndarray, need_att: bool) -> dict:
    """Per-image feature arrays of `rows` of a `SplitData`: `fc`, and with
    `need_att` `att` and, where images have different region counts, `att_mask`."""
    feats = {"fc": split.fc[rows]}
    if need_att:
        att, mask = split.att_store.att_and_mask(split.image_ids[rows])
        feats["att"] = att
        if mask is not None:
            feats["att_mask"] = mask
    return feats


def train_batch(
    split, seed, position, batch_size, seq_per_img, need_att, share=slice(None)
) -> dict:
    """The training batch at `position` (batches consumed so far).

    Returns a dict: feature arrays (B, ...), `labels` (B, seq_per_img, L) int32,
    `index` (B,) rows of the split. `share` keeps a slice of the B rows (a
    process's part of a global batch, `parallel.process_rows`): only those rows'
    features are read, and they equal the same rows of the whole batch.
    """
    per_epoch = steps_per_epoch(len(split.image_ids), batch_size)
    epoch, index = divmod(int(position), per_epoch)
    perm = _epoch_permutation(seed, epoch, len(split.image_ids))
    rows = np.sort(perm[index * batch_size : (index + 1) * batch_size])
    rng = np.random.default_rng([seed, epoch, index])
    picks = pick_references(rng, split.num_refs[rows], seq_per_img)
    rows, picks = rows[share], picks[share]
    labels = split.labels[rows[:, None], picks]
    return dict(gather_features(split, rows, need_att), labels=labels, index=rows)


def eval_batches(split, batch_size: int, need_att: bool, num_images: int = -1):
    """Yields (batch, n_valid) over the split in order; the last batch is padded
    by repeating row 0 so all batches share one shape."""
    total = (
        len(split.image_ids)
        if num_images < 0
        else min(num_images, len(split.image_ids))
    )
    for start in range(0, total, batch_size):
        rows = np.arange(start, min(start + batch_size, total))
        n_valid = len(rows)
        rows = np.concatenate([rows, np.zeros(batch_size - n_valid, rows.dtype)])
        yield dict(gather_features(split, rows, need_att), index=rows), n_valid
