"""tinynet.trace: what it records is what the layers computed, and the gradients are the loss's.

Each check compares the trace with something computed without it: the layer run again on the
recorded input, central finite differences of the loss, a plain autograd pass, receptive fields
found by back-propagating one unit through a network of positive weights.
"""
from collections import OrderedDict

import numpy as np
import pytest

import tinynet
from tinynet import nn
from tinynet.nn import functional as F
from tinynet.trace import trace


def small_net(seed=0, dtype=np.float64):
    """Every kind of layer the explainer writes out, small enough for finite differences."""
    tinynet.manual_seed(seed)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 6, 3, stride=2, padding=1)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(3, stride=2)), ("norm1", nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0)),
        ("conv2", nn.Conv2d(6, 4, 3, padding=1, groups=2)), ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(4 * 3 * 3, 3))]))
    return net.to(dtype=dtype)


def sample(shape=(1, 3, 13, 13), seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def loss_of(net, x, target):
    return F.cross_entropy(net(tinynet.Tensor(x)), tinynet.Tensor(np.array([target]))).item()


def test_recorded_output_is_what_the_layer_computes_on_the_recorded_input():
    net = small_net()
    t = trace(net, sample())
    assert [r.label for r in t] == ["CONV1", "RELU1", "MAX POOL1", "NORM1", "CONV2", "RELU2", "FLATTEN", "FC"]
    for record in t:
        again = record.module(tinynet.Tensor(record.input)).numpy()
        np.testing.assert_array_equal(record.output, again, err_msg=record.label)
    # the chain: each layer's input is the previous layer's output
    for before, after in zip(t.records, t.records[1:]):
        np.testing.assert_array_equal(before.output, after.input)
    np.testing.assert_array_equal(t.records[-1].output, t.logits)


def test_recorded_gradients_match_finite_differences_of_the_loss():
    net = small_net()
    x = sample()
    t = trace(net, x)
    target = int(t.target[0])
    assert target == int(np.argmax(t.logits[0]))          # the predicted class by default
    assert t.loss == pytest.approx(loss_of(net, x, target), rel=1e-12)
    layers = list(net._modules.values())
    rng = np.random.default_rng(2)
    eps = 1e-6
    for position, record in enumerate(t.records):
        # d loss / d output of this layer: perturb the output and run the rest of the network
        rest = layers[position + 1:]

        def loss_from(h):
            out = tinynet.Tensor(h)
            for layer in rest:
                out = layer(out)
            return F.cross_entropy(out, tinynet.Tensor(np.array([target]))).item()

        for _ in range(4):
            index = tuple(rng.integers(0, s) for s in record.output.shape)
            up, down = record.output.copy(), record.output.copy()
            up[index] += eps
            down[index] -= eps
            numeric = (loss_from(up) - loss_from(down)) / (2 * eps)
            assert record.grad_output[index] == pytest.approx(numeric, rel=1e-5, abs=1e-9), (record.label, index)
    # d loss / d weights of conv1, d loss / d bias of fc
    for record, name in ((t["CONV1"], "weight"), (t["FC"], "bias")):
        parameter = record.module._parameters[name]
        for _ in range(4):
            index = tuple(rng.integers(0, s) for s in parameter.shape)
            keep = parameter.data[index]
            parameter.data[index] = keep + eps
            up = loss_of(net, x, target)
            parameter.data[index] = keep - eps
            down = loss_of(net, x, target)
            parameter.data[index] = keep
            numeric = (up - down) / (2 * eps)
            assert record.weight_grads[name][index] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_input_gradient_and_weight_gradients_agree_with_a_plain_autograd_pass():
    net = small_net(dtype=np.float32)
    x = sample(dtype=np.float32)
    t = trace(net, x, target=2)
    plain = tinynet.Tensor(x, requires_grad=True)
    F.cross_entropy(net(plain), tinynet.Tensor(np.array([2]))).backward()
    np.testing.assert_allclose(t.input_grad, plain.grad.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(t["CONV1"].grad_input, plain.grad.numpy(), rtol=1e-6, atol=1e-9)
    for record in (t["CONV1"], t["CONV2"], t["FC"]):
        for name, parameter in record.module._parameters.items():
            np.testing.assert_allclose(record.weight_grads[name], parameter.grad.numpy(), rtol=1e-6, atol=1e-9)
    net.zero_grad()
    assert t.saliency().shape == (13, 13)


def test_a_tensor_used_twice_gets_both_gradient_contributions():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.relu, self.fc2 = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)

        def forward(self, x):
            h = self.relu(self.fc1(x))
            return self.fc2(h) + self.fc2(h * 2.0)

    tinynet.manual_seed(3)
    net = Twice().double()
    x = sample((1, 4))
    t = trace(net, x)
    h = t["RELU"].output
    w = net.fc2.weight.data
    p = t.probabilities[0]
    dlogits = p - np.eye(2)[int(t.target[0])]
    # d loss/d h through both uses: W2^T dlogits + 2 W2^T dlogits
    np.testing.assert_allclose(t["RELU"].grad_output[0], 3 * w.T @ dlogits, rtol=1e-10)
    assert [r.label for r in t].count("FC2") == 2 and h.shape == (1, 4)


def test_layer_and_channel_selection_keeps_only_what_was_asked():
    net = small_net()
    x = sample()
    before = {id(p): (p.requires_grad, p.grad) for p in net.parameters()}
    full = trace(net, x)
    t = trace(net, x, layers=["CONV2", "features.none", "relu1"], channels=2)
    assert [r.label for r in t] == ["RELU1", "CONV2"]
    relu1, conv2 = t.records
    assert relu1.output.shape == (1, 2, 7, 7) and relu1.grad_output.shape == (1, 2, 7, 7)
    assert relu1.output_shape == (1, 6, 7, 7)               # the full shape is still said
    np.testing.assert_array_equal(relu1.output, full["RELU1"].output[:, :2])
    np.testing.assert_allclose(conv2.grad_output, full["CONV2"].grad_output[:, :2], rtol=1e-12)
    np.testing.assert_allclose(conv2.grad_input, full["CONV2"].grad_input[:, :2], rtol=1e-12)
    assert conv2.weight_grads["weight"].shape == (2, 3, 3, 3)
    np.testing.assert_allclose(conv2.weight_grads["weight"], full["CONV2"].weight_grads["weight"][:2], rtol=1e-12)
    assert relu1.weight_grads == {}
    assert t.nbytes() < full.nbytes() / 2
    # the model is as it was: no hooks left, parameters' flags and gradients restored, eval/train kept
    for module in net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    for p in net.parameters():
        assert (p.requires_grad, p.grad) == before[id(p)]
    assert net.training


def test_receptive_fields_are_the_pixels_a_unit_depends_on():
    # positive weights and inputs, average pooling: every pixel of the field changes the unit, so
    # the support of d unit / d input is exactly the (clipped) receptive field
    net = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(1, 1, 5, stride=2, padding=1)),
                                     ("pool", nn.AvgPool2d(3, stride=2)),
                                     ("conv2", nn.Conv2d(1, 1, 3, padding=1, dilation=1)),
                                     ("flatten", nn.Flatten())])).double()
    for p in net.parameters():
        p.data[...] = 0.5
    x = np.abs(sample((1, 1, 31, 31))) + 0.1
    t = trace(net, x)
    assert t["FLATTEN"].receptive_field(0, 0) is None         # a vector's units see the whole input
    for record in t.records[:-1]:
        _, _, h, w = record.output_shape
        for y, x_ in ((0, 0), (h // 2, w // 3), (h - 1, w - 1)):
            probe = tinynet.Tensor(x, requires_grad=True)
            out = probe
            for layer in list(net._modules.values())[:record.index + 1]:
                out = layer(out)
            grad = np.zeros(out.shape)
            grad[0, 0, y, x_] = 1
            out.backward(grad)
            rows, cols = np.nonzero(probe.grad.numpy()[0, 0])
            expected = (rows.min(), cols.min(), rows.max(), cols.max())
            assert record.receptive_field(y, x_) == expected, (record.label, y, x_)
    # AlexNet's numbers: CONV1 unit (y, x) sees rows 4y .. 4y+10, MAX POOL1 rows 8y .. 8y+18
    import tinynet.models as models

    alexnet = models.create("alexnet", num_classes=2)
    t = trace(alexnet, sample((1, 3, 67, 67), dtype=np.float32), layers=["CONV1", "MAX POOL1"], channels=1)
    assert t["CONV1"].receptive_field(3, 5) == (12, 20, 22, 30)
    assert t["MAX POOL1"].receptive_field(2, 4) == (16, 32, 34, 50)
    assert t["MAX POOL1"].geometry.size() == (19, 19)


def test_a_224_pixel_vgg16_trace_with_a_selection_stays_small():
    import tinynet.models as models

    tinynet.manual_seed(0)
    vgg = models.create("vgg16", num_classes=2)
    x = sample((1, 3, 224, 224), dtype=np.float32)
    t = trace(vgg, x, layers=["CONV1_1", "CONV3_3", "CONV5_3", "FC8"], channels=8)
    assert [r.label for r in t] == ["CONV1_1", "CONV3_3", "CONV5_3", "FC8"]
    assert t["CONV1_1"].output.shape == (1, 8, 224, 224)
    assert t["CONV5_3"].weight_grads["weight"].shape == (8, 512, 3, 3)
    # the kept arrays: 8 channels of three layers, the input and its gradient, a few weights
    assert t.nbytes() < 30 * 2 ** 20, t.nbytes()
    # the big fully connected layers' weight gradients were never computed, nor left behind
    assert all(p.grad is None for p in vgg.parameters())
    assert "weight" not in t["FC8"].weight_grads or t["FC8"].weight_grads["weight"].shape == (2, 4096)


def test_tracing_in_training_mode_leaves_the_running_statistics_alone():
    tinynet.manual_seed(0)
    net = nn.Sequential(OrderedDict([("conv", nn.Conv2d(3, 4, 3)), ("bn", nn.BatchNorm2d(4)),
                                     ("flatten", nn.Flatten()), ("fc", nn.Linear(4 * 11 * 11, 2))])).double()
    before = {name: array.copy() for name, array in net.named_buffers()}
    t = trace(net, sample(), train=True)
    assert t["BN"].training and net.training
    for name, array in net.named_buffers():
        np.testing.assert_array_equal(array, before[name], err_msg=name)
    # in training mode the layer normalised with the batch's own statistics
    out = t["BN"].output[0]
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-10)
