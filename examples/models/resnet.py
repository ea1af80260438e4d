"""ResNet (He, Zhang, Ren & Sun, 2015): the ImageNet networks of Table 1 and the CIFAR networks of section 4.2.

ImageNet ResNets (224x224 input), the paper's Table 1:

    conv1    7x7, 64, stride 2, pad 3                  (224+2*3-7)/2+1 = 112   [112x112x64]
    pool     3x3 max pool, stride 2, pad 1             (112+2*1-3)/2+1 = 56    [56x56x64]
    conv2_x  n2 blocks at 64 (basic) or 64/256 (bottleneck) channels            [56x56]
    conv3_x  n3 blocks, the first with stride 2                                 [28x28]
    conv4_x  n4 blocks, the first with stride 2                                 [14x14]
    conv5_x  n5 blocks, the first with stride 2                                 [7x7]
    global average pool, fc num_classes

    ResNet-18  basic      [2, 2, 2, 2]      ResNet-50   bottleneck [3, 4, 6, 3]
    ResNet-34  basic      [3, 4, 6, 3]      ResNet-101  bottleneck [3, 4, 23, 3]
                                            ResNet-152  bottleneck [3, 8, 36, 3]

A *basic* block is two 3x3 convolutions; a *bottleneck* block is 1x1 (reduce to a quarter),
3x3, 1x1 (expand back 4x), so its 3x3 runs on a quarter of the channels.  Every convolution is
followed by BatchNorm (and has no bias: BatchNorm's shift replaces it); ReLU after each BatchNorm
except the block's last, which is added to the shortcut first:

    y = relu(F(x) + shortcut(x))

The shortcut is the identity when the shapes agree, and a 1x1 convolution with stride (plus
BatchNorm) where the block changes the width or the resolution: the paper's option B, "projection
shortcuts where the shape changes".  Why it trains: dy/dx = dF/dx + I, so the gradient reaches
earlier blocks through the identity term however small dF/dx gets.

Where the stride-2 sits in a bottleneck: the paper (and its Caffe models) put it in the first 1x1
convolution; torchvision moved it to the 3x3 ("ResNet v1.5").  Both have the same parameters;
``stride_in_1x1`` chooses (default True, the paper).

Parameters for 1000 classes (tested): ResNet-18 11,689,512; 34 21,797,672; 50 25,557,032;
101 44,549,160; 152 60,192,808.  Module and state-dict names follow torchvision (``conv1``,
``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``).

CIFAR ResNets (32x32 input), section 4.2: a 3x3 convolution to 16 channels, then three stages of
n basic blocks at 16, 32 and 64 channels (the first block of stages 2 and 3 with stride 2: 32 -> 16
-> 8), global average pool, fc: 6n+2 weight layers, ResNet-20 (n=3) and ResNet-56 (n=9).  Their
shortcuts are the paper's **option A** by default: where the shape changes, the identity
subsampled by 2 and zero-padded with the missing channels, so a shortcut never has parameters
(ResNet-20: 269,722 parameters, ResNet-56: 853,018 for 10 classes; the paper says 0.27M and
0.85M).  ``shortcut="B"`` uses 1x1 projections there instead (272,474 and 855,770).  ``plain20`` / ``plain56`` are the
same stacks without any shortcut: the "plain" networks of the degradation experiment (Figure 1).
"""
from collections import OrderedDict

import tinynet
from tinynet import nn


def conv3x3(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, padding=0, bias=False)


def projection(in_channels, out_channels, stride):
    """Option B: a strided 1x1 convolution and BatchNorm that bring x to the block's output shape."""
    return nn.Sequential(OrderedDict([("0", conv1x1(in_channels, out_channels, stride)),
                                      ("1", nn.BatchNorm2d(out_channels))]))


class ZeroPadShortcut(nn.Module):
    """Option A: keep every ``stride``-th pixel and append zero channels up to ``out_channels``.

    No parameters; its gradient is the incoming gradient at the kept pixels of the first
    ``in_channels`` channels (slicing and concatenation both go through autograd).
    """

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"ZeroPadShortcut: cannot pad {in_channels} channels down to {out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        missing = self.out_channels - self.in_channels
        if missing == 0:
            return x
        n, _, h, w = x.shape
        zeros = tinynet.zeros(n, missing, h, w, dtype=x.dtype, device=x.device)
        return tinynet.concat([x, zeros], axis=1)

    def extra_repr(self):
        return f"{self.in_channels} -> {self.out_channels}, stride={self.stride}"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; ``y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(self, in_channels, width, stride=1, shortcut="B", residual=True):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.residual = residual
        self.downsample = _shortcut(in_channels, out_channels, stride, shortcut) if residual else None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), each with BatchNorm; the shortcut is added before the last ReLU."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1, shortcut="B", residual=True, stride_in_1x1=True):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv1x1(in_channels, width, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, 1 if stride_in_1x1 else stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.residual = residual
        self.downsample = _shortcut(in_channels, out_channels, stride, shortcut) if residual else None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


