"""es-img-captioning `fc_caption` checkpoints: sizes from the run's experiment.json,
vocabulary from its cocotalk json, same log-probs and greedy captions as the
reference model, and a workdir whose params and config are the converted ones."""

import json

import jax
import numpy as np
import pytest
import torch
from ml_collections import ConfigDict

from configs.default import get_config
from nic_jax.conversion import convert_checkpoint, convert_params
from nic_jax.conversion.importer import get_source
from nic_jax.decoding import decode
from nic_jax.errors import InputError
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.train import checkpoint

VOCAB = 17
SIZES = dict(input_encoding_size=8, rnn_size=10, fc_feat_size=12)


def write_run(tmp_path, model, layout="policy_options", **extra):
    """An elite state_dict, the run's experiment.json and its cocotalk json."""
    vocab_path = tmp_path / "cocotalk.json"
    words = {str(i): f"word{i}" for i in range(1, VOCAB + 1)}
    vocab_path.write_text(json.dumps({"ix_to_word": words, "images": []}))
    options = {**SIZES, "safe_mutations": "SM-G-SUM", "vbn_e": False, **extra}
    experiment = {"algorithm": "nic_es", "dataset": "mscoco"}
    experiment["caption_options"] = {"input_json": str(vocab_path)}
    if layout == "policy_options":
        experiment["policy_options"] = {"net": "fc_caption", "vbn": False}
        experiment["policy_options"]["model_options"] = options
    else:  # older runs
        experiment.update(net="fc_caption", caption_model_options=options)
    model_path, infos_path = tmp_path / "0_0_elite.pth", tmp_path / "experiment.json"
    torch.save(model.state_dict(), model_path)
    infos_path.write_text(json.dumps(experiment))
    return str(model_path), str(infos_path), words


@pytest.fixture(scope="module")
def elite(ref):
    generator = torch.manual_seed(3)
    model = ref.FCModel(12, 8, 10, VOCAB).eval()
    with torch.no_grad():  # xavier-normal weights, zero biases, as es PolicyNet
        for name, tensor in model.named_parameters():
            if "weight" in name:
                torch.nn.init.xavier_normal_(tensor, generator=generator)
            else:
                tensor.zero_()
        model.logit.weight.mul_(3.0)
    return model


@pytest.mark.parametrize("layout", ["policy_options", "caption_model_options"])
def test_logprobs_and_greedy_captions_match_torch(tmp_path, ref, elite, layout):
    model_path, infos_path, words = write_run(tmp_path, elite, layout)
    source = get_source("es_fc")(model_path, infos_path)
    assert source.ix_to_word == {int(k): w for k, w in words.items()}
    config = ConfigDict(source.model)
    assert (config.name, config.drop_prob_lm) == ("fc", 0.0)  # no dropout upstream
    params = convert_params(source, config, "test")
    decoder = build_decoder(config, VOCAB)

    rng = np.random.default_rng(0)
    fc = rng.normal(size=(5, 12)).astype(np.float32)
    captions = ref.random_captions(rng, 5, 8, VOCAB)
    expected = ref.teacher_forced(
        elite, {"fc": torch.from_numpy(fc)}, torch.from_numpy(captions)
    )
    ctx = decoder.encode(params, {"fc": fc})
    state = decoder.init_state(params, ctx)
    inputs = np.concatenate([np.zeros((5, 1), np.int64), captions], 1)
    for t in range(inputs.shape[1]):
        logprobs, state = decoder.step(params, ctx, state, inputs[:, t])
        np.testing.assert_allclose(logprobs, expected[:, t], atol=1e-5, rtol=0)
    tokens = decode(decoder, params, {"fc": fc}, max_len=16)[0]
    greedy = ref.greedy(elite, {"fc": torch.from_numpy(fc)}, 16)
    np.testing.assert_array_equal(np.asarray(tokens), greedy)


def test_workdir_holds_the_converted_params_config_and_vocabulary(tmp_path, elite):
    model_path, infos_path, words = write_run(tmp_path, elite)
    workdir = str(tmp_path / "imported")
    meta = convert_checkpoint(
        get_config("tiny"), "es_fc", model_path, infos_path, workdir
    )
    written = json.loads((tmp_path / "imported" / "config.json").read_text())
    assert {k: written["model"][k] for k in SIZES} == SIZES
    config = ConfigDict(written)
    manager = checkpoint.make_manager(workdir, config.ckpt, "val/CIDEr", True)
    abstract = jax.eval_shape(
        lambda: init_params(config.model, VOCAB, jax.random.key(0))
    )
    params, saved_meta = checkpoint.restore_params(manager, 0, abstract)
    state_dict = elite.state_dict()
    np.testing.assert_array_equal(
        params["core"]["i2h"]["kernel"], state_dict["core.i2h.weight"].numpy().T
    )
    np.testing.assert_array_equal(
        params["embed"]["embedding"], state_dict["embed.weight"].numpy()
    )
    assert saved_meta["vocab"] == [words[str(i)] for i in range(1, VOCAB + 1)]
    assert saved_meta == meta and meta["converted_from"]["source"] == "es_fc"


def test_vbn_runs_and_other_nets_are_refused(tmp_path, elite):
    model_path, infos_path, _ = write_run(tmp_path, elite, vbn=True)
    with pytest.raises(InputError, match="vbn is set"):
        get_source("es_fc")(model_path, infos_path)
    experiment = json.loads((tmp_path / "experiment.json").read_text())
    experiment["policy_options"].update(net="mnist", model_options=SIZES)
    (tmp_path / "experiment.json").write_text(json.dumps(experiment))
    with pytest.raises(InputError, match="net is 'mnist'"):
        get_source("es_fc")(model_path, infos_path)


def test_vocabulary_comes_from_vocab_flag_when_input_json_is_elsewhere(tmp_path, elite):
    model_path, infos_path, _ = write_run(tmp_path, elite)
    experiment = json.loads((tmp_path / "experiment.json").read_text())
    experiment["caption_options"]["input_json"] = "data/cocotalk.json"
    (tmp_path / "experiment.json").write_text(json.dumps(experiment))
    with pytest.raises(InputError, match="--vocab"):
        get_source("es_fc")(model_path, infos_path)
    source = get_source("es_fc")(
        model_path, infos_path, str(tmp_path / "cocotalk.json")
    )
    assert len(source.ix_to_word) == VOCAB
