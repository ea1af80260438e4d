"""tinynet.training_cost: the multiply-adds and the memory of a training step, by hand and measured."""
import tracemalloc

import pytest

from tinynet import nn
from tinynet.training_cost import measure_step_peak, training_cost


def tiny_model():
    # Conv2d(2, 4, 3) on 5x5 -> [3x3x4]; Linear(36, 3)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(36, 3))


def small_cnn():
    # every layer kind training_cost knows about: conv, ReLU, max pool, LRN, dropout, linear
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 10))


def test_multiply_adds_by_hand():
    cost = training_cost(tiny_model(), (2, 5, 5), batch_size=2)
    conv, fc = 3 * 3 * 4 * 2 * 3 * 3, 36 * 3          # OH*OW*O*C*kh*kw = 648, in*out = 108
    assert cost.forward_mult_adds == 2 * (conv + fc)
    assert cost.weight_gradient_mult_adds == 2 * (conv + fc)       # dW = dY X^T: one GEMM per layer
    assert cost.input_gradient_mult_adds == 2 * fc                  # the first layer skips dX
    assert cost.step_mult_adds == 2 * (3 * (conv + fc) - conv)
    assert cost.step_flops == 2 * cost.step_mult_adds
    wanted = training_cost(tiny_model(), (2, 5, 5), batch_size=2, input_requires_grad=True)
    assert wanted.step_mult_adds == 3 * wanted.forward_mult_adds


def test_memory_by_hand():
    batch = 2
    cost = training_cost(tiny_model(), (2, 5, 5), batch_size=batch, momentum=False)
    values = 2 * 5 * 5 + 3 * 3 * 4 + 36 + 3                        # input, conv, flatten, fc outputs
    assert cost.activation_bytes == batch * values * 4
    assert cost.all_activation_gradient_bytes == batch * (values - 50) * 4   # no gradient for the input
    assert cost.saved_for_backward_bytes == 0
    params = (2 * 3 * 3 * 4 + 4) + (36 * 3 + 3)
    assert cost.parameter_bytes == cost.parameter_gradient_bytes == params * 4
    assert cost.momentum_bytes == 0
    assert cost.im2col_column_bytes == (2 * 3 * 3) * (batch * 3 * 3) * 4    # (C*kh*kw) x (N*OH*OW)
    assert cost.gemm_output_bytes == 4 * (batch * 3 * 3) * 4                # (O) x (N*OH*OW)
    assert cost.total_bytes == (cost.activation_bytes + cost.all_activation_gradient_bytes
                                + 2 * params * 4 + cost.workspace_bytes)
    with_momentum = training_cost(tiny_model(), (2, 5, 5), batch_size=batch)
    assert with_momentum.momentum_bytes == params * 4


def test_saved_for_backward_counts_lrn_pool_and_dropout():
    cost = training_cost(small_cnn(), (3, 32, 32), batch_size=1)
    # LRN's scale (15x15x32 floats), the two argmaxes (15x15x32 and 7x7x64 int32), dropout's mask
    expected = 15 * 15 * 32 * 4 + 15 * 15 * 32 * 4 + 7 * 7 * 64 * 4 + 3136 * 4
    assert cost.saved_for_backward_bytes == expected


@pytest.mark.parametrize("batch", [16, 64])
def test_predicted_peak_matches_the_measured_peak(batch):
    model = small_cnn()
    cost = training_cost(model, (3, 32, 32), batch)
    measured = measure_step_peak(model, (3, 32, 32), batch)
    assert measured == pytest.approx(cost.peak_bytes, rel=0.02), (measured / 2**20, cost.peak_bytes / 2**20)
    assert measured < cost.total_bytes       # the textbook budget keeps every gradient: an upper bound


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        training_cost(tiny_model(), (2, 5, 5), batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        training_cost(tiny_model(), (2, 5, 5), batch_size=2.5)
    with pytest.raises(ValueError, match="steps must be at least 2"):
        measure_step_peak(tiny_model(), (2, 5, 5), 2, steps=1)
    tracemalloc.start()
    try:
        with pytest.raises(RuntimeError, match="already tracing"):
            measure_step_peak(tiny_model(), (2, 5, 5), 2)
    finally:
        tracemalloc.stop()
