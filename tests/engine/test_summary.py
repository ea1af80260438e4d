"""tinynet.summary: the lecture notes' numbers for AlexNet, and any model built from tinynet layers."""
import doctest
import importlib

import numpy as np
import pytest

import tinynet
from tinynet import nn

summary_module = importlib.import_module("tinynet.summary")
summary = summary_module.summary

from tinynet.models.alexnet import AlexNet  # noqa: E402

_CACHE = {}


@pytest.fixture(autouse=True, scope="module")
def _free_the_alexnets():
    yield
    _CACHE.clear()          # three AlexNets hold about 700 MB


def alexnet_summary(num_classes, groups):
    key = (num_classes, groups)
    if key not in _CACHE:
        tinynet.manual_seed(0)
        model = AlexNet(num_classes=num_classes, groups=groups)
        _CACHE[key] = (model, summary(model, (3, 227, 227)))
    return _CACHE[key]


def test_exposed_as_tinynet_summary():
    # tinynet/__init__.py imports the function under the submodule's name
    assert callable(tinynet.summary) and tinynet.summary is summary


@pytest.mark.parametrize("num_classes, groups, total", [
    (1000, 1, 62_378_344), (2, 1, 58_289_538), (1000, 2, 60_965_224)])
def test_alexnet_parameter_totals(num_classes, groups, total):
    model, table = alexnet_summary(num_classes, groups)
    assert table.total_params == total == model.num_parameters()
    assert sum(row.params for row in table.rows) == total and table.unused_params == 0
    assert f"total parameters:    {total:,} " in str(table)


# The notes' layer list: output volume and layer for a 227x227x3 input (1000 classes, one GPU).
NOTES = {
    "INPUT": ("[227x227x3] INPUT", "", "", 0),
    "CONV1": ("[55x55x96] CONV1: 96 11x11 filters at stride 4, pad 0", "(227-11)/4+1 = 55",
              "3*11*11*96+96 = 34,944", 34_944),
    "MAX POOL1": ("[27x27x96] MAX POOL1: 3x3 filters at stride 2", "(55-3)/2+1 = 27", "", 0),
    "NORM1": ("[27x27x96] NORM1: local response norm n=5, k=2, alpha=1e-4, beta=0.75", "", "", 0),
    "CONV2": ("[27x27x256] CONV2: 256 5x5 filters at stride 1, pad 2", "(27+2*2-5)/1+1 = 27",
              "96*5*5*256+256 = 614,656", 614_656),
    "MAX POOL2": ("[13x13x256] MAX POOL2: 3x3 filters at stride 2", "(27-3)/2+1 = 13", "", 0),
    "NORM2": ("[13x13x256] NORM2: local response norm n=5, k=2, alpha=1e-4, beta=0.75", "", "", 0),
    "CONV3": ("[13x13x384] CONV3: 384 3x3 filters at stride 1, pad 1", "(13+2*1-3)/1+1 = 13",
              "256*3*3*384+384 = 885,120", 885_120),
    "CONV4": ("[13x13x384] CONV4: 384 3x3 filters at stride 1, pad 1", "(13+2*1-3)/1+1 = 13",
              "384*3*3*384+384 = 1,327,488", 1_327_488),
    "CONV5": ("[13x13x256] CONV5: 256 3x3 filters at stride 1, pad 1", "(13+2*1-3)/1+1 = 13",
              "384*3*3*256+256 = 884,992", 884_992),
    "MAX POOL5": ("[6x6x256] MAX POOL5: 3x3 filters at stride 2", "(13-3)/2+1 = 6", "", 0),
    "FLATTEN": ("[9216] FLATTEN", "6*6*256 = 9,216", "", 0),
    "FC6": ("[4096] FC6: 4096 neurons", "", "9216*4096+4096 = 37,752,832", 37_752_832),
    "FC7": ("[4096] FC7: 4096 neurons", "", "4096*4096+4096 = 16,781,312", 16_781_312),
    "FC8": ("[1000] FC8: 1000 neurons (class scores)", "", "4096*1000+1000 = 4,097,000", 4_097_000),
}


@pytest.mark.parametrize("label", list(NOTES))
def test_alexnet_rows_match_the_notes(label):
    _, table = alexnet_summary(1000, 1)
    row = table[label]
    text, size, formula, params = NOTES[label]
    assert (row.text, row.size_formula, row.params_formula, row.params) == (text, size, formula, params)
    printed = [line for line in str(table).splitlines() if text in line]
    assert len(printed) == 1
    for part in (size, formula):
        assert part in printed[0]


