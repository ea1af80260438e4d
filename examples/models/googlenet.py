"""GoogLeNet (Inception v1; Szegedy et al., "Going deeper with convolutions", 2014), as in the paper's Table 1.

    conv1      7x7/2, 64, pad 3          (224+2*3-7)/2+1 = 112 (floor)   [112x112x64]
    pool1      3x3/2 max, ceil mode      ceil((112-3)/2)+1 = 56            [56x56x64]
    norm1      LRN
    conv2      1x1 reduce to 64, then 3x3/1 192, pad 1                     [56x56x192]
    norm2      LRN
    pool2      3x3/2 max, ceil mode      ceil((56-3)/2)+1 = 28             [28x28x192]
    inception 3a, 3b                                                       [28x28x256], [28x28x480]
    pool3      3x3/2 max, ceil mode      ceil((28-3)/2)+1 = 14             [14x14x480]
    inception 4a, 4b, 4c, 4d, 4e                                           ... [14x14x832]
    pool4      3x3/2 max, ceil mode      ceil((14-3)/2)+1 = 7              [7x7x832]
    inception 5a, 5b                                                       [7x7x832], [7x7x1024]
    avgpool    7x7/1 average (global at 224 px)                            [1x1x1024]
    dropout    40 %
    fc         linear 1024 -> num_classes (the paper's softmax is in the loss)

Pooling rounds *up* (``ceil_mode=True``), as Caffe did and the paper's sizes require: with floor
rounding 112 would pool to 55, not 56.  Every convolution is followed by a ReLU.  LRN: Caffe's
``local_size 5, alpha 1e-4, beta 0.75`` with alpha divided by the window (``alpha_scaled_by_size``).

An inception module runs four branches on the same input and concatenates their outputs along the
channels (``tinynet.concat``, which goes through autograd):

    #1x1                         1x1 convolution
    #3x3 reduce -> #3x3          1x1 convolution to fewer channels, then 3x3 (pad 1)
    #5x5 reduce -> #5x5          1x1 convolution to fewer channels, then 5x5 (pad 2)
    pool proj                    3x3/1 max pool (pad 1), then 1x1 convolution

The 1x1 "reduce" layers are the point: inception 3a's 5x5 branch on its 192 input channels would
need 5*5*192*32 = 153,600 weights, but after a 1x1 reduction to 16 channels it needs
192*16 + 5*5*16*32 = 15,872.

Auxiliary classifiers (after 4a and after 4d; ``aux_logits=True``, the default): 5x5/3 average pool
(14 -> 4), 1x1 convolution to 128 + ReLU, FC 1024 + ReLU, dropout 70 %, linear to num_classes.  They
exist to push gradient into the middle of the network during training; their losses are added with
weight 0.3 (:func:`googlenet_loss`) and they are dropped at inference.

What ``forward`` returns:

* training mode with ``aux_logits=True``: ``GoogLeNetOutputs(logits, aux1, aux2)``, a named tuple
  of three (N, num_classes) tensors (aux1 from 4a, aux2 from 4d); pass it to
  :func:`googlenet_loss`;
* evaluation mode, or ``aux_logits=False``: the main (N, num_classes) logits only.

The auxiliary heads need the 14x14 maps of a 224 px input (their FC takes 4*4*128 values); the main
network runs on any input from 33 px up (the final average pool is global).  Parameters for 1000
classes: 6,998,552 without the auxiliary heads, 13,378,280 with them.
"""
from collections import OrderedDict, namedtuple

import tinynet
from tinynet import nn
from tinynet.nn import functional as F

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux1", "aux2"])

#: Table 1: module -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
INCEPTION_WIDTHS = OrderedDict([
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
])

AUX_LOSS_WEIGHT = 0.3


def _lrn():
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0, alpha_scaled_by_size=True)