def _shortcut(in_channels, out_channels, stride, kind):
    """None (the identity) when the shapes agree; else option A (zero padding) or B (projection)."""
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if kind == "B":
        return projection(in_channels, out_channels, stride)
    raise ValueError(f"ResNet: shortcut must be 'A' (zero-padding identity) or 'B' (projection), got {kind!r}")


class ResNet(nn.Module):
    """The ImageNet ResNets: ``ResNet("bottleneck", [3, 4, 6, 3])`` is ResNet-50."""

    def __init__(self, block="basic", layers=(2, 2, 2, 2), num_classes=1000, zero_init_residual=False,
                 stride_in_1x1=True):
        super().__init__()
        if block not in ("basic", "bottleneck") or len(layers) != 4:
            raise ValueError(f"ResNet: block must be 'basic' or 'bottleneck' and layers four block counts, "
                             f"got {block!r}, {layers!r}")
        Block = BasicBlock if block == "basic" else Bottleneck
        extra = {} if block == "basic" else {"stride_in_1x1": stride_in_1x1}
        self.block_kind, self.layer_counts = block, tuple(layers)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for stage, (count, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
            blocks = []
            for index in range(count):
                stride = 2 if stage > 1 and index == 0 else 1
                blocks.append(Block(channels, width, stride, shortcut="B", **extra))
                channels = width * Block.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        _initialize(self, zero_init_residual)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


class CifarResNet(nn.Module):
    """Section 4.2's CIFAR networks: 6n+2 layers at 16/32/64 channels; ``residual=False`` is the plain net."""

    def __init__(self, depth=20, num_classes=10, shortcut="A", residual=True, in_channels=3,
                 zero_init_residual=False):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CifarResNet: depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.depth, self.residual, self.shortcut = depth, residual, shortcut
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        channels = 16
        for stage, width in enumerate((16, 32, 64), start=1):
            blocks = []
            for index in range(n):
                stride = 2 if stage > 1 and index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride, shortcut=shortcut, residual=residual))
                channels = width
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        _initialize(self, zero_init_residual)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def _initialize(model, zero_init_residual):
    # He-normal (fan_out, as in the paper's reference code and torchvision) for the convolutions,
    # BatchNorm gamma 1 and beta 0.  zero_init_residual starts every block's last gamma at 0, so each
    # residual block begins as the identity (Goyal et al., 2017); off by default (not in the paper).
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    if zero_init_residual:
        for module in model.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)


def _imagenet(block, layers):
    def build(num_classes=1000, zero_init_residual=False, stride_in_1x1=True):
        return ResNet(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual,
                      stride_in_1x1=stride_in_1x1)
    build.__doc__ = f"ImageNet ResNet, {block} blocks {list(layers)} (options: zero_init_residual, stride_in_1x1)."
    return build


def _cifar(depth, residual):
    def build(num_classes=10, shortcut="A", in_channels=3, zero_init_residual=False):
        return CifarResNet(depth, num_classes=num_classes, shortcut=shortcut, residual=residual,
                           in_channels=in_channels, zero_init_residual=zero_init_residual)
    build.__doc__ = (f"CIFAR {'ResNet' if residual else 'plain net'}-{depth} "
                     f"(options: shortcut 'A'/'B', in_channels, zero_init_residual).")
    return build


MODELS = {
    "resnet18": _imagenet("basic", (2, 2, 2, 2)),
    "resnet34": _imagenet("basic", (3, 4, 6, 3)),
    "resnet50": _imagenet("bottleneck", (3, 4, 6, 3)),
    "resnet101": _imagenet("bottleneck", (3, 4, 23, 3)),
    "resnet152": _imagenet("bottleneck", (3, 8, 36, 3)),
    "resnet20": _cifar(20, True),
    "resnet56": _cifar(56, True),
    "plain20": _cifar(20, False),
    "plain56": _cifar(56, False),
}
