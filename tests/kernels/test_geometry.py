"""kernels/geometry.py on its own: output sizes counted window by window, PyTorch's shapes, and the checks.

The kernels' tests reach geometry.py only through the sizes they happen to use; these tests sweep
every small setting, so a wrong constant or a flipped comparison shows up in the cases it changes.
"""

import numpy as np
import pytest

from tinynet.kernels.geometry import Window, check_window, output_size, pair, window


def counted_output_size(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """Count the windows one by one.  Window k starts at k*stride - padding (0 is the input's first
    value) and spans dilation*(kernel-1)+1 values.  Floor mode keeps the windows that fit inside the
    padded input.  Ceil mode adds one window for a remainder the last fitting window leaves at the end,
    and then, as PyTorch does, drops the last window if it starts in the right padding."""
    span = dilation * (kernel - 1) + 1
    starts = []
    while len(starts) * stride - padding + span <= size + padding:
        starts.append(len(starts) * stride - padding)
    if ceil_mode:
        if starts[-1] + span < size + padding:
            starts.append(len(starts) * stride - padding)
        if starts[-1] >= size:
            starts.pop()
    return len(starts)


SETTINGS = [(size, kernel, stride, padding, dilation)
            for size in range(1, 11) for kernel in range(1, 5) for stride in range(1, 5)
            for padding in range(0, 3) for dilation in range(1, 4)
            if dilation * (kernel - 1) + 1 <= size + 2 * padding]


def test_output_size_counts_the_windows_in_floor_and_ceil_mode():
    for size, kernel, stride, padding, dilation in SETTINGS:
        for ceil_mode in (False, True):
            expected = counted_output_size(size, kernel, stride, padding, dilation, ceil_mode)
            assert output_size(size, kernel, stride, padding, dilation, ceil_mode) == expected, \
                (size, kernel, stride, padding, dilation, ceil_mode)
    # the defaults: dilation 1, floor mode
    assert output_size(10, 3, 3, 0) == 3 and output_size(10, 3, 3, 0, ceil_mode=True) == 4
    assert output_size(10, 3, 1, 0) == 8 and output_size(10, 3, 1, 0, dilation=2) == 6


def test_ceil_mode_drops_a_last_window_that_would_start_in_the_right_padding():
    # size 5, kernel 2, stride 2, padding 1: windows at -1, 1, 3 fit; ceil would add one at 5,
    # which starts at the input's end (in the right padding), so PyTorch drops it
    assert output_size(5, 2, 2, 1, ceil_mode=True) == 3
    # size 6, kernel 3, stride 2, padding 1: windows at -1, 1, 3 fit; the partial one at 5 starts inside
    assert output_size(6, 3, 2, 1, ceil_mode=True) == 4 and output_size(6, 3, 2, 1) == 3


def test_output_sizes_are_pytorchs():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    F = torch.nn.functional
    for size, kernel, stride, padding, dilation in SETTINGS[::7]:
        x = torch.zeros(1, 1, size, size + 1)
        w = torch.zeros(1, 1, kernel, kernel)
        expected = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation).shape[2:]
        found = window("conv2d", x.shape, kernel, stride, padding, dilation).output
        assert found == tuple(expected), (size, kernel, stride, padding, dilation)
        if 2 * padding <= kernel:
            for ceil_mode in (False, True):
                expected = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode).shape[2:]
                found = window("max_pool2d", x.shape, kernel, stride, padding, dilation, ceil_mode,
                               pooling=True).output
                assert found == tuple(expected), (size, kernel, stride, padding, dilation, ceil_mode)


def test_window_takes_pairs_and_pooling_strides_by_the_kernel():
    found = window("conv2d", (2, 3, 11, 17), (3, 5), (2, 1), (1, 2), (1, 3))
    assert found == Window((3, 5), (2, 1), (1, 2), (1, 3), (6, 9), False)
    assert found.output == (output_size(11, 3, 2, 1), output_size(17, 5, 1, 2, 3))
    pooled = window("max_pool2d", (1, 1, 7, 9), 3, None, 1, ceil_mode=True, pooling=True)
    assert pooled == Window((3, 3), (3, 3), (1, 1), (1, 1), (3, 4), True)
    assert window("avg_pool2d", (1, 1, 8, 8), 2, [], pooling=True).stride == (2, 2)
    assert window("avg_pool2d", (1, 1, 8, 8), 2, (), pooling=True).output == (4, 4)
    assert pair(3) == (3, 3) and pair([4, 5]) == (4, 5) and pair((np.int64(2), 1)) == (2, 1)
    assert type(pair(np.int64(2))[0]) is int


