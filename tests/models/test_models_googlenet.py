"""GoogLeNet (Szegedy et al. 2014): Table 1 from the model, the auxiliary heads, torch parity of a module."""
import numpy as np
import pytest

import tinynet.models as models
import tinynet
from tinynet.models.googlenet import (INCEPTION_WIDTHS, TABLE1_GROUPS, AuxClassifier, GoogLeNetOutputs, Inception,
                                      format_table1, googlenet_loss, table1)
from tinynet.nn import functional as F

_MODEL = {}


@pytest.fixture(scope="module")
def net():
    tinynet.manual_seed(0)
    _MODEL["net"] = models.create("googlenet")
    yield _MODEL["net"]
    _MODEL.clear()


def images(batch, size, seed=0):
    return tinynet.tensor(np.random.default_rng(seed).standard_normal((batch, 3, size, size)), dtype="float32")


def inception_weights(cin, n1, r3, n3, r5, n5, proj):
    return cin * n1 + cin * r3 + 9 * r3 * n3 + cin * r5 + 25 * r5 * n5 + cin * proj


def test_parameter_counts_from_the_widths(net):
    cin, weights, biases = 192, 0, 0
    for widths in INCEPTION_WIDTHS.values():
        weights += inception_weights(cin, *widths)
        biases += sum(widths)                  # one bias per output channel of each of the six convs
        n1, _, n3, _, n5, proj = widths
        cin = n1 + n3 + n5 + proj
    stem = 7 * 7 * 3 * 64 + 64 + 64 * 64 + 64 + 3 * 3 * 64 * 192 + 192
    main = stem + weights + biases + 1024 * 1000 + 1000
    aux = lambda c: c * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000  # noqa: E731
    assert main == 6_998_552
    assert net.num_parameters() == main + aux(512) + aux(528) == 13_378_280
    assert models.create("googlenet", num_classes=10, aux_logits=False).num_parameters() == \
        main - 1024 * 990 - 990


# Table 1 of Szegedy et al. (2014), typed from the paper: type, patch size/stride, output size (H, W, C),
# depth, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, params (K), ops (M).  Blank cells are None.
PAPER = [
    ("convolution", "7x7/2", (112, 112, 64), 1, None, None, None, None, None, None, 2.7, 34),
    ("max pool", "3x3/2", (56, 56, 64), 0, None, None, None, None, None, None, None, None),
    ("convolution", "3x3/1", (56, 56, 192), 2, None, 64, 192, None, None, None, 112, 360),
    ("max pool", "3x3/2", (28, 28, 192), 0, None, None, None, None, None, None, None, None),
    ("inception (3a)", "", (28, 28, 256), 2, 64, 96, 128, 16, 32, 32, 159, 128),
    ("inception (3b)", "", (28, 28, 480), 2, 128, 128, 192, 32, 96, 64, 380, 304),
    ("max pool", "3x3/2", (14, 14, 480), 0, None, None, None, None, None, None, None, None),
    ("inception (4a)", "", (14, 14, 512), 2, 192, 96, 208, 16, 48, 64, 364, 73),
    ("inception (4b)", "", (14, 14, 512), 2, 160, 112, 224, 24, 64, 64, 437, 88),
    ("inception (4c)", "", (14, 14, 512), 2, 128, 128, 256, 24, 64, 64, 463, 100),
    ("inception (4d)", "", (14, 14, 528), 2, 112, 144, 288, 32, 64, 64, 580, 119),
    ("inception (4e)", "", (14, 14, 832), 2, 256, 160, 320, 32, 128, 128, 840, 170),
    ("max pool", "3x3/2", (7, 7, 832), 0, None, None, None, None, None, None, None, None),
    ("inception (5a)", "", (7, 7, 832), 2, 256, 160, 320, 32, 128, 128, 1072, 54),
    ("inception (5b)", "", (7, 7, 1024), 2, 384, 192, 384, 48, 128, 128, 1388, 71),
    ("avg pool", "7x7/1", (1, 1, 1024), 0, None, None, None, None, None, None, None, None),
    ("dropout (40%)", "", (1, 1, 1024), 0, None, None, None, None, None, None, None, None),
    ("linear", "", (1, 1, 1000), 1, None, None, None, None, None, None, 1000, 1),
    ("softmax", "", (1, 1, 1000), 0, None, None, None, None, None, None, None, None),
]

