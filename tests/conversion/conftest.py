"""PyTorch reference captioners written from the published equations, for the
conversion tests: self-critical.pytorch's FCModel (models/FCModel.py: LSTMCore with
i2h/h2h to 5H, sigmoid i, f, o, max-out candidate) and TopDownModel
(models/AttModel.py: TopDownCore with two nn.LSTMCell and additive attention,
optional BatchNorm1d in the region encoder), both as upstream names their modules.
Each model offers `start(feats) -> (ctx, state)` and `step(ctx, state, tokens) ->
(log-probs (B, V + 1), state)`; `teacher_forced` and `greedy` run them."""

import argparse
import pickle
import types

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F


class LSTMCore(nn.Module):
    def __init__(self, enc: int, rnn: int):
        super().__init__()
        self.rnn = rnn
        self.i2h = nn.Linear(enc, 5 * rnn)
        self.h2h = nn.Linear(rnn, 5 * rnn)

    def forward(self, x, state):
        h, c = state
        sums = self.i2h(x) + self.h2h(h)
        r = self.rnn
        in_gate, forget_gate, out_gate = torch.sigmoid(sums[:, : 3 * r]).chunk(3, 1)
        candidate = torch.max(sums[:, 3 * r : 4 * r], sums[:, 4 * r :])
        c = forget_gate * c + in_gate * candidate
        return out_gate * torch.tanh(c), c


class FCModel(nn.Module):
    def __init__(self, fc_dim: int, enc: int, rnn: int, vocab: int):
        super().__init__()
        self.rnn = rnn
        self.img_embed = nn.Linear(fc_dim, enc)
        self.core = LSTMCore(enc, rnn)
        self.embed = nn.Embedding(vocab + 1, enc)
        self.logit = nn.Linear(rnn, vocab + 1)

    def start(self, feats):
        fc = feats["fc"]
        zeros = fc.new_zeros(fc.shape[0], self.rnn)
        return None, self.core(self.img_embed(fc), (zeros, zeros))  # output unused

    def step(self, ctx, state, tokens):
        h, c = self.core(self.embed(tokens), state)
        return F.log_softmax(self.logit(h), dim=1), (h, c)


class Attention(nn.Module):
    def __init__(self, rnn: int, att_hid: int):
        super().__init__()
        self.h2att = nn.Linear(rnn, att_hid)
        self.alpha_net = nn.Linear(att_hid, 1)

    def forward(self, h, att, p_att, mask):
        dot = self.alpha_net(torch.tanh(p_att + self.h2att(h)[:, None]))[..., 0]
        weight = F.softmax(dot, dim=1)
        if mask is not None:
            weight = weight * mask
            weight = weight / weight.sum(1, keepdim=True)
        return torch.bmm(weight[:, None], att)[:, 0]


class TopDownCore(nn.Module):
    def __init__(self, enc: int, rnn: int, att_hid: int):
        super().__init__()
        self.att_lstm = nn.LSTMCell(enc + 2 * rnn, rnn)
        self.lang_lstm = nn.LSTMCell(2 * rnn, rnn)
        self.attention = Attention(rnn, att_hid)

    def forward(self, xt, ctx, state):
        (h_att, h_lang), (c_att, c_lang) = state
        att_input = torch.cat([h_lang, ctx["fc"], xt], 1)
        h_att, c_att = self.att_lstm(att_input, (h_att, c_att))
        att = self.attention(h_att, ctx["att"], ctx["p_att"], ctx["mask"])
        h_lang, c_lang = self.lang_lstm(torch.cat([att, h_att], 1), (h_lang, c_lang))
        return h_lang, ((h_att, h_lang), (c_att, c_lang))


