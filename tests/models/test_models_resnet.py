"""ResNet (He et al. 2015): counts, block structure, shortcuts, the identity gradient path, torch parity."""
import numpy as np
import pytest

import tinynet.models as models
import tinynet
from tinynet.models.resnet import BasicBlock, Bottleneck, CifarResNet, ResNet, ZeroPadShortcut
from tinynet import nn
from tinynet.nn import functional as F

PARAMETERS_1000 = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                   "resnet101": 44_549_160, "resnet152": 60_192_808}
# weight layers: convolutions on the main path (not the shortcut projections) + fc
DEPTH = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152,
         "resnet20": 20, "resnet56": 56, "plain20": 20, "plain56": 56}


def images(batch, size, channels=3, seed=0):
    return tinynet.tensor(np.random.default_rng(seed).standard_normal((batch, channels, size, size)),
                          dtype="float32")


def main_path_depth(model):
    convs = [m for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in name]
    return len(convs) + len([m for m in model.modules() if isinstance(m, nn.Linear)])


@pytest.mark.parametrize("name", sorted(PARAMETERS_1000))
def test_imagenet_resnets_count_depth_and_projections(name):
    """Counts and structure of all five; the training steps of the family run once per block type, at
    224 px below (ResNet-18: basic blocks, ResNet-50: bottlenecks; 34, 101 and 152 stack the same
    blocks more often); ResNet-18 and ResNet-50 also run forward at 32 px in test_models_compare."""
    tinynet.manual_seed(0)
    model = models.create(name)
    assert model.num_parameters() == PARAMETERS_1000[name]
    assert main_path_depth(model) == DEPTH[name]
    projections = [n for n, m in model.named_modules() if n.endswith("downsample")]
    # a projection where the shape changes: the first block of every stage (of stage 1 only for
    # bottlenecks, whose 64 -> 256 channels change the shape there too)
    expected = ["layer1.0.downsample"] if "Bottleneck" in repr(model.layer1) else []
    assert projections == expected + ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]


@pytest.mark.parametrize("name, params", [("resnet20", 269_722), ("resnet56", 853_018),
                                          ("plain20", 269_722), ("plain56", 853_018)])
def test_cifar_networks_count_and_train_one_small_step(name, params):
    tinynet.manual_seed(0)
    model = models.create(name, num_classes=10)
    # option A shortcuts have no parameters, so the plain and residual nets count the same
    assert model.num_parameters() == params
    assert main_path_depth(model) == DEPTH[name]
    shortcuts = [n for n, m in model.named_modules() if isinstance(m, ZeroPadShortcut)]
    assert shortcuts == ([] if name.startswith("plain") else ["layer2.0.downsample", "layer3.0.downsample"])
    logits = model(images(2, 32))
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, np.array([0, 9])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_cifar_option_b_adds_the_two_projections():
    model = models.create("resnet20", num_classes=10, shortcut="B")
    # 1x1 convs 16->32 and 32->64 with BatchNorm: 16*32 + 2*32 + 32*64 + 2*64
    assert model.num_parameters() == 269_722 + 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    with pytest.raises(ValueError, match="shortcut must be 'A'"):
        models.create("resnet20", shortcut="C")
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)
    with pytest.raises(ValueError, match="block must be 'basic' or 'bottleneck'"):
        ResNet("wide", (2, 2, 2, 2))


def test_zero_initialised_residual_blocks_start_as_the_identity():
    """With the last BatchNorm's gamma at 0, F(x) = 0: a residual block outputs relu(x), a plain one 0."""
    tinynet.manual_seed(0)
    x = images(2, 8, channels=16, seed=1)
    for residual, expected in [(True, np.maximum(x.numpy(), 0)), (False, np.zeros(x.shape))]:
        block = BasicBlock(16, 16, residual=residual)
        nn.init.zeros_(block.bn2.weight)
        np.testing.assert_allclose(block(x).numpy(), expected, atol=1e-6)


