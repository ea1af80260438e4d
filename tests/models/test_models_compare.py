"""The comparison table and the notes' per-layer format, computed from the models."""
import pytest

from scripts import load_script

compare_models = load_script("compare_models")
import tinynet.models as models
import tinynet
from tinynet.models.compare import comparison_table, describe, notes_table, short_count, weight_layer_depth


@pytest.mark.parametrize("count, text", [(150_528, "150K"), (3_211_264, "3.2M"), (802_816, "800K"),
                                         (1_605_632, "1.6M"), (25_088, "25K"), (4096, "4096"),
                                         (15_237_608, "15M"), (24_000_000, "24M")])
def test_short_count_rounds_like_the_notes(count, text):
    assert short_count(count) == text


@pytest.mark.parametrize("name, size, depth", [("resnet18", 32, 18), ("resnet50", 32, 50),
                                                ("googlenet", 64, 22), ("resnet20", 32, 20)])
def test_depth_is_the_longest_chain_of_weight_layers(name, size, depth):
    tinynet.manual_seed(0)
    options = {"aux_logits": False} if name == "googlenet" else {}
    model = models.create(name, num_classes=10, **options)
    # ResNet-18 runs 20 convolutions (3 shortcut projections), GoogLeNet 57 (parallel branches):
    # the depth counts only the longest path, as the papers do
    assert weight_layer_depth(model, size) == depth


def test_rows_are_computed_from_the_model_and_printed():
    rows = [describe("resnet18"), describe("googlenet")]
    resnet, googlenet = rows
    assert (resnet["weight layers"], resnet["conv layers"], resnet["kernel sizes"], resnet["FC layers"]) == \
        (18, 20, "7x7, 3x3, 1x1", "1: 1000")
    assert (resnet["BatchNorm"], resnet["dropout"], resnet["LRN"], resnet["inception"]) == (True, False, False, False)
    assert resnet["parameters"] == 11_689_512
    assert resnet["multiply-adds"] == 1_814_073_344      # the paper's "1.8 x 10^9 FLOPs"
    assert (googlenet["weight layers"], googlenet["conv layers"]) == (22, 57)
    assert (googlenet["inception"], googlenet["LRN"], googlenet["BatchNorm"]) == (True, True, False)
    assert googlenet["parameters"] == 6_998_552 and googlenet["top-5 error"] == "10.07%"
    text = comparison_table(rows)
    assert text.splitlines()[2].split()[:6] == ["ResNet-18", "2015", "224x224", "18", "20", "7x7,"]
    assert "11.7M" in text and "1.81G" in text and "He et al. Table 3" not in text.splitlines()[2]


def test_command_line_prints_the_table(capsys):
    assert compare_models.main(["--models", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["network", "year", "input"]
    assert "ResNet-18" in out and "not measured here" in out
    with pytest.raises(SystemExit):
        compare_models.main(["--models", "resnet19"])


def test_notes_table_format_on_a_small_network():
    from tinynet import nn
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(8 * 16 * 16, 10))
    lines, totals = notes_table(net, (3, 32, 32))
    assert lines[:4] == ["INPUT: [32x32x3]  memory: 32*32*3=3072  params: 0",
                         "CONV3-8: [32x32x8]  memory: 32*32*8=8192  params: (3*3*3)*8 = 216",
                         "POOL2: [16x16x8]  memory: 16*16*8=2048  params: 0",
                         "FC: [1x1x10]  memory: 10  params: 16*16*8*10 = 20,480"]
    assert totals["activations"] == 3072 + 8192 + 2048 + 10
    assert totals["weights"] == 216 + 20_480 and totals["parameters"] == 216 + 8 + 20_480 + 10
