"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012), built from tinynet layers.

The layer list of the lecture notes, for a 227x227x3 input:

    [55x55x96]   CONV1  96 11x11 filters at stride 4, pad 0    (227-11)/4+1 = 55
    [27x27x96]   MAX POOL1  3x3 filters at stride 2             (55-3)/2+1 = 27
    [27x27x96]   NORM1  local response normalisation
    [27x27x256]  CONV2  256 5x5 filters at stride 1, pad 2      (27+4-5)/1+1 = 27
    [13x13x256]  MAX POOL2  3x3 at stride 2                     (27-3)/2+1 = 13
    [13x13x256]  NORM2
    [13x13x384]  CONV3  384 3x3 filters at stride 1, pad 1
    [13x13x384]  CONV4  384 3x3 filters at stride 1, pad 1
    [13x13x256]  CONV5  256 3x3 filters at stride 1, pad 1
    [6x6x256]    MAX POOL3  3x3 at stride 2                     (13-3)/2+1 = 6
    [4096]       FC6, [4096] FC7, [num_classes] FC8

ReLU follows every convolution and hidden FC layer.  An adaptive average pool
to 6x6 sits before the classifier (as in torchvision): it does nothing at
227 px, and lets smaller inputs (from 67 px: (67-11)/4+1 = 15 -> 7 -> 3 -> 1)
run, for quick training on a CPU.

``groups=2`` splits CONV2, CONV4 and CONV5 into two halves that see only half
of the previous layer's channels -- the paper's two-GPU layout.

Layouts: where NORM and dropout sit
-----------------------------------
The notes, CaffeNet and torchvision differ from the paper in two places; both
are options, the defaults are what the README's real run used.

``norm_position`` -- the order of pooling and normalisation in blocks 1 and 2:

* ``"after_pool"`` (default; the notes and CaffeNet):
  conv1 -> relu1 -> pool1 -> norm1,  conv2 -> relu2 -> pool2 -> norm2
