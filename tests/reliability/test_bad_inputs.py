"""Every bad training input ends in one `InputError` naming the file or field,
what was found and what was expected; never a traceback from inside JAX.

Each case breaks one thing of a small, valid self-critical.pytorch-style dataset
(`tests/conftest.py`) or of the config, and trains through the library function
the command line calls. Scoring, evaluation and df files: test_bad_requests.py."""

import json
import os
import pathlib

import h5py
import numpy as np
import pytest

from nic_jax.data.dataset import load_dataset
from nic_jax.errors import InputError
from nic_jax.train import xe
from nic_jax.train.registry import get_trainer
from tests.reliability import harness


def _truncate(path, keep=0.5):
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[: int(len(data) * keep)])


def _write(path, data: bytes) -> None:
    pathlib.Path(path).write_bytes(data)


def _edit_json(path, edit):
    data = json.loads(pathlib.Path(path).read_text())
    edit(data)
    pathlib.Path(path).write_text(json.dumps(data))


def _rewrite_h5(path, **changes):
    with h5py.File(path, "r") as f:
        arrays = {k: f[k][()] for k in f}
    arrays.update(changes)
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            if value is not None:
                f[name] = value


def _fc(data, image_id=1003):
    return os.path.join(data["data.input_fc_dir"], f"{image_id}.npy")


def _every_att(write_fn):
    """Breaks every region file with write_fn(path); trains an attention model."""

    def breaker(data):
        att = data["data.input_att_dir"]
        for name in os.listdir(att):
            write_fn(os.path.join(att, name))
        return {"model.name": "topdown", "model.att_feat_size": 16}

    return breaker


def _h5_features(data, edit=None):
    """One feature h5 per split (`feats_{split}.h5`), made from the npy files."""
    root = pathlib.Path(data["data.input_fc_dir"]).parent
    ids = [int(n[:-4]) for n in os.listdir(data["data.input_fc_dir"])]
    for split in ("train", "val", "test"):
        fc = np.stack([np.load(_fc(data, i)) for i in ids])
        arrays = {"image_id": np.array(ids), "fc": fc}
        if edit is not None:
            edit(arrays)
        with h5py.File(root / f"feats_{split}.h5", "w") as f:
            for name, value in arrays.items():
                f[name] = value
    return {
        "data.input_fc_dir": str(root / "feats_{split}.h5"),
        "data.input_att_dir": "",
    }


def _fc_h5(data):
    return str(pathlib.Path(data["data.input_fc_dir"]).parent / "feats_train.h5")


def _truncated_h5_features(data):
    overrides = _h5_features(data)
    _truncate(_fc_h5(data))
    return overrides


def _drop_first_image(arrays):
    keep = arrays["image_id"] != 1000
    arrays.update(image_id=arrays["image_id"][keep], fc=arrays["fc"][keep])


def _label_ids_beyond_vocabulary(data):
    path = data["data.input_label_h5"]
    with h5py.File(path, "r") as f:
        labels = f["labels"][()]
    labels[0, 0] = 999
    _rewrite_h5(path, labels=labels)


def _val_images_relabelled(data):
    def edit(talk):
        for image in talk["images"]:
            image["split"] = "test" if image["split"] == "val" else image["split"]

    _edit_json(data["data.input_json"], edit)


def _non_utf8_caption(data):
    path = pathlib.Path(data["data.dataset_json"])
    text = path.read_text().replace('"raw": "', '"raw": "caf\u00e9 ', 1)
    path.write_bytes(text.encode("latin-1"))


