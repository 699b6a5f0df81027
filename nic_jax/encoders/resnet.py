"""ResNet-50/101/152 in Flax NNX: the CNN of self-critical.pytorch's image features.

He et al. 2016, "Deep Residual Learning for Image Recognition": a 7x7 stem, a 3x3
max-pool, then four stages of bottleneck blocks (1x1, 3x3, 1x1 convolutions, 4x
channel expansion, identity or projection shortcut): (3, 4, 6, 3) blocks for
ResNet-50, (3, 4, 23, 3) for 101, (3, 8, 36, 3) for 152. The output is the last
stage's map (B, h, w, 2048), before any pooling.

Two variants, matching the weights users hold:
* "caffe": self-critical.pytorch `misc/resnet.py`, the net its `prepro_feats.py`
  runs with the converted Caffe weights (`data/imagenet_weights/resnet101.pth`):
  a stage's stride sits in the first 1x1 convolution, and the stem max-pool has no
  padding and rounds its output size up (`ceil_mode=True`).
* "torchvision": `torchvision.models.resnet` (v1.5): the stride sits in the 3x3
  convolution and the max-pool pads by 1, rounding down.

Only inference is supported: every BatchNorm is folded from its running statistics
into the preceding convolution's kernel and bias (`weights.py`), so a block is
conv + bias + ReLU. Module names follow torchvision (conv1, layer1..layer4,
downsample), so converted state_dicts map one to one. Convolutions run at
`Precision.HIGHEST`: accelerators would otherwise round float32 inputs to
bf16/TF32 and features would drift from PyTorch's.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from nic_jax.errors import InputError

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
VARIANTS = ("caffe", "torchvision")
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
FEATURE_SIZE = STAGE_WIDTHS[-1] * EXPANSION  # 2048

_kaiming_fan_out = nnx.initializers.variance_scaling(
    2.0, "fan_out", "normal"
)  # torchvision's kaiming_normal_(mode="fan_out")


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise InputError(f"ResNet variant {variant!r} is unknown; valid: {VARIANTS}")


def conv_bn(in_ch: int, out_ch: int, size: int, stride: int, rngs) -> nnx.Conv:
    """A convolution with its folded BatchNorm as bias; 'same'-style padding."""
    pad = (size - 1) // 2
    return nnx.Conv(
        in_ch,
        out_ch,
        kernel_size=(size, size),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        use_bias=True,
        kernel_init=_kaiming_fan_out,
        precision=lax.Precision.HIGHEST,
        rngs=rngs,
    )


class Bottleneck(nnx.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) with a shortcut: (B, H, W, C) -> (B, H/s, W/s,
    4P). `stride_in_1x1` puts the stride in conv1 (caffe) instead of conv2."""

    def __init__(self, in_ch, planes, stride, stride_in_1x1: bool, rngs):
        stride1, stride3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv_bn(in_ch, planes, 1, stride1, rngs)
        self.conv2 = conv_bn(planes, planes, 3, stride3, rngs)
        self.conv3 = conv_bn(planes, planes * EXPANSION, 1, 1, rngs)
        projects = stride != 1 or in_ch != planes * EXPANSION
        self.downsample = (
            conv_bn(in_ch, planes * EXPANSION, 1, stride, rngs) if projects else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        out = jax.nn.relu(self.conv1(x))
        out = jax.nn.relu(self.conv2(out))
        out = self.conv3(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return jax.nn.relu(out + shortcut)


def max_pool_3x3_s2(x: jax.Array, pad: int, ceil_mode: bool) -> jax.Array:
    """torch.nn.MaxPool2d(3, 2, pad, ceil_mode) on (B, H, W, C).

    With ceil_mode the last window may overhang the bottom/right edge (padded with
    -inf), unless it would start beyond the padded input, as torch decides.
    """
    pads = []
    for size in x.shape[1:3]:
        span = size + 2 * pad - 3
        out = (-(-span // 2) if ceil_mode else span // 2) + 1
        if ceil_mode and (out - 1) * 2 >= size + pad:
            out -= 1
        pads.append((pad, (out - 1) * 2 + 3 - size - pad))
    return lax.reduce_window(
        x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), *pads, (0, 0))
    )


class ResNet(nnx.Module):
    """Normalised images (B, H, W, 3) -> last-stage feature map (B, h, w, 2048)."""

    def __init__(self, depth: int, variant: str, rngs: nnx.Rngs):
        if depth not in DEPTHS:
            raise InputError(f"ResNet depth {depth} is unknown; valid: {list(DEPTHS)}")
        check_variant(variant)
        self.caffe = variant == "caffe"
        self.conv1 = conv_bn(3, 64, 7, 2, rngs)
        in_ch = 64
        stages = []
        for index, (planes, blocks) in enumerate(zip(STAGE_WIDTHS, DEPTHS[depth])):
            stride = 1 if index == 0 else 2
            stage = []
            for block in range(blocks):
                stage.append(
                    Bottleneck(
                        in_ch, planes, stride if block == 0 else 1, self.caffe, rngs
                    )
                )
                in_ch = planes * EXPANSION
            stages.append(nnx.List(stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def __call__(self, images: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.conv1(images))
        if self.caffe:
            x = max_pool_3x3_s2(x, pad=0, ceil_mode=True)
        else:
            x = max_pool_3x3_s2(x, pad=1, ceil_mode=False)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x)
        return x