* ``"before_pool"`` (the paper, section 3.5: "max-pooling layers follow both
  response-normalization layers"; cuda-convnet's ImageNet configs):
  conv1 -> relu1 -> norm1 -> pool1,  conv2 -> relu2 -> norm2 -> pool2

``dropout_placement`` -- which values dropout silences:

* ``"torchvision"`` (default): the *inputs* of FC6 and FC7,
  flatten -> dropout6 -> fc6 -> relu6 -> dropout7 -> fc7 -> relu7 -> fc8
  (so dropout6 drops the 9,216 pooled features);
* ``"paper"`` (the paper, section 4.2, and Caffe's reference model
  fc6 -> relu6 -> drop6): the *outputs* of FC6 and FC7, after their ReLUs,
  flatten -> fc6 -> relu6 -> dropout6 -> fc7 -> relu7 -> dropout7 -> fc8.

``lrn_alpha_scaled_by_size`` -- False (default) multiplies the plain sum of
squares by alpha = 1e-4, as the paper's formula is written; True divides alpha
by the size n = 5 first, as Caffe, PyTorch and Krizhevsky's own cuda-convnet
do (cuda-convnet2's layer.py divides the configured ``scale`` by ``size``), so
the network that actually ran for the paper probably had the 5x weaker
normalisation of True.

The layer *names* are the same in every layout (conv1, relu1, pool1, norm1,
..., dropout6, fc6, ...), so a state dict loads into any layout; only the
order of the parameter-free layers changes, and the parameter counts do not:
62,378,344 (1000 classes), 58,289,538 (2 classes), 60,965,224 (1000 classes,
groups=2).

Registered as ``alexnet`` (``tinynet.models.create("alexnet", num_classes=2, groups=2)``);
``from tinynet.models.alexnet import AlexNet`` gives the class itself.
"""
from collections import OrderedDict

import tinynet
from tinynet import nn


class AlexNet(nn.Module):
    NORM_POSITIONS = ("after_pool", "before_pool")
    DROPOUT_PLACEMENTS = ("torchvision", "paper")

    def __init__(self, num_classes=1000, groups=1, lrn=True, dropout=0.5, init="paper",
                 lrn_alpha_scaled_by_size=False, norm_position="after_pool",
                 dropout_placement="torchvision"):
        super().__init__()
        if groups not in (1, 2):
            raise ValueError(f"AlexNet: groups must be 1 or 2 (the paper's two-GPU split), got {groups}")
        if norm_position not in self.NORM_POSITIONS:
            raise ValueError(f"AlexNet: norm_position must be one of {self.NORM_POSITIONS} "
                             f"('after_pool': the notes' and CaffeNet's pool -> norm; 'before_pool': "
                             f"the paper's norm -> pool), got {norm_position!r}")
        if dropout_placement not in self.DROPOUT_PLACEMENTS:
            raise ValueError(f"AlexNet: dropout_placement must be one of {self.DROPOUT_PLACEMENTS} "
                             f"('torchvision': dropout on the inputs of FC6 and FC7; 'paper': on the "
                             f"outputs of FC6 and FC7, after their ReLUs), got {dropout_placement!r}")
        self.norm_position, self.dropout_placement = norm_position, dropout_placement

        def norm(name):
            # the paper's constants: k=2, n=5, alpha=1e-4, beta=0.75 (alpha multiplies the plain sum)
            if not lrn:
                return []
            return [(name, nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0,
                                                alpha_scaled_by_size=lrn_alpha_scaled_by_size))]

        def pool_and_norm(block):
            pool = [(f"pool{block}", nn.MaxPool2d(3, stride=2))]
            if norm_position == "after_pool":
                return pool + norm(f"norm{block}")
            return norm(f"norm{block}") + pool

        self.features = nn.Sequential(OrderedDict(
            [("conv1", nn.Conv2d(3, 96, 11, stride=4, padding=0)), ("relu1", nn.ReLU())] +
            pool_and_norm(1) +
            [("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=groups)), ("relu2", nn.ReLU())] +
            pool_and_norm(2) +
            [("conv3", nn.Conv2d(256, 384, 3, padding=1)), ("relu3", nn.ReLU()),
             ("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=groups)), ("relu4", nn.ReLU()),
             ("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=groups)), ("relu5", nn.ReLU()),
             ("pool5", nn.MaxPool2d(3, stride=2))]))
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        def hidden(number, fan_in):
            drop = [(f"dropout{number}", nn.Dropout(dropout))]
            layer = [(f"fc{number}", nn.Linear(fan_in, 4096)), (f"relu{number}", nn.ReLU())]
            # torchvision drops what goes into the layer, the paper (and Caffe) what comes out
            return drop + layer if dropout_placement == "torchvision" else layer + drop

        self.classifier = nn.Sequential(OrderedDict(
            [("flatten", nn.Flatten())] + hidden(6, 256 * 6 * 6) + hidden(7, 4096) +
            [("fc8", nn.Linear(4096, num_classes))]))
        self.initialize(init)

    def initialize(self, scheme):
        """'paper': W ~ N(0, 0.01^2); biases 1 in conv2, conv4, conv5, fc6, fc7 (to give the ReLUs
        positive inputs early on), 0 elsewhere.  'kaiming': He-normal weights, zero biases."""
        if scheme not in ("paper", "kaiming"):
            raise ValueError(f"AlexNet: init must be 'paper' or 'kaiming', got {scheme!r}")
        ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
        for name, layer in list(self.features.named_children()) + list(self.classifier.named_children()):
            if not isinstance(layer, (nn.Conv2d, nn.Linear)):
                continue
            if scheme == "paper":
                nn.init.normal_(layer.weight, 0.0, 0.01)
                nn.init.constant_(layer.bias, 1.0 if name in ones else 0.0)
            else:
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu" if name != "fc8" else "linear")
                nn.init.zeros_(layer.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))

    def fc7_features(self, x):
        """The 4096-d activations after FC7's ReLU (the paper's section 6.1 retrieval features)."""
        with tinynet.no_grad():
            h = self.avgpool(self.features(x))
            for name, layer in self.classifier.named_children():
                h = layer(h)
                if name == "relu7":
                    return h
        raise RuntimeError("AlexNet classifier has no relu7")


def alexnet(num_classes=1000, **options):
    """AlexNet (Krizhevsky et al., 2012); options are AlexNet's keyword arguments (groups, lrn,
    norm_position, dropout_placement, init, ...)."""
    return AlexNet(num_classes=num_classes, **options)


# the class itself, so that the registry sees its keyword options (alexnet() takes **options)
MODELS = {"alexnet": AlexNet}


def load_alexnet(checkpoint=None, num_classes=2, groups=1, init="paper", seed=0):
    """``(model, info)``: an AlexNet from a checkpoint, or a fresh one (seeded) when ``checkpoint`` is None.

    The checkpoint is a ``tinynet.save``'d dict whose ``"model"`` entry is the state dict
    (``examples/alexnet_catdog.py`` writes one, with ``"config"``, ``"classes"`` and ``"statistics"``);
    a bare state dict works too.  The number of classes comes from ``"classes"`` or
    ``config["num_classes"]`` or FC8's weight, ``groups`` from the config or CONV2's weight.
    ``info`` holds ``config`` (dict), ``statistics`` (dict with ``mean``/``std``, or None) and
    ``classes`` (list or None).
    """
    if checkpoint is None:
        tinynet.manual_seed(seed)
        model = AlexNet(num_classes=num_classes, groups=groups, init=init)
        return model.eval(), {"config": {}, "statistics": None, "classes": None}
    state = tinynet.load(checkpoint)
    weights = state["model"] if isinstance(state.get("model"), dict) else state
    if "classifier.fc8.weight" not in weights or "features.conv2.weight" not in weights:
        raise tinynet.CheckpointError(
            f"{checkpoint}: no AlexNet weights (expected a dict with a 'model' state dict holding "
            f"'features.conv1.weight' ... 'classifier.fc8.weight')")
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    classes = state.get("classes") if isinstance(state.get("classes"), (list, tuple)) else None
    num_classes = (len(classes) if classes else config.get("num_classes")
                   or int(weights["classifier.fc8.weight"].shape[0]))
    groups = config.get("groups") or 96 // int(weights["features.conv2.weight"].shape[1])
    model = AlexNet(num_classes=num_classes, groups=groups, lrn=config.get("lrn", True),
                    dropout=config.get("dropout", 0.5))
    model.load_state_dict(weights)
    statistics = state.get("statistics") if isinstance(state.get("statistics"), dict) else None
    return model.eval(), {"config": config, "statistics": statistics, "classes": classes}