# Where the paper contradicts itself: its params (weights without biases, in units of 1024) and
# ops (multiply-adds, in millions) columns disagree with its own widths and sizes in these cells,
# under any rounding (the widths' numbers after "!=").  Every other printed cell is the widths'
# number rounded down or up to the printed digit.
#   params: convolution 7x7/2 2.7K != 9.2K (7*7*3*64 = 9,408), 3b 380K != 379.0K, 4a 364K != 366.75K,
#           4b 437K != 438.0K, 4c 463K != 497.5K, 4d 580K != 590.5K, 4e 840K != 847.0K,
#           5a 1072K != 1018.0K, 5b 1388K != 1409.0K
#   ops:    convolution 7x7/2 34M != 118.0M, 5a 54M != 51.1M
PAPER_CONTRADICTS_ITSELF = {  # (type, patch size/stride, column)
    ("convolution", "7x7/2", "params"), ("convolution", "7x7/2", "ops"),
    ("inception (3b)", "", "params"), ("inception (4a)", "", "params"), ("inception (4b)", "", "params"),
    ("inception (4c)", "", "params"), ("inception (4d)", "", "params"), ("inception (4e)", "", "params"),
    ("inception (5a)", "", "params"), ("inception (5a)", "", "ops"), ("inception (5b)", "", "params")}


def paper_weights(index):
    """Weights (no biases) of row ``index`` from the paper's widths and sizes alone."""
    kind, _, _, _, n1, r3, n3, r5, n5, proj, _, _ = PAPER[index]
    cin = PAPER[index - 1][2][2] if index else 3
    if kind.startswith("inception"):
        return inception_weights(cin, n1, r3, n3, r5, n5, proj)
    if kind == "convolution":     # 7x7/2 to 64; then 1x1 reduce to 64 and 3x3 to 192
        return 7 * 7 * cin * 64 if index == 0 else cin * r3 + 9 * r3 * n3
    if kind == "linear":
        return cin * PAPER[index][2][2]
    return 0


def model_row_type(net, group):
    module = getattr(net, group[0], None)
    if module is None:
        return "softmax" if group == ("softmax",) else None
    if isinstance(module, Inception):
        return f"inception ({group[0][-2:]})"
    if isinstance(module, tinynet.nn.Dropout):
        return f"dropout ({round(module.p * 100)}%)"
    return {tinynet.nn.Conv2d: "convolution", tinynet.nn.MaxPool2d: "max pool",
            tinynet.nn.AdaptiveAvgPool2d: "avg pool", tinynet.nn.Linear: "linear"}.get(type(module))


def model_widths(net, group):
    """(#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) as built: the convolutions' own widths."""
    module = getattr(net, group[0], None)
    if isinstance(module, Inception):
        return tuple(getattr(module, name).out_channels for name in
                     ("conv1x1", "conv3x3_reduce", "conv3x3", "conv5x5_reduce", "conv5x5", "pool_proj"))
    if group == ("conv2_reduce", "conv2"):
        return (None, net.conv2_reduce.out_channels, net.conv2.out_channels, None, None, None)
    return (None,) * 6


@pytest.fixture(scope="module")
def rows(net):
    """table1 at 224 px (a summary of the whole network): computed once for the tests below."""
    return table1(net)


def test_table1_sizes_depths_and_widths_are_the_papers(net, rows):
    assert len(rows) == len(PAPER) == len(TABLE1_GROUPS)
    for row, group, paper in zip(rows, TABLE1_GROUPS, PAPER):
        kind, patch, output, depth = paper[:4]
        assert model_row_type(net, group) == kind, group
        assert (row["patch"], row["output"], row["depth"]) == (patch, output, depth), kind
        assert model_widths(net, group) == paper[4:10], kind


def test_table1_params_and_ops_are_the_papers(rows):
    """The model's weights and multiply-adds equal those of the paper's widths exactly; the printed
    params/ops columns agree with them, rounded to the printed digit, wherever the paper does."""
    compared = contradicted = 0
    for index, (row, paper) in enumerate(zip(rows, PAPER)):
        kind, patch, (height, width, _) = paper[:3]
        weights = paper_weights(index)
        assert row["weights"] == weights, kind
        assert row["mult_adds"] == height * width * weights, kind
        for column, printed, ours in (("params", paper[10], weights / 1024), ("ops", paper[11], row["mult_adds"] / 1e6)):
            if printed is None:
                assert ours == 0, (kind, column)
                continue
            step = 0.1 if printed != int(printed) else 1      # the printed digit: 2.7K, 159K
            agrees = abs(ours - printed) < step
            if (kind, patch, column) in PAPER_CONTRADICTS_ITSELF:
                assert not agrees, (kind, column, ours)        # keep the list of contradictions true
                contradicted += 1
            else:
                assert agrees, (kind, column, ours, printed)
                compared += 1
    assert (compared, contradicted) == (13, 11)
    text = format_table1(rows)
    assert "inception (3a)         28x28x256       2     64    96  128    16   32   32    159.5K  128.0M" in text


