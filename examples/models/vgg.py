"""VGG (Simonyan & Zisserman, 2014): configurations A, A-LRN, B, C, D and E of the paper's Table 1.

Every configuration is five blocks of convolutions, each block ending in a 2x2/2 max pool, then
three fully connected layers:

    A       conv3-64            | conv3-128          | conv3-256 x2            | conv3-512 x2            | conv3-512 x2
    A-LRN   conv3-64, LRN       | conv3-128          | conv3-256 x2            | conv3-512 x2            | conv3-512 x2
    B       conv3-64 x2         | conv3-128 x2       | conv3-256 x2            | conv3-512 x2            | conv3-512 x2
    C       conv3-64 x2         | conv3-128 x2       | conv3-256 x2, conv1-256 | conv3-512 x2, conv1-512 | conv3-512 x2, conv1-512
    D       conv3-64 x2         | conv3-128 x2       | conv3-256 x3            | conv3-512 x3            | conv3-512 x3
    E       conv3-64 x2         | conv3-128 x2       | conv3-256 x4            | conv3-512 x4            | conv3-512 x4
    then    FC-4096, FC-4096, FC-num_classes (dropout 0.5 on the outputs of the first two, after their
            ReLUs, as in the released Caffe models: fc6 -> relu6 -> drop6)

All 3x3 convolutions are stride 1, pad 1 (the size is kept: (n+2-3)/1+1 = n); the 1x1 ones of C
pad 0.  A 224x224 input halves five times: 224 -> 112 -> 56 -> 28 -> 14 -> 7, so FC6 sees
7*7*512 = 25,088 values.  Weight layers: A 11, B 13, C 16, D 16, E 19 (D is "VGG-16", E "VGG-19").

Why stacks of 3x3: two 3x3 layers see a 5x5 window and three see 7x7, with more
non-linearities and fewer weights: 3*(3*3*C*C) = 27C^2 against 7*7*C*C = 49C^2 for C channels in
and out.

Parameters for 1000 classes (tested): A and A-LRN 132,863,336; B 133,047,848; C 133,638,952;
D 138,357,544; E 143,667,240 -- the paper's Table 2 rounds them to 133, 133, 134, 138 and 144 M.

``batch_norm=True`` puts a BatchNorm2d after every convolution (before its ReLU), the later
"VGG-BN" variant (Ioffe & Szegedy, 2015; torchvision's vgg16_bn); the convolutions then have no
bias, since BatchNorm's shift replaces it.  The paper has no BatchNorm.  An adaptive average pool to
7x7 before the classifier (as in torchvision) does nothing at 224 px and lets small inputs run.
"""
from collections import OrderedDict

from tinynet import nn

# Table 1: per block, the convolutions as kernel sizes; "LRN" marks A-LRN's normalisation layer
CONFIGS = {
    "A": [[3], [3], [3, 3], [3, 3], [3, 3]],
    "A-LRN": [[3, "LRN"], [3], [3, 3], [3, 3], [3, 3]],
    "B": [[3, 3], [3, 3], [3, 3], [3, 3], [3, 3]],
    "C": [[3, 3], [3, 3], [3, 3, 1], [3, 3, 1], [3, 3, 1]],
    "D": [[3, 3], [3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
    "E": [[3, 3], [3, 3], [3, 3, 3, 3], [3, 3, 3, 3], [3, 3, 3, 3]],
}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)


class VGG(nn.Module):
    """One configuration of Table 1; layers named ``conv1_1 ... pool5, fc6, fc7, fc8`` as in Caffe."""

    def __init__(self, config="D", num_classes=1000, batch_norm=False, dropout=0.5):
        super().__init__()
        if config not in CONFIGS:
            raise ValueError(f"VGG: config must be one of {sorted(CONFIGS)} (Table 1), got {config!r}")
        self.config, self.batch_norm = config, batch_norm
        layers = []
        channels = 3
        for block, (kernels, width) in enumerate(zip(CONFIGS[config], BLOCK_WIDTHS), start=1):
            index = 0
            for kernel in kernels:
                if kernel == "LRN":
                    # A-LRN: AlexNet's normalisation (k=2, n=5, alpha=1e-4, beta=0.75), after conv1_1's ReLU
                    layers.append((f"norm{block}", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0,
                                                                        alpha_scaled_by_size=False)))
                    continue
                index += 1
                name = f"{block}_{index}"
                layers.append((f"conv{name}", nn.Conv2d(channels, width, kernel, padding=kernel // 2,
                                                        bias=not batch_norm)))
                if batch_norm:
                    layers.append((f"bn{name}", nn.BatchNorm2d(width)))
                layers.append((f"relu{name}", nn.ReLU()))
                channels = width
            layers.append((f"pool{block}", nn.MaxPool2d(2, stride=2)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(512 * 7 * 7, 4096)), ("relu6", nn.ReLU()), ("dropout6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()), ("dropout7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes))]))
        self._initialize()

    def _initialize(self):
        # The paper trained A from N(0, 0.01^2) and started the deeper nets from A's weights, then
        # notes Glorot initialisation works without that; He-normal (fan-in) for the ReLU convs lets
        # every configuration train from scratch.  Classifier: N(0, 0.01^2), biases zero.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def _factory(config):
    def build(num_classes=1000, batch_norm=False, dropout=0.5):
        return VGG(config, num_classes=num_classes, batch_norm=batch_norm, dropout=dropout)
    build.__name__ = f"vgg_{config.lower().replace('-', '_')}"
    build.__doc__ = f"VGG configuration {config} of Table 1 (options: batch_norm, dropout)."
    return build


MODELS = {
    "vgg_a": _factory("A"),
    "vgg_a_lrn": _factory("A-LRN"),
    "vgg_b": _factory("B"),
    "vgg_c": _factory("C"),
    "vgg_d": _factory("D"),
    "vgg_e": _factory("E"),
}
MODELS["vgg16"] = MODELS["vgg_d"]     # the 16 weight layers of D
MODELS["vgg19"] = MODELS["vgg_e"]     # the 19 of E
