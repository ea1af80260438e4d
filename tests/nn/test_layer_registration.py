"""A layer is added in one place: summary, nn and the kernel contract need no edits elsewhere."""
import numpy as np

import tinynet
from tinynet import nn
from tinynet.nn.description import LayerDescription
from tinynet.ops.kernel_function import apply_kernel


class WideConv(nn.Conv2d):
    """A subclass: it inherits how Conv2d describes itself."""


def test_a_subclass_of_a_layer_gets_its_parents_row():
    table = tinynet.summary(nn.Sequential(WideConv(3, 8, 3, stride=2, padding=1)), (3, 9, 9))
    row = table.rows[1]
    assert row.label == "CONV1" and row.kind == "WideConv"
    assert row.description == "8 3x3 filters at stride 2, pad 1"
    assert row.size_formula == "(9+2*1-3)/2+1 = 5"
    assert row.params_formula == "3*3*3*8+8 = 224"
    assert row.mult_adds == 5 * 5 * 8 * 3 * 3 * 3


def test_batch_norm_appears_in_the_summary():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    rows = tinynet.summary(model, (3, 6, 6)).rows
    assert [r.label for r in rows] == ["INPUT", "CONV1", "BATCH NORM1", "RELU1"]
    assert rows[2].params == 8 and rows[2].params_formula == "4+4 = 8"
    assert rows[2].description == "normalise each of 4 channels over N*H*W, eps=1e-5"


class Scale(nn.Module):
    """A brand-new layer, kernel included, defined outside the library: y = s * x."""

    summary_label = "SCALE"

    class kernel:                          # the kernel contract, as a kernels/ file would state it
        __name__ = "scale"

        @staticmethod
        def forward(x, s):
            return x * s, (x, s)

        @staticmethod
        def backward(grad, saved, needs):
            x, s = saved
            return grad * s, (grad * x).sum(keepdims=True).reshape(s.shape)

    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(np.full(1, 2.0, dtype=np.float64))

    def forward(self, x):
        return apply_kernel(self.kernel, x, self.s)

    def describe(self, input_shape, output_shape, is_model_output=False):
        return LayerDescription(text="y = s*x", mult_adds=int(np.prod(output_shape[1:])))


def test_a_new_layer_needs_no_edit_to_summary_or_the_adapters():
    row = tinynet.summary(nn.Sequential(Scale()), (5,), dtype=np.float64).rows[1]
    assert (row.label, row.description, row.mult_adds, row.params) == ("SCALE1", "y = s*x", 5, 1)
    layer = Scale()
    x = tinynet.tensor(np.arange(3.0), requires_grad=True)
    assert tinynet.gradcheck(lambda x, s: apply_kernel(Scale.kernel, x, s), [x, layer.s])


def test_lenets_own_layers_describe_themselves():
    """C3 (partially connected) and S2 (trainable subsampling) live in examples/, not in tinynet."""
    import tinynet.models as models
    rows = {row.label: row for row in tinynet.summary(models.create("lenet5_classic", num_classes=10), (1, 32, 32))}
    assert rows["C3"].params_formula == "60*5*5+16 = 1,516"
    assert rows["C3"].mult_adds == 10 * 10 * 60 * 5 * 5
    assert rows["S2"].size_formula == "(28-2)/2+1 = 14" and rows["S2"].params == 12