def test_googlenet_loss_adds_each_auxiliary_loss_with_weight_0_3(net):
    rng = np.random.default_rng(0)
    labels = np.array([3, 0])
    logits = [tinynet.tensor(rng.standard_normal((2, 5)), dtype="float32", requires_grad=True) for _ in range(3)]
    outputs = GoogLeNetOutputs(*logits)
    loss = net.loss(outputs, labels)                      # the method the training scripts call
    expected = sum(w * F.cross_entropy(o, labels).item() for w, o in zip((1, 0.3, 0.3), logits))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    one_hot = np.eye(5)[labels]
    for weight, tensor in zip((1, 0.3, 0.3), logits):
        values = tensor.numpy().astype(np.float64)
        softmax = np.exp(values) / np.exp(values).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(tensor.grad.numpy(), weight * (softmax - one_hot) / 2, rtol=1e-5, atol=1e-7)
    plain = logits[0].detach()                             # evaluation mode returns the logits alone
    assert googlenet_loss(plain, labels).item() == pytest.approx(F.cross_entropy(plain, labels).item())


def test_auxiliary_head_on_14x14_maps_trains():
    """The head as the 224 px network feeds it (4a's 14x14x512 maps); the network's own 224 px training
    forward, with both heads, runs in test_training_runs (the scripts' loss dispatch)."""
    tinynet.manual_seed(0)
    head = AuxClassifier(512, 10)
    maps = tinynet.tensor(np.random.default_rng(0).standard_normal((2, 512, 14, 14)), dtype="float32",
                          requires_grad=True)
    logits = head(maps)
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, np.array([1, 9])).backward()
    assert all(p.grad is not None for p in head.parameters()) and np.abs(maps.grad.numpy()).sum() > 0


def test_small_input_runs_without_the_auxiliary_heads():
    tinynet.manual_seed(0)
    model = models.create("googlenet", num_classes=5, aux_logits=False)
    model.train()
    logits = model(images(2, 64))
    assert logits.shape == (2, 5)
    F.cross_entropy(logits, np.array([0, 4])).backward()
    assert all(p.grad is not None for p in model.parameters())
    with_aux = models.create("googlenet", num_classes=5)
    with pytest.raises(ValueError, match="224x224"):
        with_aux(images(1, 64))            # training mode: the heads need 14x14 maps
    with_aux.eval()
    assert with_aux(images(1, 64)).shape == (1, 5)


torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")


def test_inception_module_matches_torch_forward_and_backward():
    tinynet.manual_seed(0)
    module = Inception(6, 2, 3, 4, 2, 3, 2).double()
    data = np.random.default_rng(0).standard_normal((2, 6, 5, 5))
    x = tinynet.tensor(data, dtype="float64", requires_grad=True)
    y = module(x)
    assert y.shape == (2, 2 + 4 + 3 + 2, 5, 5)
    weights = np.random.default_rng(1).standard_normal(y.shape)
    (y * tinynet.tensor(weights)).sum().backward()

    TF = torch.nn.functional
    leaves = {name: torch.tensor(p.numpy(), requires_grad=True) for name, p in module.named_parameters()}
    rx = torch.tensor(data, requires_grad=True)

    def conv(name, inp):
        c = getattr(module, name)
        return TF.relu(TF.conv2d(inp, leaves[f"{name}.weight"], leaves[f"{name}.bias"], padding=c.padding))
    reference = torch.cat([conv("conv1x1", rx), conv("conv3x3", conv("conv3x3_reduce", rx)),
                           conv("conv5x5", conv("conv5x5_reduce", rx)),
                           conv("pool_proj", TF.max_pool2d(rx, 3, 1, 1))], dim=1)
    (reference * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(y.numpy(), reference.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), rx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, parameter in module.named_parameters():
        np.testing.assert_allclose(parameter.grad.numpy(), leaves[name].grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)