class TopDownModel(nn.Module):
    def __init__(self, fc_dim, att_dim, enc, rnn, att_hid, vocab, use_bn=0):
        super().__init__()
        self.rnn = rnn
        self.embed = nn.Sequential(
            nn.Embedding(vocab + 1, enc), nn.ReLU(), nn.Dropout()
        )
        self.fc_embed = nn.Sequential(nn.Linear(fc_dim, rnn), nn.ReLU(), nn.Dropout())
        layers = [nn.BatchNorm1d(att_dim)] if use_bn else []
        layers += [nn.Linear(att_dim, rnn), nn.ReLU(), nn.Dropout()]
        layers += [nn.BatchNorm1d(rnn)] if use_bn == 2 else []
        self.att_embed = nn.Sequential(*layers)
        self.logit = nn.Linear(rnn, vocab + 1)
        self.ctx2att = nn.Linear(rnn, att_hid)
        self.core = TopDownCore(enc, rnn, att_hid)

    def start(self, feats):
        att = feats["att"]
        batch, regions, dim = att.shape
        embedded = self.att_embed(att.reshape(batch * regions, dim))  # per region
        embedded = embedded.reshape(batch, regions, -1)
        ctx = {"fc": self.fc_embed(feats["fc"]), "att": embedded}
        ctx["p_att"], ctx["mask"] = self.ctx2att(embedded), feats.get("att_mask")
        zeros = att.new_zeros(batch, self.rnn)
        return ctx, ((zeros, zeros), (zeros, zeros))

    def step(self, ctx, state, tokens):
        output, state = self.core(self.embed(tokens), ctx, state)
        return F.log_softmax(self.logit(output), dim=1), state


def randomise_batchnorms(model: nn.Module, generator) -> None:
    """Running statistics and affine params far from the identity."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.3)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))


@torch.no_grad()
def teacher_forced(model, feats, captions):
    """Full log-prob vectors (B, T + 1, V + 1) reading BOS then captions (B, T)."""
    ctx, state = model.start(feats)
    inputs = torch.cat([torch.zeros_like(captions[:, :1]), captions], 1)
    steps = []
    for t in range(inputs.shape[1]):
        logprobs, state = model.step(ctx, state, inputs[:, t])
        steps.append(logprobs)
    return torch.stack(steps, 1).numpy()


@torch.no_grad()
def greedy(model, feats, max_len: int):
    """Upstream `_sample` greedy: argmax words, 0 after the first EOS; (B, max_len)."""
    ctx, state = model.start(feats)
    tokens = torch.zeros(feats["fc"].shape[0], dtype=torch.long)
    done = torch.zeros_like(tokens, dtype=torch.bool)
    seq = []
    for _ in range(max_len):
        logprobs, state = model.step(ctx, state, tokens)
        tokens = torch.where(done, 0, logprobs.argmax(1))
        done = done | (tokens == 0)
        seq.append(tokens)
    return torch.stack(seq, 1).numpy()


def random_captions(rng, batch: int, length: int, vocab: int) -> np.ndarray:
    """(B, T) word ids in 1..V, 0-padded after a random length >= 1."""
    words = rng.integers(1, vocab + 1, (batch, length))
    lengths = rng.integers(1, length + 1, batch)
    return np.where(np.arange(length) < lengths[:, None], words, 0)


def save_self_critical(directory, model, vocab: dict, **opt) -> tuple:
    """model.pth + infos_<id>.pkl as self-critical.pytorch's train.py writes them
    (pickle protocol 2, opt an argparse.Namespace, vocab with string keys)."""
    model_path, infos_path = directory / "model.pth", directory / "infos_test.pkl"
    torch.save(model.state_dict(), model_path)
    infos = {"opt": argparse.Namespace(**opt), "vocab": vocab, "iter": 120}
    infos["best_val_score"] = np.float64(0.5)
    with open(infos_path, "wb") as f:
        pickle.dump(infos, f, protocol=2)
    return str(model_path), str(infos_path)


@pytest.fixture(scope="module")
def ref():
    """The reference models and helpers above."""
    return types.SimpleNamespace(
        FCModel=FCModel,
        TopDownModel=TopDownModel,
        randomise_batchnorms=randomise_batchnorms,
        teacher_forced=teacher_forced,
        greedy=greedy,
        random_captions=random_captions,
        save_self_critical=save_self_critical,
    )
