"""VGG A-E (Simonyan & Zisserman, Table 1): layer lists, parameter counts, forward and backward."""
import time

import numpy as np
import pytest

import tinynet.models as models
import tinynet
from tinynet.models.vgg import CONFIGS, VGG
from tinynet import nn
from tinynet.nn import functional as F

# Table 2 of the paper rounds these to 133, 133, 134, 138, 144 million
PARAMETERS_1000 = {"vgg_a": 132_863_336, "vgg_a_lrn": 132_863_336, "vgg_b": 133_047_848,
                   "vgg_c": 133_638_952, "vgg_d": 138_357_544, "vgg_e": 143_667_240}
WEIGHT_LAYERS = {"vgg_a": 11, "vgg_a_lrn": 11, "vgg_b": 13, "vgg_c": 16, "vgg_d": 16, "vgg_e": 19}


def forward_backward(model, x, labels):
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    return loss


def images(batch, size, seed=0):
    return tinynet.tensor(np.random.default_rng(seed).standard_normal((batch, 3, size, size)), dtype="float32")


# Each configuration is built once (a few seconds each, most of it drawing the classifier's 123 M
# weights); C stays for its comparison with D, and D serves as VGG-16 for the 224 px tests.
_BUILT = {}


@pytest.fixture(scope="module")
def build():
    def get(name, keep=False):
        """The configuration ``name``, built once; ``keep`` holds it for a later test."""
        model = _BUILT.pop(name, None)
        if model is None:
            tinynet.manual_seed(0)
            model = models.create(name)
        if keep:
            _BUILT[name] = model
        return model
    yield get
    _BUILT.clear()


@pytest.mark.parametrize("name", sorted(PARAMETERS_1000))
def test_parameter_count_layers_and_a_small_training_step(name, build):
    """Count, layer list, and a 32 px step through the configuration's own layers (its features: the
    classifier is the same in all six; its 32 px step runs in test_batch_norm_variant, VGG-16's at 224 px)."""
    model = build(name, keep=name in ("vgg_c", "vgg_d"))
    assert model.num_parameters() == PARAMETERS_1000[name]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(fcs) == WEIGHT_LAYERS[name] and len(fcs) == 3
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in convs if m.kernel_size != (1, 1))
    ones = [c for c in convs if c.kernel_size == (1, 1)]
    # only C has 1x1 layers: the last layer of blocks 3-5 (256, 512, 512 channels)
    assert [c.out_channels for c in ones] == ([256, 512, 512] if name == "vgg_c" else [])
    lrns = [m for m in model.modules() if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrns) == (1 if name == "vgg_a_lrn" else 0)
    # 32 px: five 2x2 pools leave 1x1
    maps = model.features(images(2, 32))
    assert maps.shape == (2, 512, 1, 1)
    (maps * tinynet.tensor(np.random.default_rng(1).standard_normal(maps.shape), dtype="float32")).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.features.parameters())
    assert np.abs(model.features.conv1_1.weight.grad.numpy()).sum() > 0
    model.zero_grad()


def test_the_1x1_layers_of_c_are_what_separates_it_from_d(build):
    """C and D differ only in the last convolution of blocks 3-5: 1x1 (no padding) in C, 3x3 in D, the
    same widths, so the same map sizes, and 8 * C_in * C_out more weights each in D."""
    c, d = build("vgg_c"), build("vgg_d", keep=True)
    c_layers, d_layers = list(c.named_modules()), list(d.named_modules())
    assert [(n, type(m)) for n, m in c_layers] == [(n, type(m)) for n, m in d_layers]
    differing = []
    for (name, in_c), (_, in_d) in zip(c_layers, d_layers):
        if isinstance(in_c, nn.Conv2d):
            assert (in_c.in_channels, in_c.out_channels, in_c.stride) == (in_d.in_channels, in_d.out_channels,
                                                                           in_d.stride), name
            if (in_c.kernel_size, in_c.padding) != (in_d.kernel_size, in_d.padding):
                assert (in_c.kernel_size, in_c.padding, in_d.kernel_size, in_d.padding) == \
                    ((1, 1), (0, 0), (3, 3), (1, 1)), name
                differing.append((name, in_c.in_channels, in_c.out_channels))
        elif isinstance(in_c, nn.Linear):
            assert (in_c.in_features, in_c.out_features) == (in_d.in_features, in_d.out_features), name
    assert differing == [("features.conv3_3", 256, 256), ("features.conv4_3", 512, 512),
                         ("features.conv5_3", 512, 512)]
    assert d.num_parameters() - c.num_parameters() == sum(8 * cin * cout for _, cin, cout in differing)
    assert PARAMETERS_1000["vgg_d"] - PARAMETERS_1000["vgg_c"] == d.num_parameters() - c.num_parameters()