def test_alexnet_row_order_names_and_activations():
    _, table = alexnet_summary(1000, 1)
    assert [row.name for row in table.rows][:4] == ["", "features.conv1", "features.relu1", "features.pool1"]
    assert table.rows[-1].name == "classifier.fc8"
    conv1 = table["features.conv1"]
    assert conv1.output_shape == (96, 55, 55) and conv1.input_shape == (3, 227, 227)
    assert conv1.activations == 55 * 55 * 96 == 290_400 and conv1.activation_bytes == 290_400 * 4
    assert table["INPUT"].activations == 227 * 227 * 3
    assert table.total_activations == sum(int(np.prod(r.output_shape)) for r in table.rows)
    assert table.total_activation_bytes == 4 * table.total_activations


def test_alexnet_multiply_adds():
    _, table = alexnet_summary(1000, 1)
    conv = {"CONV1": 55 * 55 * 96 * 3 * 11 * 11, "CONV2": 27 * 27 * 256 * 96 * 5 * 5,
            "CONV3": 13 * 13 * 384 * 256 * 3 * 3, "CONV4": 13 * 13 * 384 * 384 * 3 * 3,
            "CONV5": 13 * 13 * 256 * 384 * 3 * 3}
    fc = {"FC6": 9216 * 4096, "FC7": 4096 * 4096, "FC8": 4096 * 1000}
    for label, value in {**conv, **fc}.items():
        assert table[label].mult_adds == value, label
    assert table["CONV1"].mult_adds == 105_415_200
    assert table["CONV1"].mult_adds_formula == "55*55*96*3*11*11 = 105,415,200"
    assert table.total_mult_adds == sum(conv.values()) + sum(fc.values()) == 1_135_256_096
    assert all(row.mult_adds == 0 for row in table.rows if row.kind not in ("Conv2d", "Linear"))
    assert "total multiply-adds: 1,135,256,096" in str(table)


def test_alexnet_two_gpu_split_halves_the_grouped_layers():
    _, one = alexnet_summary(1000, 1)
    _, two = alexnet_summary(1000, 2)
    assert two["CONV2"].params_formula == "(96/2)*5*5*256+256 = 307,456"
    assert two["CONV2"].text.endswith("pad 2, 2 groups")
    assert two["CONV4"].params == 384 // 2 * 3 * 3 * 384 + 384
    assert two["CONV5"].params == 384 // 2 * 3 * 3 * 256 + 256
    for label in ("CONV2", "CONV4", "CONV5"):
        assert two[label].mult_adds * 2 == one[label].mult_adds
        assert two[label].output_shape == one[label].output_shape
    for label in ("CONV1", "CONV3", "FC6"):
        assert two[label].params == one[label].params


def test_two_classes_changes_only_fc8():
    _, table = alexnet_summary(2, 1)
    assert table["FC8"].text == "[2] FC8: 2 neurons (class scores)"
    assert table["FC8"].params_formula == "4096*2+2 = 8,194"


def test_summary_leaves_the_model_as_it_was():
    model, _ = alexnet_summary(2, 1)
    model.train()
    model.classifier.dropout6.eval()
    summary(model, (3, 67, 67))
    assert model.training and model.features.conv1.training and not model.classifier.dropout6.training
    assert all(not m._forward_hooks for m in model.modules())


def test_small_input_and_floor_arithmetic():
    model, _ = alexnet_summary(2, 1)
    table = summary(model, (3, 224, 224))
    assert table["CONV1"].size_formula == "floor((224-11)/4)+1 = 54"
    assert table["CONV1"].volume == "[54x54x96]"
    assert table["AVGPOOL"].size_formula == "5x5 -> 6x6 bins"
    assert table.total_params == 58_289_538


# ----------------------------------------------------------------------------- any model
def test_sequential_mlp_labels_by_kind():
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    table = summary(model, (2,))
    assert [r.label for r in table.rows] == ["INPUT", "FC1", "RELU1", "FC2"]
    assert [r.name for r in table.rows] == ["", "0", "1", "2"]
    assert table.rows[0].text == "[2] INPUT"
    assert table["FC1"].params_formula == "2*16+16 = 48"
    assert table["FC2"].text == "[2] FC2: 2 neurons (class scores)"
    assert table.total_params == 48 + 34 == model.num_parameters()
    assert table.total_mult_adds == 2 * 16 + 16 * 2
    assert len(table.layers) == 3 and len(table) == 4


