"""self-critical.pytorch FC and TopDown checkpoints: converted params give the
reference models' log-probs (every step, every word) and greedy captions, with and
without region batch norms; the CLI writes a workdir that `evaluate` decodes as the
reference does and that a trainer's `ckpt.init_from` reads."""

import json
import pathlib
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from ml_collections import ConfigDict

from nic_jax.conversion import convert_checkpoint, convert_params
from nic_jax.conversion.importer import get_source
from nic_jax.decoding import decode
from nic_jax.errors import InputError
from nic_jax.evaluation.workdir import evaluate_workdir
from nic_jax.models.functional import build_decoder, init_params
from nic_jax.train.common import load_init_params

REPO = pathlib.Path(__file__).resolve().parents[2]
VOCAB = 19
KEY = jax.random.key(0)
WORDS = {str(i): f"w{i}" for i in range(1, VOCAB + 1)}
FC_OPT = dict(caption_model="fc", fc_feat_size=12, input_encoding_size=8)
FC_OPT.update(rnn_size=10, drop_prob_lm=0.5, num_layers=1, rnn_type="lstm")
TD_OPT = dict(caption_model="topdown", fc_feat_size=6, att_feat_size=6)
TD_OPT.update(input_encoding_size=8, rnn_size=10, att_hid_size=7, drop_prob_lm=0.5)


def sharpen(model, generator):
    """Larger, EOS-shy logits: greedy argmax margins far above 1e-5, long captions."""
    with torch.no_grad():
        model.logit.weight.mul_(4.0)
        model.logit.bias.copy_(torch.randn(model.logit.bias.shape, generator=generator))
        model.logit.bias[0] -= 1.5


def jax_step_logprobs(decoder, params, feats, captions):
    """(B, T + 1, V + 1) log-probs from the converted decoder's step, BOS first."""
    ctx = decoder.encode(params, feats)
    state = decoder.init_state(params, ctx)
    inputs = np.concatenate([np.zeros_like(captions[:, :1]), captions], 1)
    steps = []
    for t in range(inputs.shape[1]):
        logprobs, state = decoder.step(params, ctx, state, jnp.asarray(inputs[:, t]))
        steps.append(np.asarray(logprobs))
    return np.stack(steps, 1)


def convert(tmp_path, ref, source, model, opt):
    paths = ref.save_self_critical(tmp_path, model, WORDS, **opt)
    source_model = get_source(source)(*paths)
    config = ConfigDict(source_model.model)
    return config, convert_params(source_model, config, "test")


def assert_same_model(ref, model, config, params, feats, rng):
    decoder = build_decoder(config, VOCAB)
    torch_feats = {k: torch.from_numpy(v) for k, v in feats.items()}
    captions = ref.random_captions(rng, len(feats["fc"]), 9, VOCAB)
    expected = ref.teacher_forced(model, torch_feats, torch.from_numpy(captions))
    got = jax_step_logprobs(decoder, params, feats, captions)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    tokens = np.asarray(decode(decoder, params, feats, max_len=16)[0])
    np.testing.assert_array_equal(tokens, ref.greedy(model, torch_feats, 16))
    assert (tokens > 0).sum(1).mean() >= 3  # captions with words, not bare EOS


def test_fc_logprobs_and_greedy_captions_match_torch(tmp_path, ref):
    generator = torch.manual_seed(0)
    model = ref.FCModel(12, 8, 10, VOCAB).eval()
    sharpen(model, generator)
    config, params = convert(tmp_path, ref, "sc_fc", model, FC_OPT)
    assert config.name == "fc" and config.drop_prob_lm == 0.5
    rng = np.random.default_rng(0)
    feats = {"fc": rng.normal(size=(6, 12)).astype(np.float32)}
    assert_same_model(ref, model, config, params, feats, rng)


@pytest.mark.parametrize("use_bn", [0, 2])  # 2: batch norms before and after
def test_topdown_logprobs_and_greedy_captions_match_torch(tmp_path, ref, use_bn):
    generator = torch.manual_seed(1)
    model = ref.TopDownModel(6, 6, 8, 10, 7, VOCAB, use_bn)
    ref.randomise_batchnorms(model, generator)
    model.eval()
    sharpen(model, generator)
    config, params = convert(tmp_path, ref, "sc_topdown", model, TD_OPT)
    assert config.name == "topdown" and config.att_hid_size == 7
    rng = np.random.default_rng(use_bn)
    att = rng.normal(size=(6, 5, 6)).astype(np.float32)
    mask = np.ones((6, 5), np.float32)
    mask[::2, 3:] = 0  # some images have fewer regions
    feats = {"fc": att.mean(1), "att": att, "att_mask": mask}
    assert_same_model(ref, model, config, params, feats, rng)


def test_cli_writes_a_workdir_that_evaluate_decodes_as_torch(
    tmp_path, ref, make_cocotalk
):
    data = make_cocotalk(feat_dim=12)
    with open(data["data.input_json"]) as f:
        words = json.load(f)["ix_to_word"]
    generator = torch.manual_seed(2)
    model = ref.FCModel(12, 8, 10, len(words)).eval()
    sharpen(model, generator)
    model_path, infos_path = ref.save_self_critical(tmp_path, model, words, **FC_OPT)
    workdir = tmp_path / "imported"
    overrides = [
        f"--config.{k}={v}" for k, v in data.items() if k != "model.fc_feat_size"
    ]
    command = [sys.executable, "-m", "nic_jax.convert", "--source=sc_fc"]
    command += [f"--model={model_path}", f"--infos={infos_path}"]
    command += [f"--workdir={workdir}", "--config=configs/default.py:tiny", *overrides]
    command += ["--config.evals.test_metrics=('Bleu',)"]  # no Java METEOR here
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads((workdir / "config.json").read_text())
    sizes = ("fc_feat_size", "input_encoding_size", "rnn_size", "drop_prob_lm")
    assert written["model"]["name"] == "fc"
    assert {k: written["model"][k] for k in sizes} == {k: FC_OPT[k] for k in sizes}

    result = evaluate_workdir(str(workdir), "test")
    ids = [c["image_id"] for c in result["captions"]]
    fc = np.stack([np.load(f"{data['data.input_fc_dir']}/{i}.npy") for i in ids])
    tokens = ref.greedy(model, {"fc": torch.from_numpy(fc)}, 16)
    expected = [" ".join(words[str(t)] for t in row[row > 0]) for row in tokens]
    assert [c["caption"] for c in result["captions"]] == expected
    assert sum(map(len, expected)) > 0
    config = ConfigDict(written)
    config.ckpt.init_from = str(workdir)  # a trainer starting from the import
    vocab = types.SimpleNamespace(ix_to_word={int(k): w for k, w in words.items()})
    abstract = jax.eval_shape(lambda: init_params(config.model, len(words), KEY))
    params = load_init_params(config, vocab, abstract)
    np.testing.assert_array_equal(
        params["logit"]["kernel"], model.logit.weight.detach().numpy().T
    )
    with pytest.raises(InputError, match="already holds checkpoints"):
        convert_checkpoint(
            ConfigDict(written), "sc_fc", model_path, infos_path, str(workdir)
        )