def test_batch_norm_variant():
    tinynet.manual_seed(0)
    model = models.create("vgg_a", batch_norm=True)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(bns) == len(convs) == 8 and all(c.bias is None for c in convs)
    # each BatchNorm adds gamma and beta (2C) and replaces the conv's bias (C)
    assert model.num_parameters() == PARAMETERS_1000["vgg_a"] + sum(c.out_channels for c in convs)
    names = [n for n, _ in model.features.named_children()]
    assert names[:4] == ["conv1_1", "bn1_1", "relu1_1", "pool1"]
    # the whole network at 32 px: five 2x2 pools leave 1x1, the adaptive pool spreads it to 7x7 for FC6
    loss = forward_backward(model, images(2, 32), np.array([0, 999]))
    assert np.isfinite(loss.item()) and bns[0].weight.grad is not None
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    assert np.count_nonzero(model.classifier.fc6.weight.grad.numpy()) > 0


def test_unknown_configuration_is_refused():
    with pytest.raises(ValueError, match="config must be one of"):
        VGG("F")
    assert sorted(CONFIGS) == ["A", "A-LRN", "B", "C", "D", "E"]


# ----------------------------------------------------------------------------- VGG-16 at 224 px
# VGG-16 is configuration D (the registry's alias), built once above
@pytest.fixture(scope="module")
def vgg16(build):
    return build("vgg_d", keep=True)


def test_notes_per_layer_table_of_vgg16(vgg16):
    from tinynet.models.compare import notes_table
    lines, totals = notes_table(vgg16, (3, 224, 224))
    assert lines[:5] == [
        "INPUT: [224x224x3]  memory: 224*224*3=150K  params: 0",
        "CONV3-64: [224x224x64]  memory: 224*224*64=3.2M  params: (3*3*3)*64 = 1,728",
        "CONV3-64: [224x224x64]  memory: 224*224*64=3.2M  params: (3*3*64)*64 = 36,864",
        "POOL2: [112x112x64]  memory: 112*112*64=800K  params: 0",
        "CONV3-128: [112x112x128]  memory: 112*112*128=1.6M  params: (3*3*64)*128 = 73,728"]
    assert lines[-6:-3] == [
        "FC: [1x1x4096]  memory: 4096  params: 7*7*512*4096 = 102,760,448",
        "FC: [1x1x4096]  memory: 4096  params: 4096*4096 = 16,777,216",
        "FC: [1x1x1000]  memory: 1000  params: 4096*1000 = 4,096,000"]
    assert len(lines) == 1 + 13 + 5 + 3 + 3
    # the notes' rows add up to 15.2M values (58 MiB in float32), not the 24M (93 MB) the notes print
    assert totals["activations"] == 15_237_608 and totals["bytes"] == 60_950_432
    assert totals["weights"] == 138_344_128 and totals["parameters"] == 138_357_544
    assert totals["mult_adds"] == 15_470_264_320          # "15.3 billion" in the usual tables
    assert lines[-2:] == ["TOTAL memory: 15M * 4 bytes ~= 58MB / image (only forward! ~*2 for bwd)",
                          "TOTAL params: 138M parameters"]


def test_vgg16_is_16_weight_layers_deep(vgg16):
    from tinynet.models.compare import weight_layer_depth
    assert weight_layer_depth(vgg16, 32) == 16


# VGG-16 at 224x224, batch 1: forward and backward once, the one paper-size test of the VGG family
# (15.5 G multiply-adds forward; 20-35 s on the shared 2-core machine).
def test_vgg16_forward_backward_at_paper_input_size_224(vgg16):
    start = time.perf_counter()
    loss = forward_backward(vgg16, images(1, 224), np.array([7]))
    seconds = time.perf_counter() - start
    assert np.isfinite(loss.item()) and vgg16.features.conv1_1.weight.grad is not None
    print(f"VGG-16 forward+backward at 224 px, batch 1: {seconds:.1f} s")