# name -> (break the dataset: fn(data) -> extra overrides or None, message regex)
DATA_CASES = {
    "cocotalk json truncated": (
        lambda d: _truncate(d["data.input_json"]),
        r"talk\.json: malformed JSON at line 1",
    ),
    "cocotalk json not UTF-8": (
        lambda d: _write(d["data.input_json"], b"\xff\xfe{}"),
        r"talk\.json: cannot be read as UTF-8 JSON",
    ),
    "label h5 truncated": (
        lambda d: _truncate(d["data.input_label_h5"]),
        r"talk_label\.h5: not a readable HDF5 label file",
    ),
    "label h5 without label_end_ix": (
        lambda d: _rewrite_h5(d["data.input_label_h5"], label_end_ix=None),
        r"talk_label\.h5: dataset 'label_end_ix' is missing",
    ),
    "label ids beyond the vocabulary": (
        _label_ids_beyond_vocabulary,
        r"talk_label\.h5: labels hold word ids in \[0, 999\]; expected 0\.\.\d+",
    ),
    "an empty split": (
        _val_images_relabelled,
        r"talk\.json: split 'val' has no images; available splits",
    ),
    "captions not UTF-8": (
        _non_utf8_caption,
        r"dataset_tiny\.json: cannot be read as UTF-8 JSON",
    ),
    "an image missing from the Karpathy json": (
        lambda d: _edit_json(d["data.dataset_json"], lambda j: j["images"].pop(3)),
        r"dataset_tiny\.json: no image with id 1003 \(listed in .*talk\.json\)",
    ),
    "fc npy truncated": (
        lambda d: _truncate(_fc(d), 0.3),
        r"1003\.npy: corrupt or truncated",
    ),
    "fc npy missing": (
        lambda d: os.remove(_fc(d)),
        r"1003\.npy: no feature file for image id 1003",
    ),
    "fc npy of another shape": (
        lambda d: np.save(_fc(d), np.zeros(15, np.float32)),
        r"1003\.npy: found shape \(15,\), expected \(16,\)",
    ),
    "fc npy of strings": (
        lambda d: np.save(_fc(d), np.array(["x"] * 16)),
        r"1003\.npy: found dtype <U1, expected a float array",
    ),
    "fc npy holding NaN": (
        lambda d: np.save(_fc(d), np.full(16, np.nan, np.float32)),
        r"1003\.npy: found NaN or infinite values",
    ),
    "fc directory missing": (
        lambda d: {"data.input_fc_dir": d["data.input_fc_dir"] + "_gone"},
        r"bu_fc_gone'?: expected a directory of <id>\.npy files or an \.h5 file, "
        "and it does not exist",
    ),
    "feature size other than the config's": (
        lambda d: {"model.fc_feat_size": 32},
        r"bu_fc is 16 but config model\.fc_feat_size is 32",
    ),
    "att npz truncated": (
        _every_att(lambda p: _truncate(p, 0.5)),
        r"bu_att/\d+\.npz: corrupt or truncated",
    ),
    "att npz without 'feat'": (
        _every_att(lambda p: np.savez(p, x=np.zeros((4, 16)))),
        r"bu_att/\d+\.npz: npz has keys \['x'\], expected 'feat' \(K, D\)",
    ),
    "att npz of another width": (
        _every_att(lambda p: np.savez(p, feat=np.zeros((4, 8)))),
        r"region features: found 'att' of shape \(4, 4, 8\), expected \(B, K, 16\) "
        r"\(config model\.att_feat_size\)",
    ),
    "feature h5 truncated": (
        _truncated_h5_features,
        r"feats_train\.h5: not a readable HDF5 feature file",
    ),
    "feature h5 without an image": (
        lambda d: _h5_features(d, _drop_first_image),
        r"feats_train\.h5: no features for image id 1000",
    ),
    "feature h5 with 3-D fc": (
        lambda d: _h5_features(d, lambda a: a.update(fc=a["fc"][:, None])),
        r"feats_train\.h5: 'fc' has shape \(\d+, 1, 16\) dtype float32; expected 2-D",
    ),
}


def _train(data, workdir, **extra):
    config = harness.make_config("xe", **extra)
    for key, value in data.items():
        section, name = key.split(".")
        config[section][name] = value
    return xe.train_and_evaluate(config, str(workdir))


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_training_data(case, make_cocotalk, tmp_path, tally):
    data = make_cocotalk()
    breaker, message = DATA_CASES[case]
    extra = breaker(data) or {}
    tally["bad_inputs_tried"] += 1
    with pytest.raises(InputError, match=message):
        _train({**data, **extra}, tmp_path / "w")


