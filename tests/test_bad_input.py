"""User mistakes end in one clear error naming the file or field, not a traceback."""

import json
import os
import subprocess
import sys

import pytest

from configs.default import get_config
from nic_jax.errors import InputError
from nic_jax.evaluation.workdir import evaluate_workdir
from nic_jax.train import xe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(overrides):
    config = get_config("tiny").copy_and_resolve_references()
    config.evals.final_split = ""
    config.xe.num_epochs = 1
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def test_missing_feature_file_is_named(cocotalk_dataset, tmp_path):
    missing = os.path.join(cocotalk_dataset["data.input_fc_dir"], "1003.npy")
    os.remove(missing)
    with pytest.raises(InputError, match=r"1003\.npy.*1003"):
        xe.train_and_evaluate(_config(cocotalk_dataset), str(tmp_path / "w"))


def test_feature_size_disagreeing_with_config(cocotalk_dataset, tmp_path):
    config = _config({**cocotalk_dataset, "model.fc_feat_size": 32})
    with pytest.raises(
        InputError, match=r"bu_fc is 16 but config model.fc_feat_size is 32"
    ):
        xe.train_and_evaluate(config, str(tmp_path / "w"))


def test_malformed_dataset_json_names_file_and_position(cocotalk_dataset, tmp_path):
    path = cocotalk_dataset["data.dataset_json"]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n{oops")
    with pytest.raises(InputError, match=rf"{path}.*line 2"):
        xe.train_and_evaluate(_config(cocotalk_dataset), str(tmp_path / "w"))


def test_checkpoint_with_another_vocabulary_is_refused(make_cocotalk, tmp_path):
    cocotalk_dataset = make_cocotalk()
    workdir = tmp_path / "w"
    xe.train_and_evaluate(_config(cocotalk_dataset), str(workdir))
    other = make_cocotalk("other", seed=7)
    config = json.loads((workdir / "config.json").read_text())
    for key, value in other.items():
        section, name = key.split(".")
        config[section][name] = value
    (workdir / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="another vocabulary"):
        evaluate_workdir(str(workdir), "test")
    with pytest.raises(InputError, match="another vocabulary"):
        xe.train_and_evaluate(_config(other), str(workdir))


def test_command_line_prints_the_error_without_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nic_jax.main",
            "--config=configs/default.py:tiny",
            f"--workdir={tmp_path}",
            "--config.data.name=cocotalk",
            f"--config.data.input_json={tmp_path}/nope.json",
            f"--config.data.input_label_h5={tmp_path}/nope_label.h5",
            f"--config.data.input_fc_dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "nope.json" in result.stderr and "Traceback" not in result.stderr


def test_unknown_config_override_is_rejected(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nic_jax.main",
            "--config=configs/default.py:tiny",
            f"--workdir={tmp_path}",
            "--config.model.rnn_sise=3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "rnn_sise" in result.stderr
