"""A checkpoint that does not fit the chosen source fails with one InputError that
names every missing, unexpected and wrongly shaped tensor, or the bad infos field."""

import pickle

import pytest
import torch
from ml_collections import ConfigDict

from nic_jax.conversion import convert_params
from nic_jax.conversion.importer import get_source
from nic_jax.conversion.torch_files import load_infos_pickle
from nic_jax.errors import InputError

WORDS = {str(i): f"w{i}" for i in range(1, 12)}
OPT = dict(caption_model="fc", fc_feat_size=12, input_encoding_size=8, rnn_size=10)


def convert(tmp_path, ref, state_dict, source="sc_fc", **opt):
    model = ref.FCModel(12, 8, 10, len(WORDS))
    opt = {k: v for k, v in {**OPT, **opt}.items() if v is not None}  # None: absent
    paths = ref.save_self_critical(tmp_path, model, WORDS, **opt)
    torch.save(state_dict, paths[0])
    source_model = get_source(source)(*paths)
    return convert_params(source_model, ConfigDict(source_model.model), "ckpt")


def test_missing_unexpected_and_misshapen_tensors_are_all_named(tmp_path, ref):
    state_dict = ref.FCModel(12, 8, 10, len(WORDS)).state_dict()
    del state_dict["core.h2h.bias"]
    state_dict["core.extra.weight"] = torch.zeros(3)
    state_dict["img_embed.weight"] = torch.zeros(8, 13)
    with pytest.raises(InputError) as error:
        convert(tmp_path, ref, state_dict)
    message = str(error.value)
    assert "missing keys: core.h2h.bias" in message
    assert "unexpected keys: core.extra.weight" in message
    assert "img_embed.weight is (8, 13), expected (8, 12)" in message


def test_a_model_of_another_vocabulary_is_a_shape_mismatch(tmp_path, ref):
    state_dict = ref.FCModel(12, 8, 10, len(WORDS) + 4).state_dict()
    with pytest.raises(InputError, match=r"logit.weight is \(16, 10\), expected"):
        convert(tmp_path, ref, state_dict)


def test_topdown_weights_under_the_fc_source_list_its_keys(tmp_path, ref):
    topdown = ref.TopDownModel(12, 6, 8, 10, 7, len(WORDS)).state_dict()
    with pytest.raises(InputError) as error:
        convert(tmp_path, ref, topdown, caption_model=None)
    message = str(error.value)
    assert "missing keys: core.h2h.bias, core.h2h.weight, core.i2h.bias" in message
    assert "unexpected keys: att_embed.0.bias" in message and "more" in message


def test_infos_of_another_caption_model_are_refused(tmp_path, ref):
    state_dict = ref.FCModel(12, 8, 10, len(WORDS)).state_dict()
    with pytest.raises(InputError, match="opt.caption_model is 'fc'.*topdown"):
        convert(tmp_path, ref, state_dict, source="sc_topdown")
    with pytest.raises(InputError, match="has no 'rnn_size'"):
        convert(tmp_path, ref, state_dict, rnn_size=None)


def test_files_that_are_not_checkpoints(tmp_path, ref):
    not_a_state_dict = tmp_path / "model.pth"
    torch.save({"epoch": 3}, not_a_state_dict)
    infos = tmp_path / "infos.pkl"
    infos.write_bytes(pickle.dumps(["not", "a", "dict"]))
    with pytest.raises(InputError, match="expected the infos dict"):
        load_infos_pickle(str(infos))
    ref.save_self_critical(tmp_path, ref.FCModel(12, 8, 10, 11), WORDS, **OPT)
    torch.save({"epoch": 3}, not_a_state_dict)
    with pytest.raises(InputError, match="expected a state_dict"):
        get_source("sc_fc")(str(not_a_state_dict), str(tmp_path / "infos_test.pkl"))
    with pytest.raises(InputError, match="--source='fc' is unknown"):
        get_source("fc")


def test_infos_pickles_never_run_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "infos.pkl"
    path.write_bytes(pickle.dumps({"opt": Payload(), "vocab": WORDS}, protocol=2))
    infos = load_infos_pickle(str(path))
    assert type(infos["opt"]).__name__ == "print"  # an inert stand-in, not a call
    assert infos["opt"].args == ("pwned",)
