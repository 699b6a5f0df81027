"""es-img-captioning's per-offspring work in its own framework, PyTorch (eager, CPU),
for `es_throughput`: the same FC captioner with this package's params copied in.

Its `fc_caption` model is self-critical.pytorch's FCModel: img_embed, an LSTMCore
(i2h and h2h to 5H; sigmoid in/forget/out gates, max-out of two candidates), an
embedding and a logit layer. An offspring is theta + sigma * eps with eps one
`torch.randn` of all N parameters, loaded by `vector_to_parameters`; its greedy
captions come from a Python loop over words (log-softmax, argmax, a finished row
emits 0) that stops once every row has ended, as upstream's `sample`. torch is
optional (the `test` and `torch` extras); `available()` says whether it is here.
"""

import numpy as np


def available() -> bool:
    """Whether torch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _linear(torch, layer: dict):
    """An nn.Linear holding a flax kernel (in, out) and bias (out,)."""
    kernel = np.asarray(layer["kernel"])
    module = torch.nn.Linear(*kernel.shape)
    module.weight.data = torch.from_numpy(kernel.T.copy())
    module.bias.data = torch.from_numpy(np.asarray(layer["bias"]).copy())
    return module


class FCCaptioner:
    """Eager PyTorch FC captioner built from this package's FC params dict."""

    def __init__(self, params: dict, num_threads: int = 0):
        import torch

        self.torch = torch
        if num_threads:
            torch.set_num_threads(num_threads)
        embedding = np.asarray(params["embed"]["embedding"]).copy()
        self.img_embed = _linear(torch, params["img_embed"])
        self.i2h = _linear(torch, params["core"]["i2h"])
        self.h2h = _linear(torch, params["core"]["h2h"])
        self.embed = torch.nn.Embedding.from_pretrained(torch.from_numpy(embedding))
        self.logit = _linear(torch, params["logit"])
        self.modules = [self.img_embed, self.i2h, self.h2h, self.embed, self.logit]
        self.hidden = self.h2h.in_features

    def parameters(self) -> list:
        return [p for m in self.modules for p in m.parameters()]

    def flat(self):
        """theta (N,) as a torch vector, in `parameters()` order."""
        return self.torch.nn.utils.parameters_to_vector(self.parameters()).detach()

    def load_flat(self, vector) -> None:
        self.torch.nn.utils.vector_to_parameters(vector, self.parameters())

    def _core(self, x, h, c):
        sums = self.i2h(x) + self.h2h(h)
        size = self.hidden
        gates = self.torch.sigmoid(sums[:, : 3 * size])
        in_gate, forget_gate, out_gate = gates.chunk(3, 1)
        candidate = self.torch.max(sums[:, 3 * size : 4 * size], sums[:, 4 * size :])
        c = forget_gate * c + in_gate * candidate
        return out_gate * self.torch.tanh(c), c

    def greedy(self, fc: np.ndarray, max_len: int) -> np.ndarray:
        """Greedy captions (R, max_len) of fc features (R, D); 0 after the end."""
        torch = self.torch
        with torch.no_grad():
            fc = torch.from_numpy(np.array(fc, np.float32))
            zeros = fc.new_zeros(fc.shape[0], self.hidden)
            h, c = self._core(self.img_embed(fc), zeros, zeros)
            token = torch.zeros(fc.shape[0], dtype=torch.long)
            done = torch.zeros(fc.shape[0], dtype=torch.bool)
            tokens = torch.zeros(fc.shape[0], max_len, dtype=torch.long)
            for t in range(max_len):
                h, c = self._core(self.embed(token), h, c)
                logprobs = torch.log_softmax(self.logit(h), dim=1)
                token = logprobs.argmax(1).masked_fill(done, 0)
                tokens[:, t] = token
                done |= token == 0
                if bool(done.all()):
                    break
        return tokens.numpy()