def test_the_identity_path_carries_the_gradient_through_56_layers():
    """dy/dx = dF/dx + I: with every F zeroed, ResNet-56 still passes gradient to conv1; plain-56 passes none."""
    tinynet.manual_seed(0)
    x, labels = images(2, 16, seed=2), np.array([1, 2])
    first_layer_gradient = {}
    for name in ("resnet56", "plain56"):
        model = models.create(name, num_classes=10, zero_init_residual=True)
        F.cross_entropy(model(x), labels).backward()
        first_layer_gradient[name] = float(np.abs(model.conv1.weight.grad.numpy()).sum())
    assert first_layer_gradient["resnet56"] > 1e-3
    assert first_layer_gradient["plain56"] == 0.0


# ----------------------------------------------------------------------------- PyTorch as the oracle
torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
TF = torch.nn.functional


def _t(parameter):
    return torch.tensor(parameter.numpy())


def _torch_conv_bn(x, conv, bn):
    y = TF.conv2d(x, _t(conv.weight), None, conv.stride, conv.padding)
    return TF.batch_norm(y, None, None, _t(bn.weight), _t(bn.bias), training=True, eps=bn.eps)


def torch_block(block, x):
    """The same block written with torch.nn.functional, from the tinynet block's weights."""
    if isinstance(block, Bottleneck):
        out = TF.relu(_torch_conv_bn(x, block.conv1, block.bn1))
        out = TF.relu(_torch_conv_bn(out, block.conv2, block.bn2))
        out = _torch_conv_bn(out, block.conv3, block.bn3)
    else:
        out = TF.relu(_torch_conv_bn(x, block.conv1, block.bn1))
        out = _torch_conv_bn(out, block.conv2, block.bn2)
    shortcut = block.downsample
    if isinstance(shortcut, ZeroPadShortcut):
        sub = x[:, :, ::shortcut.stride, ::shortcut.stride]
        identity = TF.pad(sub, (0, 0, 0, 0, 0, shortcut.out_channels - shortcut.in_channels))
    elif shortcut is not None:
        identity = _torch_conv_bn(x, shortcut[0], shortcut[1])
    else:
        identity = x
    return TF.relu(out + identity)


@pytest.mark.parametrize("make, channels", [
    (lambda: BasicBlock(8, 8), 8),                              # identity shortcut
    (lambda: BasicBlock(8, 16, stride=2), 8),                   # projection (option B)
    (lambda: BasicBlock(8, 16, stride=2, shortcut="A"), 8),     # zero padding (option A)
    (lambda: Bottleneck(8, 4, stride=2), 8),                    # paper: stride in the first 1x1
    (lambda: Bottleneck(16, 4, stride=1), 16),                  # identity around a bottleneck
    (lambda: Bottleneck(8, 4, stride=2, stride_in_1x1=False), 8),   # torchvision's v1.5
])
def test_blocks_match_torch_forward_and_backward(make, channels):
    tinynet.manual_seed(0)
    block = make().double()
    for module in block.modules():       # non-trivial BatchNorm affine parameters
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    data = np.random.default_rng(3).standard_normal((3, channels, 6, 6))
    x = tinynet.tensor(data, dtype="float64", requires_grad=True)
    y = block(x)
    weights = np.random.default_rng(4).standard_normal(y.shape)
    (y * tinynet.tensor(weights)).sum().backward()

    reference_x = torch.tensor(data, requires_grad=True)
    reference = torch_block(block, reference_x)
    (reference * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(y.numpy(), reference.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(x.grad.numpy(), reference_x.grad.numpy(), rtol=1e-8, atol=1e-9)


# ----------------------------------------------------------------------------- paper input size
# ResNet-18 and ResNet-50 at 224x224, batch 1, one training step each (the family's paper-size tests).
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_forward_backward_at_paper_input_size_224(name):
    tinynet.manual_seed(0)
    model = models.create(name)
    summary = tinynet.summary(model, (3, 224, 224))
    assert [summary[f"{layer}.0.conv1"].input_shape[1:] for layer in ("layer1", "layer2", "layer3", "layer4")] \
        == [(56, 56), (56, 56), (28, 28), (14, 14)]
    assert summary["avgpool"].input_shape == (2048 if name == "resnet50" else 512, 7, 7)
    loss = F.cross_entropy(model(images(1, 224)), np.array([5]))
    loss.backward()
    assert np.isfinite(loss.item())
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    assert int(model.bn1.num_batches_tracked) == 1
