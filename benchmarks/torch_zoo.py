"""ResNet-18, ResNet-50 and VGG-16 in plain ``torch.nn`` (no torchvision), for ``benchmarks/run.py``.

Each network is the one ``models.create(name)`` builds in tinynet (examples/models/resnet.py and
vgg.py), with the same module names, so ``state_dict`` keys match and the benchmark copies
tinynet's weights into torch's model before it checks that both compute the same function:

* ResNet: projection shortcuts (option B) where the shape changes; in the bottleneck the stride
  sits in the first 1x1 convolution (tinynet's default ``stride_in_1x1=True``, the paper's and
  Caffe's layout; torchvision's v1.5 moves it to the 3x3);
* VGG-16: configuration D, layers ``conv1_1 ... pool5``, ``fc6 ... fc8``, dropout after the
  ReLUs of FC6 and FC7, a 7x7 adaptive average pool before the classifier.
"""
from collections import OrderedDict

from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.downsample = _projection(in_channels, width, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = _projection(in_channels, out_channels, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _projection(in_channels, out_channels, stride):
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(OrderedDict([("0", nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)),
                                      ("1", nn.BatchNorm2d(out_channels))]))


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        Block = BasicBlock if block == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for stage, (count, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
            blocks = []
            for index in range(count):
                blocks.append(Block(channels, width, 2 if stage > 1 and index == 0 else 1))
                channels = width * Block.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


class VGG16(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        layers, channels = [], 3
        for block, (count, width) in enumerate(zip((2, 2, 3, 3, 3), (64, 128, 256, 512, 512)), start=1):
            for index in range(1, count + 1):
                layers += [(f"conv{block}_{index}", nn.Conv2d(channels, width, 3, padding=1)),
                           (f"relu{block}_{index}", nn.ReLU())]
                channels = width
            layers.append((f"pool{block}", nn.MaxPool2d(2, stride=2)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(512 * 7 * 7, 4096)), ("relu6", nn.ReLU()), ("dropout6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()), ("dropout7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes))]))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


MODELS = {
    "resnet18": lambda num_classes: ResNet("basic", (2, 2, 2, 2), num_classes),
    "resnet50": lambda num_classes: ResNet("bottleneck", (3, 4, 6, 3), num_classes),
    "vgg16": lambda num_classes: VGG16(num_classes),
}


def create(name, num_classes=1000):
    return MODELS[name](num_classes)
