"""The explainer's step-by-step arithmetic agrees with the kernels, and its page stands alone.

Every unit panel ends with the value tinynet's kernel computed (``value``) next to the result of
the arithmetic written out above it (``sum`` for a dot product and its bias, ``result`` for LRN
and batch norm, ``max`` for max pooling, ``mean`` for average pooling).  Walking every explained
unit of several registry networks and comparing the two catches a panel whose arithmetic is not
the layer's (a wrong window, group, LRN neighbourhood, bias or padding), without a browser.
"""
import json
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import tinynet
import tinynet.models as models
from tinynet import nn
from tinynet.trace import trace
from tinynet.trace.inputs import digit_input, load_model
from tinynet.trace.page import page_data, write_page
from tinynet.trace.units import explain_unit

#: the written-out result of each kind of panel, compared with the kernel's value
RESULTS = ("sum", "result", "max", "mean")


def _tokens(steps):
    found = {}
    for step in steps:
        for line in step["lines"]:
            for token in line:
                if isinstance(token, list):
                    found.setdefault(token[0], float(token[1]))
    return found


def every_kind():
    """A small network with every layer the panels write out, each in an awkward setting: an LRN
    strong enough (alpha = 1) that one channel more or less in its window shows, grouped, padded
    and dilated convolutions, pools with padding, batch norm with running statistics."""
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 8, 3, stride=2, padding=1)), ("relu1", nn.ReLU()),
        ("norm1", nn.LocalResponseNorm(5, alpha=1.0, beta=0.75, k=1.0, alpha_scaled_by_size=False)),
        ("conv2", nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)), ("bn2", nn.BatchNorm2d(8)),
        ("pool2", nn.MaxPool2d(3, stride=2, padding=1)), ("avg", nn.AvgPool2d(3, stride=1, padding=1)),
        ("norm2", nn.LocalResponseNorm(4, alpha=0.5, beta=0.75, k=2.0)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(8 * 4 * 4, 5))]))
    rng = np.random.default_rng(5)
    net.bn2.running_mean[...] = rng.standard_normal(8)
    net.bn2.running_var[...] = rng.uniform(0.5, 2.0, 8)
    return net.eval()


@pytest.mark.parametrize("name, options, shape", [
    ("every kind", {}, (1, 3, 16, 16)),
    ("lenet5", {}, (1, 1, 32, 32)),
    ("lenet5_classic", {}, (1, 1, 32, 32)),
    ("alexnet", {"groups": 2, "lrn_alpha_scaled_by_size": True, "norm_position": "before_pool"}, (1, 3, 67, 67)),
    ("resnet20", {}, (1, 3, 16, 16)),
])
def test_every_explained_unit_shows_the_value_the_kernel_computed(tmp_path, name, options, shape):
    tinynet.manual_seed(0)
    model = every_kind() if name == "every kind" else models.create(name, num_classes=10, **options)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t = trace(model, x)
    (tmp_path / "img").mkdir()
    _, data = page_data(t, str(tmp_path))
    # the page's units are the first channels; the last channel (another group, the other edge of
    # an LRN window) and a middle position are explained too
    extra = []
    for record in t:
        shape = record.output_shape
        unit = (shape[1] - 1, shape[2] // 2, shape[3] // 2) if len(shape) == 4 else (shape[-1] - 1,)
        extra.append((record.label, "last", explain_unit(record, unit)))
    units = [(layer["label"], key, unit) for layer in data["layers"] for key, unit in layer["units"].items()]
    checked = set()
    for label, key, unit in units + extra:
        numbers = _tokens(unit["forward"])
        assert "value" in numbers, (label, key)
        for result in RESULTS:
            if result in numbers:
                checked.add(label)
                # 6 significant digits on the page; float32 kernels against float64 arithmetic
                assert numbers[result] == pytest.approx(numbers["value"], rel=2e-5, abs=1e-5), (label, key, result)
    kinds = {r.kind for r in t if r.label in checked}
    assert {"Conv2d", "Linear"} <= kinds
    if name == "alexnet":
        assert {"LocalResponseNorm", "MaxPool2d"} <= kinds
    if name == "resnet20":
        assert "BatchNorm2d" in kinds
    if name == "every kind":
        assert kinds == {r.kind for r in t} - {"ReLU", "Flatten"}


def test_the_page_stands_alone(tmp_path):
    tinynet.manual_seed(0)
    model = models.create("lenet5", num_classes=10)
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[5:23, 13:16] = 255
    x, shown = digit_input(digit)
    result = write_page(trace(model, x), str(tmp_path / "page"), photo_rgb=shown)
    page = Path(result["path"]).read_text(encoding="utf-8")
    # nothing from a network: no address, and every image is a file beside the page
    assert "http://" not in page and "https://" not in page and "//" not in re.sub(r"<script.*?</script>", "", page,
                                                                                 flags=re.S).replace("<!DOCTYPE", "")
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all((tmp_path / "page" / s).is_file() for s in sources)
    data = json.loads(re.search(r'<script id="tinynet-data" type="application/json">(.*?)</script>', page,
                                re.S).group(1).replace("<\\/", "</"))
    assert [layer["label"] for layer in data["layers"]] == ["C1", "RELU1", "S2", "C3", "RELU3", "S4", "C5", "RELU5",
                                                             "FLATTEN", "F6", "RELU6", "OUTPUT"]
    assert result["bytes"] == sum(p.stat().st_size for p in (tmp_path / "page").rglob("*") if p.is_file())


def test_a_lenet_checkpoint_brings_its_input_scaling(tmp_path):
    tinynet.manual_seed(0)
    model = models.create("lenet5", num_classes=10)
    tinynet.save(dict(models.checkpoint_entries(model), config={"input_scale": 0.02, "input_offset": -0.5}),
                 tmp_path / "best.npz")
    loaded, info = load_model(str(tmp_path / "best.npz"))
    assert info["digit_scaling"] == (0.02, -0.5)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), model.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    digit = np.full((28, 28), 100, dtype=np.uint8)
    x, shown = digit_input(digit, info["digit_scaling"])
    assert x.shape == (1, 1, 32, 32) and shown.shape == (32, 32, 3)
    assert x[0, 0, 0, 0] == pytest.approx(-0.5) and x[0, 0, 2, 2] == pytest.approx(100 * 0.02 - 0.5)