def test_extra_feature_files_change_nothing(make_cocotalk):
    data = make_cocotalk()
    config = harness.make_config("xe")
    for key, value in data.items():
        section, name = key.split(".")
        config[section][name] = value
    before = load_dataset(config.data, 16, True)
    rng = np.random.default_rng(1)
    for image_id in (5000, 5001):  # images the json does not list
        np.save(_fc(data, image_id), rng.random(16, np.float32))
        att = os.path.join(data["data.input_att_dir"], f"{image_id}.npz")
        np.savez(att, feat=rng.random((3, 16)))
    pathlib.Path(data["data.input_fc_dir"], "README.txt").write_text("extra")
    after = load_dataset(config.data, 16, True)
    assert after.fingerprint == before.fingerprint  # a resume is not refused
    for name, split in before.splits.items():
        np.testing.assert_array_equal(after.splits[name].fc, split.fc)
        ids = split.image_ids
        np.testing.assert_array_equal(
            after.splits[name].att_store.att(ids), split.att_store.att(ids)
        )


# name -> (config overrides of the tiny "xe" run, or (trainer, overrides), regex)
CONFIG_CASES = {
    "unknown decoder": ({"model.name": "lstm9"}, r"model\.name='lstm9' is unknown"),
    "unknown trainer": ({"trainer": "ppo"}, r"trainer='ppo' is unknown; valid"),
    "unknown data source": ({"data.name": "coco"}, r"data\.name='coco'; expected one"),
    "unknown optimizer": ({"optim.name": "sgd"}, r"optim\.name='sgd'; expected one"),
    "unknown metric": ({"evals.metrics": ("SPICE",)}, r"evals\.metrics=\('SPICE',\)"),
    "unknown backend": (
        {"evals.backend": "torch"},
        r"evals\.backend='torch'; expected",
    ),
    "best metric never computed": (
        {"evals.best_metric": "CIDEr-D"},
        r"evals\.best_metric='CIDEr-D'; expected a validation score, one of \[",
    ),
    "zero batch size": ({"data.batch_size": 0}, r"data\.batch_size=0; expected an"),
    "zero log interval": ({"log.every_steps": 0}, r"log\.every_steps=0; expected"),
    "dropout rate above 1": (
        {"model.drop_prob_lm": 1.5},
        r"model\.drop_prob_lm=1\.5; expected a number in \[0, 1\)",
    ),
    "negative learning rate": (
        {"optim.learning_rate": -1e-3},
        r"optim\.learning_rate=-0\.001; expected a number > 0",
    ),
    "unknown fitness": (
        ("nes", {"es.fitness": "bleu9"}),
        r"fitness 'bleu9' is unknown; valid",
    ),
    "unknown ES strategy selection": (
        ("es", {"es.selection": "roulette"}),
        r"es\.selection='roulette'; expected one of",
    ),
    "unknown NES optimizer": (
        ("nes", {"es.optimizer": "lion"}),
        r"es\.optimizer='lion'; expected one of",
    ),
    "unknown noise source": (
        ("nes", {"es.noise": "quasi"}),
        r"es\.noise='quasi'; expected one of",
    ),
    "unknown safe mutation": (
        ("nes", {"es.safe_mutation": "SM-X"}),
        r"es\.safe_mutation='SM-X'; expected one of \['', 'SM-PROPORTIONAL'",
    ),
    "unknown SCST baseline": (
        ("scst", {"scst.baseline": "critic"}),
        r"scst\.baseline='critic' is unknown",
    ),
    "negative sigma": (("nes", {"es.sigma": -0.1}), r"es\.sigma=-0\.1; expected"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config(case, tmp_path, tally):
    overrides, message = CONFIG_CASES[case]
    trainer, overrides = (
        overrides if isinstance(overrides, tuple) else ("xe", overrides)
    )
    config = harness.make_config(trainer)
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = value
    tally["bad_inputs_tried"] += 1
    with pytest.raises(InputError, match=message):
        get_trainer(config.trainer)(config, str(tmp_path / "w"))
