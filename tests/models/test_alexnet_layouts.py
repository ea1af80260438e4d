"""AlexNet's layouts: the notes'/torchvision's defaults and the paper's NORM and dropout positions.

The layer order is checked twice: as the model lists its layers (what a state dict and
``tinynet.summary`` see) and as the forward pass calls them (forward hooks), so a layout
that only renamed or only reordered the list would fail.
"""
import itertools
from pathlib import Path

import numpy as np
import pytest

import tinynet

ROOT = Path(__file__).resolve().parents[2]
from tinynet.models.alexnet import AlexNet  # noqa: E402

LAYOUTS = list(itertools.product(("after_pool", "before_pool"), ("torchvision", "paper")))

FEATURES = {
    "after_pool": ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2",
                   "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5"],
    "before_pool": ["conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2",
                    "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5"],
}
CLASSIFIER = {
    "torchvision": ["flatten", "dropout6", "fc6", "relu6", "dropout7", "fc7", "relu7", "fc8"],
    "paper": ["flatten", "fc6", "relu6", "dropout6", "fc7", "relu7", "dropout7", "fc8"],
}


# The notes' parameter counts: 1000 classes below (the defaults), 2 classes in every layout in the
# layer-order test (a layout moves LRN and dropout, which have no parameters), and with two groups here.
def test_two_groups_have_the_notes_parameter_count():
    assert AlexNet(num_classes=1000, groups=2).num_parameters() == 60_965_224


def test_the_defaults_are_the_layout_the_readme_run_used():
    model = AlexNet()
    assert model.num_parameters() == 62_378_344
    assert (model.norm_position, model.dropout_placement) == ("after_pool", "torchvision")
    assert [n for n, _ in model.features.named_children()] == FEATURES["after_pool"]
    assert [n for n, _ in model.classifier.named_children()] == CLASSIFIER["torchvision"]
    norm1 = dict(model.features.named_children())["norm1"]
    assert norm1.alpha_scaled_by_size is False and norm1.alpha == 1e-4


@pytest.mark.parametrize("norm_position, dropout_placement", LAYOUTS)
def test_layer_order_as_documented_and_as_called_and_backward_at_67_px(norm_position, dropout_placement):
    tinynet.manual_seed(0)
    model = AlexNet(num_classes=2, norm_position=norm_position, dropout_placement=dropout_placement)
    assert model.num_parameters() == 58_289_538      # the notes' count for 2 classes, whatever the layout
    assert [n for n, _ in model.features.named_children()] == FEATURES[norm_position]
    assert [n for n, _ in model.classifier.named_children()] == CLASSIFIER[dropout_placement]

    called, handles = [], []
    for prefix, container in (("features", model.features), ("classifier", model.classifier)):
        for name, layer in container.named_children():
            def hook(module, inputs, output, name=name):
                called.append((name, tuple(inputs[0].shape), output.numpy().copy()))
            handles.append(layer.register_forward_hook(hook))
    x = tinynet.tensor(np.random.default_rng(0).standard_normal((2, 3, 67, 67)), dtype="float32",
                       requires_grad=True)
    model.train()
    loss = tinynet.nn.functional.cross_entropy(model(x), np.array([0, 1]))
    for handle in handles:
        handle.remove()
    names = [name for name, _, _ in called]
    assert names == FEATURES[norm_position] + CLASSIFIER[dropout_placement]

    inputs = {name: shape for name, shape, _ in called}
    # at 67 px: conv1 gives 15x15, pool1 7x7; before_pool normalises the 15x15 maps
    assert inputs["norm1"] == ((2, 96, 15, 15) if norm_position == "before_pool" else (2, 96, 7, 7))
    assert inputs["norm2"] == ((2, 256, 7, 7) if norm_position == "before_pool" else (2, 256, 3, 3))
    # what dropout6 silences: the 9,216 pooled features, or FC6's 4,096 outputs
    assert inputs["dropout6"] == ((2, 9216) if dropout_placement == "torchvision" else (2, 4096))
    outputs = {name: out for name, _, out in called}
    if dropout_placement == "paper":
        # dropout6 acts on relu6's output: each value is dropped (0) or kept and doubled (p = 0.5)
        relu6, dropped6 = outputs["relu6"], outputs["dropout6"]
        kept = dropped6 != 0
        np.testing.assert_allclose(dropped6[kept], 2 * relu6[kept], rtol=1e-6)
        alive = relu6 != 0
        assert 0.4 < (alive & ~kept).sum() / alive.sum() < 0.6

    # forward + backward at the smallest input: every weighted layer and the input get gradients
    loss.backward()
    assert np.isfinite(loss.item())
    layers = dict(list(model.features.named_children()) + list(model.classifier.named_children()))
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        grad = layers[name].weight.grad.numpy()
        assert np.isfinite(grad).all() and np.abs(grad).sum() > 0, name
    assert x.grad.shape == (2, 3, 67, 67) and np.abs(x.grad.numpy()).sum() > 0


def test_norm_position_changes_the_function_but_not_the_state_dict():
    tinynet.manual_seed(0)
    notes = AlexNet(num_classes=2, norm_position="after_pool", lrn_alpha_scaled_by_size=False).eval()
    paper = AlexNet(num_classes=2, norm_position="before_pool").eval()
    paper.load_state_dict(notes.state_dict())
    x = tinynet.tensor(np.abs(np.random.default_rng(2).standard_normal((1, 3, 67, 67))) * 50, dtype="float32")
    with tinynet.no_grad():
        a, b = notes(x).numpy(), paper(x).numpy()
    assert a.shape == b.shape and not np.allclose(a, b)


@pytest.mark.parametrize("keyword, bad, allowed", [
    ("norm_position", "before", "('after_pool', 'before_pool')"),
    ("norm_position", None, "('after_pool', 'before_pool')"),
    ("dropout_placement", "caffe", "('torchvision', 'paper')"),
    ("dropout_placement", "Paper", "('torchvision', 'paper')"),
])
def test_bad_layout_names_raise_naming_the_allowed_values(keyword, bad, allowed):
    with pytest.raises(ValueError) as error:
        AlexNet(num_classes=2, **{keyword: bad})
    message = str(error.value)
    assert keyword in message and allowed in message and repr(bad) in message
