"""examples/models: the registry finds every family, builds by name and records what it built."""
import numpy as np
import pytest

import tinynet.models as models
import tinynet

# the names this package's model files define (LeNet-5's come from lenet.py, tested with it)
ZOO = ["alexnet", "vgg_a", "vgg_a_lrn", "vgg_b", "vgg_c", "vgg_d", "vgg16", "vgg_e", "vgg19", "googlenet",
       "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet20", "resnet56", "plain20",
       "plain56"]


def test_names_lists_every_family():
    known = models.names()
    assert known == sorted(known)
    missing = [name for name in ZOO if name not in known]
    assert not missing, f"not registered: {missing}"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as caught:
        models.create("resnet19")
    message = str(caught.value)
    assert "unknown model 'resnet19'" in message
    for name in ("resnet18", "vgg16", "googlenet", "alexnet"):
        assert name in message


def test_bad_num_classes_and_unstorable_options_are_refused():
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        models.create("resnet20", num_classes=0)
    with pytest.raises(TypeError, match="not a plain value"):
        models.create("resnet20", num_classes=10, shortcut=object())
    with pytest.raises(TypeError, match="unknown option.*batchnorm.*accepts.*batch_norm, dropout"):
        models.create("vgg_a", batchnorm=True)


def test_create_stamps_name_and_arguments_and_from_config_rebuilds():
    model = models.create("resnet20", num_classes=7, shortcut="B")
    config = models.config_of(model)
    assert config == {"name": "resnet20", "num_classes": 7, "options": {"shortcut": "B"}}
    config["options"]["shortcut"] = "A"          # a copy: the model's record is unchanged
    assert models.config_of(model)["options"] == {"shortcut": "B"}
    again = models.from_config(models.config_of(model))
    assert type(again) is type(model) and again.fc.out_features == 7
    assert [(n, p.shape) for n, p in again.named_parameters()] == \
        [(n, p.shape) for n, p in model.named_parameters()]


def test_aliases_are_the_same_factories():
    table = models.factories()
    assert table["vgg16"] is table["vgg_d"] and table["vgg19"] is table["vgg_e"]


def test_config_of_a_hand_built_model_says_how_to_build_it():
    from tinynet.models.resnet import CifarResNet
    with pytest.raises(ValueError, match="not built by models.create"):
        models.config_of(CifarResNet(20))


def test_checkpoint_alone_rebuilds_the_model(tmp_path):
    tinynet.manual_seed(0)
    model = models.create("plain20", num_classes=4, in_channels=1)
    x = tinynet.tensor(np.random.default_rng(0).standard_normal((2, 1, 16, 16)), dtype="float32")
    model(x)               # one training-mode pass: BatchNorm's running statistics leave their start values
    path = tmp_path / "ckpt.npz"
    tinynet.save({"epoch": 3, **models.checkpoint_entries(model)}, path)
    rebuilt = models.model_from_checkpoint(path)
    assert models.config_of(rebuilt) == models.config_of(model)
    assert float(rebuilt.bn1.running_var.sum()) == pytest.approx(float(model.bn1.running_var.sum()))
    assert float(model.bn1.running_var.sum()) != 16.0          # not the initial ones
    model.eval(), rebuilt.eval()
    np.testing.assert_array_equal(rebuilt(x).numpy(), model(x).numpy())


def test_checkpoint_without_config_is_a_clear_error(tmp_path):
    path = tmp_path / "old.npz"
    tinynet.save({"model": {}}, path)
    with pytest.raises(ValueError, match="no 'model_config' entry"):
        models.model_from_checkpoint(path)


def test_alexnet_is_in_the_registry():
    from tinynet.models.alexnet import AlexNet
    model = models.create("alexnet", num_classes=2, groups=2, dropout_placement="paper")
    assert isinstance(model, AlexNet) and model.num_parameters() == 56_876_418
    assert models.config_of(model)["options"] == {"groups": 2, "dropout_placement": "paper"}


# AlexNet's paper-size test (its small-input step is in tests/models/test_alexnet_layouts.py): 227x227, batch 1
def test_alexnet_forward_backward_at_paper_input_size_227():
    from tinynet.nn import functional as F
    tinynet.manual_seed(0)
    model = models.create("alexnet")
    x = tinynet.tensor(np.random.default_rng(0).standard_normal((1, 3, 227, 227)), dtype="float32")
    loss = F.cross_entropy(model(x), np.array([42]))
    loss.backward()
    assert np.isfinite(loss.item())
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
