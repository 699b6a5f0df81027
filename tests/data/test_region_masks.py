"""Bottom-up features with a different region count per image (cocobu "adaptive"
features): batches carry the mask of real regions, and attention models train on
them as on the real regions alone."""

import jax
import numpy as np

from configs.default import get_config
from nic_jax.data.batches import eval_batches, train_batch
from nic_jax.data.dataset import load_dataset
from nic_jax.data.features import REGION_BUCKET
from nic_jax.decoding import teacher_forced_logprobs
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.train import xe
from nic_jax.train.metric_writer import read_metrics


def _config(overrides: dict, model: str):
    config = get_config("tiny")
    with config.unlocked():
        for key, value in overrides.items():
            group, name = key.split(".")
            config[group][name] = value
        config.model.name = model
        config.model.att_feat_size = config.model.fc_feat_size
        config.finetune.trainer = ""
        config.evals.final_split = ""
    return config


def test_batches_of_adaptive_regions_hold_their_mask(make_cocotalk):
    overrides = make_cocotalk(regions=(2, 7))
    config = _config(overrides, "topdown")
    data = load_dataset(config.data, config.model.fc_feat_size, need_att=True)
    split = data.splits["train"]
    batch = train_batch(split, 0, 0, 4, 5, need_att=True)
    att, mask = batch["att"], batch["att_mask"]
    assert att.shape[1] == REGION_BUCKET and mask.shape == att.shape[:2]
    counts = mask.sum(1).astype(int)
    ids = split.image_ids[batch["index"]]
    for row, image_id in enumerate(ids):
        path = f"{overrides['data.input_att_dir']}/{image_id}.npz"
        real = np.load(path)["feat"]
        assert counts[row] == len(real)
        np.testing.assert_array_equal(att[row, : len(real)], real)
        assert not att[row, len(real) :].any()
    (first, _), *_ = eval_batches(data.splits["val"], 4, need_att=True)
    assert "att_mask" in first


def test_padded_batch_scores_as_each_image_alone(make_cocotalk):
    config = _config(make_cocotalk(regions=(2, 7)), "topdown")
    data = load_dataset(config.data, config.model.fc_feat_size, need_att=True)
    batch = train_batch(data.splits["train"], 0, 0, 4, 5, need_att=True)
    decoder = build_decoder(config.model, len(data.ix_to_word))
    params = init_params(config.model, len(data.ix_to_word), jax.random.key(0))
    labels = batch["labels"][:, :1]
    feats = {k: batch[k] for k in ("fc", "att", "att_mask")}
    together = teacher_forced_logprobs(decoder, params, feats, labels)
    for row in range(len(labels)):
        n = int(batch["att_mask"][row].sum())
        alone = {
            "fc": feats["fc"][row : row + 1],
            "att": feats["att"][row : row + 1, :n],
        }
        single = teacher_forced_logprobs(decoder, params, alone, labels[row : row + 1])
        np.testing.assert_allclose(together[row], single[0], atol=1e-5)


def test_topdown_trains_on_adaptive_regions(make_cocotalk, tmp_path):
    config = _config(make_cocotalk(regions=(2, 7)), "topdown")
    with config.unlocked():
        config.xe.num_epochs = 3
        config.optim.learning_rate = 5e-3
        config.log.every_steps = 1
        config.evals.every_steps = 1000
    scores = xe.train_and_evaluate(config, str(tmp_path / "w"))
    losses = [
        m["train/loss"]
        for m in read_metrics(str(tmp_path / "w/metrics.jsonl"))
        if "train/loss" in m
    ]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert 0.0 <= scores["val/CIDEr"] < 10.0