@pytest.mark.parametrize("arguments, message", [
    (((1, 3, 5), 3), r"op: expected a 4-D input of shape \(N, C, H, W\), got shape \(1, 3, 5\)"),
    (((1, 1, 5, 5), (3, 3, 3)), r"kernel_size must be an int or a pair of ints, got \(3, 3, 3\)"),
    (((1, 1, 5, 5), 3, 1, 0, (1, 2, 3)), r"dilation must be an int or a pair of ints, got \(1, 2, 3\)"),
    (((1, 1, 5, 5), 0), r"op: kernel_size, stride and dilation must be >= 1 and padding >= 0, got "   # stride =
                        r"kernel_size=\(0, 0\), stride=\(0, 0\), padding=\(0, 0\), dilation=\(1, 1\)"),   # kernel
    (((1, 1, 5, 5), (3, 0)), r"op: .* got kernel_size=\(3, 0\), stride=\(3, 0\), padding=\(0, 0\), dilation=\(1, 1\)"),
    (((1, 1, 5, 5), 3, (1, 0)), r"op: .* got kernel_size=\(3, 3\), stride=\(1, 0\), padding=\(0, 0\), "
                                r"dilation=\(1, 1\)"),
    (((1, 1, 5, 5), 3, 1, (0, -1)), r"op: .* padding=\(0, -1\), dilation=\(1, 1\)"),
    (((1, 1, 5, 5), 3, 1, 0, (0, 1)), r"op: .* padding=\(0, 0\), dilation=\(0, 1\)"),
    (((1, 1, 5, 5), 6), r"op: kernel \(6, 6\) \(spanning \(6, 6\)\) is larger than the padded input \(5, 5\) "
                        r"\(input \(5, 5\) with padding \(0, 0\)\)"),
    (((1, 1, 5, 4), (2, 3), 1, 0, (1, 2)), r"op: .*spanning \(2, 5\)\) is larger than the padded input \(5, 4\) .*"),
    (((1, 1, 4, 5), (3, 2), 1, 0, (2, 1)), r"op: .*spanning \(5, 2\)\) is larger than the padded input \(4, 5\) .*"),
])
def test_bad_windows_are_refused_with_the_operation_named(arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        window("op", *arguments)


def test_the_largest_window_that_fits_is_accepted():
    assert window("op", (1, 1, 5, 4), 5, 1, (0, 1)).output == (1, 2)          # exactly the padded height
    assert window("op", (1, 1, 5, 4), (2, 3), 1, 0, (4, 1)).output == (1, 2)  # dilated span 5 = height
    assert window("op", (1, 1, 4, 5), (2, 3), 1, 0, (1, 2)).output == (3, 1)  # dilated span 5 = width
    check_window("op", 3, 3, (5, 5), (1, 1))
    with pytest.raises(ValueError, match=r"padded input \(5, 3\) \(input \(3, 3\) with padding \(1, 0\)\)"):
        check_window("op", 3, 3, (5, 5), (1, 0))


@pytest.mark.parametrize("kernel, stride, padding, message", [
    (0, 1, 0, r"kernel_size and stride must be positive, got kernel_size \(0, 0\), stride \(1, 1\)"),
    (2, (1, 0), 0, r"kernel_size and stride must be positive, got kernel_size \(2, 2\), stride \(1, 0\)"),
    (3, 1, (0, -1), r"padding must be non-negative, got \(0, -1\)"),
    (3, 1, (2, 1), r"padding must be at most half the kernel size, got padding \(2, 1\) for kernel_size \(3, 3\)"),
    ((3, 2), 1, (1, 2), r"padding must be at most half the kernel size, got padding \(1, 2\) for kernel_size "
                        r"\(3, 2\)"),
])
def test_pooling_windows_follow_pytorchs_extra_rules(kernel, stride, padding, message):
    with pytest.raises(ValueError, match=f"^max_pool2d: {message}$"):
        window("max_pool2d", (1, 1, 8, 8), kernel, stride, padding, pooling=True)
    if "half" in message:   # a convolution may pad more than half its kernel
        window("conv2d", (1, 1, 8, 8), kernel, stride, padding)


def test_the_smallest_valid_settings_are_accepted():
    # padding of exactly half the kernel, along each axis (kernel 3 and 2, then 4 and 3)
    assert window("max_pool2d", (1, 1, 8, 8), (3, 2), 1, (1, 1), pooling=True).output == (8, 9)
    assert window("max_pool2d", (1, 1, 8, 8), (4, 3), 1, (2, 1), pooling=True).output == (9, 8)
    assert window("max_pool2d", (1, 1, 4, 5), 1, 1, pooling=True).output == (4, 5)      # a 1x1 pooling
    assert window("conv2d", (1, 1, 4, 5), 1, 1, 0, 1).output == (4, 5)                  # a 1x1 convolution
    assert Window((1, 1), (1, 1), (0, 0), (1, 1), (4, 5)).ceil_mode is False