class Inception(nn.Module):
    """Four parallel branches concatenated along the channels (names as in Caffe's inception_3a/...)."""

    def __init__(self, in_channels, n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj
        self.widths = (n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj)
        self.conv1x1 = nn.Conv2d(in_channels, n1x1, 1)
        self.conv3x3_reduce = nn.Conv2d(in_channels, n3x3_reduce, 1)
        self.conv3x3 = nn.Conv2d(n3x3_reduce, n3x3, 3, padding=1)
        self.conv5x5_reduce = nn.Conv2d(in_channels, n5x5_reduce, 1)
        self.conv5x5 = nn.Conv2d(n5x5_reduce, n5x5, 5, padding=2)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.pool_proj = nn.Conv2d(in_channels, pool_proj, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        relu = self.relu
        branch1 = relu(self.conv1x1(x))
        branch2 = relu(self.conv3x3(relu(self.conv3x3_reduce(x))))
        branch3 = relu(self.conv5x5(relu(self.conv5x5_reduce(x))))
        branch4 = relu(self.pool_proj(self.pool(x)))
        return tinynet.concat([branch1, branch2, branch3, branch4], axis=1)


class AuxClassifier(nn.Module):
    """5x5/3 average pool, 1x1 conv 128, FC 1024, dropout 0.7, linear (section 5 of the paper)."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.avgpool = nn.AvgPool2d(5, stride=3)
        self.conv = nn.Conv2d(in_channels, 128, 1)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x):
        pooled = tuple((size - 5) // 3 + 1 for size in x.shape[2:])
        if pooled != (4, 4):      # FC1 takes 4*4*128 values: (14-5)/3+1 = 4
            raise ValueError(f"GoogLeNet auxiliary classifier: expects the 14x14 maps of a 224x224 input "
                             f"(pooled 5x5/3 to 4x4), got {tuple(x.shape[2:])} maps; use a 224 px input "
                             f"or aux_logits=False")
        x = self.relu(self.conv(self.avgpool(x)))
        x = self.relu(self.fc1(self.flatten(x)))
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    def __init__(self, num_classes=1000, aux_logits=True, dropout=0.4):
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.relu = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.norm1 = _lrn()
        self.conv2_reduce = nn.Conv2d(64, 64, 1)
        self.conv2 = nn.Conv2d(64, 192, 3, padding=1)
        self.norm2 = _lrn()
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 192
        for name, widths in INCEPTION_WIDTHS.items():
            module = Inception(channels, *widths)
            setattr(self, f"inception{name}", module)
            channels = module.out_channels
            if name in ("3b", "4e"):
                setattr(self, f"pool{name[0]}", nn.MaxPool2d(3, stride=2, ceil_mode=True))
        if aux_logits:
            self.aux1 = AuxClassifier(self.inception4a.out_channels, num_classes)
            self.aux2 = AuxClassifier(self.inception4d.out_channels, num_classes)
        # Table 1's "avg pool 7x7/1": at 224 px the map is 7x7, so this is a global average pool;
        # written as one it also runs at smaller inputs
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self._initialize()

    def _initialize(self):
        # Caffe's bvlc_googlenet: Xavier weights for the convolutions, constant 0.2 biases; the
        # classifiers Xavier with zero biases
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.constant_(module.bias, 0.2)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.norm1(self.pool1(self.relu(self.conv1(x))))
        x = self.relu(self.conv2(self.relu(self.conv2_reduce(x))))
        x = self.pool2(self.norm2(x))
        x = self.pool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        with_aux = self.aux_logits and self.training
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux else None
        x = self.pool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(self.flatten(self.avgpool(x))))
        if with_aux:
            return GoogLeNetOutputs(logits, aux1, aux2)
        return logits

    def loss(self, outputs, targets):
        """The training loss of what forward returned (the training scripts look for this method)."""
        return googlenet_loss(outputs, targets)


def googlenet_loss(outputs, targets, aux_weight=AUX_LOSS_WEIGHT):
    """Cross-entropy of the main logits, plus ``aux_weight`` (0.3) times each auxiliary loss in training.

    ``outputs`` is what :class:`GoogLeNet` returned: the named tuple in training mode, or plain
    logits (then the loss is the main cross-entropy alone).
    """
    if isinstance(outputs, GoogLeNetOutputs):
        return (F.cross_entropy(outputs.logits, targets)
                + aux_weight * (F.cross_entropy(outputs.aux1, targets) + F.cross_entropy(outputs.aux2, targets)))
    return F.cross_entropy(outputs, targets)


# ----------------------------------------------------------------------------- Table 1, from the model
#: the paper's Table 1: (type, patch size/stride, output H x W x C, depth, params in K, ops in M).
#: Its params column counts weights without biases in units of 1024 (inception 3a: 163,328 weights
#: = 159.5K); ops are multiply-adds in millions (3a: 28*28*163,328 = 128.0M).
PAPER_TABLE1 = [
    ("convolution", "7x7/2", (112, 112, 64), 1, 2.7, 34),
    ("max pool", "3x3/2", (56, 56, 64), 0, None, None),
    ("convolution", "3x3/1", (56, 56, 192), 2, 112, 360),
    ("max pool", "3x3/2", (28, 28, 192), 0, None, None),
    ("inception (3a)", "", (28, 28, 256), 2, 159, 128),
    ("inception (3b)", "", (28, 28, 480), 2, 380, 304),
    ("max pool", "3x3/2", (14, 14, 480), 0, None, None),
    ("inception (4a)", "", (14, 14, 512), 2, 364, 73),
    ("inception (4b)", "", (14, 14, 512), 2, 437, 88),
    ("inception (4c)", "", (14, 14, 512), 2, 463, 100),
    ("inception (4d)", "", (14, 14, 528), 2, 580, 119),
    ("inception (4e)", "", (14, 14, 832), 2, 840, 170),
    ("max pool", "3x3/2", (7, 7, 832), 0, None, None),
    ("inception (5a)", "", (7, 7, 832), 2, 1072, 54),
    ("inception (5b)", "", (7, 7, 1024), 2, 1388, 71),
    ("avg pool", "7x7/1", (1, 1, 1024), 0, None, None),
    ("dropout (40%)", "", (1, 1, 1024), 0, None, None),
    ("linear", "", (1, 1, 1000), 1, 1000, 1),
    ("softmax", "", (1, 1, 1000), 0, None, None),
]

#: the rows of Table 1 as groups of the model's top-level modules (LRN, ReLU and flatten have no row)
TABLE1_GROUPS = [("conv1",), ("pool1",), ("conv2_reduce", "conv2"), ("pool2",), ("inception3a",),
                 ("inception3b",), ("pool3",), ("inception4a",), ("inception4b",), ("inception4c",),
                 ("inception4d",), ("inception4e",), ("pool4",), ("inception5a",), ("inception5b",),
                 ("avgpool",), ("dropout",), ("fc",), ("softmax",)]


def table1(model, input_size=224):
    """Table 1 computed from ``model``: one dict per row with the paper's columns.

    Keys: ``type``, ``patch`` ("7x7/2"), ``output`` ((H, W, C)), ``depth`` (weight layers on the
    longest path through the row), ``widths`` (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj;
    None where the paper leaves them blank), ``weights`` (parameters without biases, as the paper
    counts them), ``params`` (with biases) and ``mult_adds``, from ``tinynet.summary``'s rows.
    The ``softmax`` row is the loss's: the model returns the logits.
    """
    shapes = {}
    handles = []
    for group in TABLE1_GROUPS:
        for name in group:
            module = getattr(model, name, None)
            if module is None and name != "softmax":
                raise ValueError(f"table1: the model has no top-level module {name!r}; is it a GoogLeNet?")
            if module is not None:
                def hook(mod, inputs, output, name=name):
                    shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))
                handles.append(module.register_forward_hook(hook))
    try:
        summary = tinynet.summary(model, (3, input_size, input_size))
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    for group, paper in zip(TABLE1_GROUPS, PAPER_TABLE1):
        kind = paper[0]
        if group == ("softmax",):
            _, out = shapes["fc"]
            rows.append(dict(type=kind, patch="", output=(1, 1, out[1]), depth=0, widths=None,
                             weights=0, params=0, mult_adds=0))
            continue
        modules = [getattr(model, name) for name in group]
        _, out = shapes[group[-1]]
        output = (out[2], out[3], out[1]) if len(out) == 4 else (1, 1, out[1])
        layers = [m for module in modules for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        weights = sum(m.weight.numel() for m in layers)
        params = sum(p.numel() for module in modules for p in module.parameters())
        prefixes = tuple(name + "." for name in group)
        mult_adds = sum(r.mult_adds for r in summary.rows if r.name in group or r.name.startswith(prefixes))
        first = modules[0]
        if isinstance(first, Inception):
            depth, widths, patch = 2, first.widths, ""
        elif isinstance(first, nn.Conv2d):
            last = modules[-1]
            depth = len(modules)
            widths = (None, modules[0].out_channels, last.out_channels, None, None, None) if depth == 2 else None
            patch = f"{last.kernel_size[0]}x{last.kernel_size[1]}/{last.stride[0]}"
        elif isinstance(first, nn.MaxPool2d):
            depth, widths = 0, None
            patch = f"{first.kernel_size[0]}x{first.kernel_size[1]}/{first.stride[0]}"
        elif isinstance(first, nn.AdaptiveAvgPool2d):
            # a global average pool: its window is the whole incoming map (7x7 at 224 px)
            incoming, _ = shapes[group[0]]
            depth, widths, patch = 0, None, f"{incoming[2]}x{incoming[3]}/1"
        else:
            depth, widths, patch = (1 if layers else 0), None, ""
        if isinstance(first, nn.Dropout):
            kind = f"dropout ({round(first.p * 100)}%)"
        rows.append(dict(type=kind, patch=patch, output=output, depth=depth, widths=widths,
                         weights=weights, params=params, mult_adds=mult_adds))
    return rows


def format_table1(rows, with_paper=True):
    """Table 1 as text: the model's numbers, params as weights/1024 ("K") and ops in millions, and the paper's."""
    header = (f"{'type':<16}{'patch':<7}{'output':<12}{'depth':>5}  {'#1x1':>5}{'#3x3r':>6}{'#3x3':>5}"
              f"{'#5x5r':>6}{'#5x5':>5}{'proj':>5}  {'params':>8}{'ops':>8}")
    if with_paper:
        header += f"  {'paper params':>12}{'paper ops':>10}"
    lines = [header, "-" * len(header)]
    for row, paper in zip(rows, PAPER_TABLE1):
        h, w, c = row["output"]
        widths = "".join(f"{'' if v is None else v:>{n}}" for v, n in zip(row["widths"] or (None,) * 6,
                                                                       (5, 6, 5, 6, 5, 5)))
        params = f"{row['weights'] / 1024:.1f}K" if row["weights"] else ""
        ops = f"{row['mult_adds'] / 1e6:.1f}M" if row["mult_adds"] else ""
        line = (f"{row['type']:<16}{row['patch']:<7}{f'{h}x{w}x{c}':<12}{row['depth']:>5}  {widths}  "
                f"{params:>8}{ops:>8}")
        if with_paper:
            line += f"  {'' if paper[4] is None else f'{paper[4]:g}K':>12}{'' if paper[5] is None else f'{paper[5]}M':>10}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def googlenet(num_classes=1000, aux_logits=True, dropout=0.4):
    """GoogLeNet of Table 1 (options: aux_logits, dropout)."""
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits, dropout=dropout)


MODELS = {"googlenet": googlenet}