def test_windows_non_square_dilation_and_pools():
    model = nn.Sequential(
        nn.Conv2d(1, 2, (3, 5), stride=(2, 1), padding=(0, 2), bias=False), nn.Conv2d(2, 4, 3, dilation=2),
        nn.AvgPool2d(2), nn.MaxPool2d(2, stride=1, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    table = summary(model, (1, 16, 9))
    first, second = table["CONV1"], table["CONV2"]
    assert first.text == "[7x9x2] CONV1: 2 3x5 filters at stride 2x1, pad 0x2"
    assert first.size_formula == "H: floor((16-3)/2)+1 = 7; W: (9+2*2-5)/1+1 = 9"
    assert first.params_formula == "1*3*5*2 = 30"
    assert second.text == "[3x5x4] CONV2: 4 3x3 filters at stride 1, pad 0, dilation 2"
    assert second.size_formula == "H: (7-(2*(3-1)+1))/1+1 = 3; W: (9-(2*(3-1)+1))/1+1 = 5"
    assert second.mult_adds == 3 * 5 * 4 * 2 * 3 * 3
    assert table["AVG POOL1"].text == "[1x2x4] AVG POOL1: 2x2 filters at stride 2"
    assert table["AVG POOL1"].size_formula == "H: floor((3-2)/2)+1 = 1; W: floor((5-2)/2)+1 = 2"
    assert table["MAX POOL1"].text == "[2x3x4] MAX POOL1: 2x2 filters at stride 1, pad 1"
    assert table["MAX POOL1"].size_formula == "H: (1+2*1-2)/1+1 = 2; W: (2+2*1-2)/1+1 = 3"
    assert table["ADAPTIVE AVG POOL1"].size_formula == "2x3 -> 1x1 bins"
    assert table["FLATTEN1"].size_formula == "1*1*4 = 4"
    assert table.total_params == 30 + 76 and table.total_mult_adds == 7 * 9 * 2 * 15 + 3 * 5 * 4 * 18


def test_custom_module_shared_layer_and_unused_parameter():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(np.ones(3, dtype=np.float32))
            self.body = nn.Linear(3, 3)
            self.unused = nn.Linear(5, 5)

        def forward(self, x):
            return self.body(self.body(x)) * self.scale

    net = Net()
    table = summary(net, (3,))
    # the root owns a parameter, so it gets a row too (after its children: hooks run after forward)
    assert [(r.name, r.label) for r in table.rows] == [("", "INPUT"), ("body", "BODY"), ("body", "BODY"),
                                                      ("", "NET1")]
    assert [r.params for r in table.rows] == [0, 12, 0, 3]      # a shared layer's parameters count once
    assert table.rows[2].params_formula == "shared: counted above"
    assert table.rows[2].mult_adds == 9                          # but it runs (and costs) twice
    assert table.rows[3].params_formula == "3 = 3"
    assert table.total_params == net.num_parameters() == 12 + 3 + 30
    assert table.unused_params == 30
    assert "of which 30 not used by the forward pass" in str(table)


def test_dtype_follows_the_model_and_errors_explain_the_batch_axis():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()).double()
    table = summary(model, (3, 5, 5))
    assert table.dtype == np.float64 and table["CONV1"].activation_bytes == 4 * 3 * 3 * 8
    with pytest.raises(ValueError, match="without the batch axis"):
        summary(model, (1, 3, 5, 5))
    with pytest.raises(TypeError):
        summary("not a model", (3,))


def test_rows_as_dicts_and_lookup_errors():
    table = summary(nn.Sequential(nn.Linear(4, 2)), (4,))
    assert table.as_dicts()[1]["params"] == 10
    assert table[1] is table.rows[1] and table["0"] is table["FC1"]
    with pytest.raises(KeyError, match="no row"):
        table["CONV9"]
    assert repr(table) == str(table)


def test_module_doctest():
    failures, tried = doctest.testmod(summary_module)
    assert tried > 0 and failures == 0


def test_sums_and_concatenations_between_layers_are_activations_too():
    """A residual block's sum and an inception module's concatenation are computed in the model's own
    forward, not by a layer: the summary must still list their outputs (ADD / CONCAT rows) and count
    them as activations, while a reshape (a view of its input) adds nothing."""
    from tinynet import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.left, self.right = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 3, 1)

        def forward(self, x):
            x = self.conv(x) + x                                  # residual sum
            x = tinynet.concat([self.left(x), self.right(x)], axis=1)   # 2 + 3 channels
            return x.reshape(x.shape[0], -1)                      # a view: no activation

    table = tinynet.summary(Block(), (4, 5, 5))
    labels = [row.label for row in table.rows]
    assert labels == ["INPUT", "CONV", "ADD1", "LEFT", "RIGHT", "CONCAT1"], labels
    add, concat = table.rows[2], table.rows[5]
    assert add.output_shape == (4, 5, 5) and add.activations == 100
    assert concat.output_shape == (5, 5, 5) and concat.activations == 125
    assert "[5x5x4] + [5x5x4]" in add.description
    assert table.total_activations == 100 + 100 + 100 + 50 + 75 + 125
