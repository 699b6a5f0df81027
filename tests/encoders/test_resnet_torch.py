"""The Flax ResNet against a PyTorch ResNet written here from torchvision's
`models/resnet.py` and self-critical.pytorch's `misc/resnet.py` (torchvision does
not import beside this torch build), with torchvision's module names so its
state_dict has the real file layout. Random weights and random BatchNorm
statistics; our converter folds them; fc and att features must agree to 1e-4."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nic_jax.encoders import build_encoder, from_torchvision, load_weights
from nic_jax.encoders.encoder import pool_features
from nic_jax.encoders.resnet import max_pool_3x3_s2


class TorchBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride, caffe):
        super().__init__()
        s1, s3 = (stride, 1) if caffe else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=s3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class TorchResNet(nn.Module):
    """torchvision ResNet (caffe=False) or self-critical's misc/resnet.py (True),
    returning the last stage's map like self-critical's `myResnet`."""

    def __init__(self, layers, caffe):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        if caffe:
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        else:
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if index == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(
                    TorchBottleneck(inplanes, planes, stride if b == 0 else 1, caffe)
                )
                inplanes = planes * 4
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
        self.fc = nn.Linear(2048, 1000)  # unused by features; dropped on conversion

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def torch_features(net, images, att_size):
    """self-critical `myResnet.forward` on NHWC numpy images."""
    with torch.no_grad():
        x = net(torch.from_numpy(images).permute(0, 3, 1, 2))
        fc = x.mean(3).mean(2)
        att = F.adaptive_avg_pool2d(x, [att_size, att_size]).permute(0, 2, 3, 1)
    return fc.numpy(), att.reshape(x.shape[0], -1, x.shape[1]).numpy()


def random_resnet50(caffe: bool, seed: int = 0) -> TorchResNet:
    """Random weights; BatchNorm affine params random and running statistics taken
    from one train-mode pass, so activations keep ImageNet-like scales. The last
    BatchNorm of each residual branch gets a small gamma (as trained ResNets have,
    and torchvision's zero_init_residual starts from): a random net with full-size
    branches is chaotic, and there float32 PyTorch itself strays 4e-4 from float64.
    """
    torch.manual_seed(seed)
    net = TorchResNet((3, 4, 6, 3), caffe)
    for name, module in net.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one pass sets the stats
            low, high = (0.1, 0.3) if name.endswith("bn3") else (0.5, 1.5)
            nn.init.uniform_(module.weight, low, high)
            nn.init.normal_(module.bias, 0.0, 0.1)
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 3, 64, 64))
    return net.eval()


@pytest.mark.parametrize(
    "variant,height,width,att_size",
    [("caffe", 61, 75, 14), ("torchvision", 64, 64, 3)],
)
def test_converted_state_dict_gives_pytorch_features(variant, height, width, att_size):
    net = random_resnet50(caffe=variant == "caffe")
    state_dict = {k: v.numpy() for k, v in net.state_dict().items()}
    params = from_torchvision(state_dict, "resnet50", variant)
    images = np.random.default_rng(1).normal(size=(2, height, width, 3))
    images = images.astype(np.float32)
    want_fc, want_att = torch_features(net, images, att_size)
    encoder = build_encoder("resnet50", variant)
    fc, att = encoder.features(params, images, att_size)
    assert fc.shape == (2, 2048) and att.shape == (2, att_size**2, 2048)
    assert np.abs(want_fc).max() > 0.1  # features are not trivially zero
    np.testing.assert_allclose(fc, want_fc, atol=1e-4, rtol=0)
    np.testing.assert_allclose(att, want_att, atol=1e-4, rtol=0)


def test_pth_file_loads_like_the_state_dict(tmp_path):
    net = random_resnet50(caffe=True, seed=3)
    path = tmp_path / "resnet50.pth"
    torch.save(net.state_dict(), path)
    from_file = load_weights(str(path), "resnet50", "caffe")
    direct = from_torchvision(
        {k: v.numpy() for k, v in net.state_dict().items()}, "resnet50", "caffe"
    )
    np.testing.assert_array_equal(
        from_file["layer3"][5]["conv2"]["kernel"],
        direct["layer3"][5]["conv2"]["kernel"],
    )


@pytest.mark.parametrize("size", [(7, 7), (8, 9), (112, 112), (3, 4)])
@pytest.mark.parametrize("ceil_mode,pad", [(True, 0), (False, 1)])
def test_max_pool_matches_torch(size, ceil_mode, pad):
    x = np.random.default_rng(0).normal(size=(1, *size, 2)).astype(np.float32)
    want = F.max_pool2d(
        torch.from_numpy(x).permute(0, 3, 1, 2), 3, 2, pad, ceil_mode=ceil_mode
    ).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(max_pool_3x3_s2(x, pad, ceil_mode), want.numpy())


@pytest.mark.parametrize("height,width,att_size", [(7, 7, 14), (20, 15, 14), (5, 9, 3)])
def test_pool_features_match_torch_adaptive_pool(height, width, att_size):
    fmap = np.random.default_rng(0).normal(size=(2, height, width, 4))
    fmap = fmap.astype(np.float32)
    x = torch.from_numpy(fmap).permute(0, 3, 1, 2)
    want_att = F.adaptive_avg_pool2d(x, [att_size, att_size]).permute(0, 2, 3, 1)
    fc, att = pool_features(fmap, att_size)
    np.testing.assert_allclose(fc, x.mean(3).mean(2).numpy(), atol=1e-6)
    np.testing.assert_allclose(
        att, want_att.reshape(2, -1, 4).numpy(), atol=1e-6, rtol=0
    )
