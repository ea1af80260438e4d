"""LeNet-5: parameter counts, the paper's C3 connection table, the trainable subsampling and the
scaled tanh (float64 gradcheck over drawn shapes, naive references, PyTorch), and both variants end to end."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from tinynet import nn
from tinynet.nn import functional as F

from tinynet.models.lenet import (C3_CONNECTIONS, LeNet5, PartiallyConnectedConv2d, ScaledTanh,  # noqa: E402
                          TrainableSubsampling, lenet5, lenet5_classic)

seeds = st.integers(0, 2**31 - 1)


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")


def float64(array, requires_grad=True):
    return tinynet.tensor(np.asarray(array, dtype=np.float64), dtype=np.float64, requires_grad=requires_grad)


def layer_counts(model):
    return {name: sum(p.numel() for p in layer.parameters())
            for name, layer in model.features.named_children() if any(True for _ in layer.parameters())}


# --------------------------------------------------------------------------- parameter counts
def test_classic_has_the_papers_60000_trainable_parameters_up_to_f6():
    model = lenet5_classic()
    assert layer_counts(model) == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164}
    assert model.features.num_parameters() == 60_000
    # the linear output that replaces the paper's fixed RBF layer: 84*10 + 10
    assert model.output.num_parameters() == 850
    assert model.num_parameters() == 60_850
    # every parameter is trainable and every one counted is used: no masked-out weights hide in there
    assert all(p.requires_grad for p in model.parameters())
    x = tinynet.tensor(np.random.default_rng(0).standard_normal((2, 1, 32, 32)), dtype=np.float32)
    model(x).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and np.count_nonzero(parameter.grad.numpy()) == parameter.numel(), name


def test_modern_has_61706_parameters():
    model = lenet5()
    assert layer_counts(model) == {"c1": 156, "c3": 2416, "c5": 48120, "f6": 10164}
    assert model.output.num_parameters() == 850
    assert model.num_parameters() == 61_706


def test_the_registry_builds_both_variants():
    import tinynet.models as models
    assert {"lenet5", "lenet5_classic"} <= set(models.names())
    assert models.create("lenet5", num_classes=10).num_parameters() == 61_706
    assert models.create("lenet5_classic", num_classes=10).features.num_parameters() == 60_000
    assert models.create("lenet5", num_classes=3).output.out_features == 3


def test_summary_shows_the_papers_sizes():
    table = tinynet.summary(lenet5_classic(), (1, 32, 32))
    volumes = {row.label: row.volume for row in table.rows}
    assert volumes == {**volumes, "C1": "[28x28x6]", "S2": "[14x14x6]", "C3": "[10x10x16]", "S4": "[5x5x16]",
                       "C5": "[1x1x120]", "F6": "[84]", "OUTPUT": "[10]"}
    assert table["C3"].params_formula == "60*5*5+16 = 1,516"
    assert table.total_params == 60_850


# --------------------------------------------------------------------------- C3's connection table
# The paper's Table I as printed: a row per S2 map, a column per C3 map, X = connected.
TABLE_I = """
   0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
0  X . . . X X X . . X X  X  X  .  X  X
1  X X . . . X X X . . X  X  X  X  .  X
2  X X X . . . X X X . .  X  .  X  X  X
3  . X X X . . X X X X .  .  X  .  X  X
4  . . X X X . . X X X X  .  X  X  .  X
5  . . . X X X . . X X X  X  .  X  X  X
"""


def table_i_mask():
    rows = [line.split()[1:] for line in TABLE_I.strip().splitlines()[1:]]
    return np.array([[cell == "X" for cell in row] for row in rows]).T      # (C3 map, S2 map)


def test_c3_follows_table_i_of_the_paper():
    layer = PartiallyConnectedConv2d(6, C3_CONNECTIONS, 5)
    expected = table_i_mask()
    assert expected.sum() == 60 and expected.shape == (16, 6)
    np.testing.assert_array_equal(layer.connection_mask, expected)
    # the rationale in the text: six of 3 contiguous maps, six of 4 contiguous, three of 4, one of 6
    assert [len(c) for c in C3_CONNECTIONS] == [3] * 6 + [4] * 9 + [6]
    assert layer.weight.shape == (60, 5, 5) and layer.bias.shape == (16,)


def test_c3_output_maps_ignore_unconnected_inputs():
    rng = np.random.default_rng(1)
    layer = PartiallyConnectedConv2d(6, C3_CONNECTIONS, 5)
    x = rng.standard_normal((1, 6, 14, 14)).astype(np.float32)
    with tinynet.no_grad():
        base = layer(tinynet.tensor(x)).numpy()
        for i in range(6):
            changed = x.copy()
            changed[:, i] += rng.standard_normal((14, 14)).astype(np.float32)
            moved = np.abs(layer(tinynet.tensor(changed)).numpy() - base).max(axis=(0, 2, 3)) > 1e-4
            np.testing.assert_array_equal(moved, table_i_mask()[:, i], err_msg=f"S2 map {i}")
    full = layer.full_weight().numpy()
    assert np.all(full[~layer.connection_mask] == 0) and np.all(full[layer.connection_mask] != 0)


@st.composite
def connection_tables(draw):
    in_channels = draw(st.integers(1, 4))
    out_channels = draw(st.integers(1, 4))
    table = []
    for _ in range(out_channels):
        inputs = draw(st.lists(st.integers(0, in_channels - 1), min_size=1, max_size=in_channels, unique=True))
        table.append(tuple(inputs))
    return in_channels, tuple(table)


@settings(max_examples=20)
@given(connection_tables(), st.integers(1, 3), st.integers(1, 2), st.integers(0, 3), seeds)
def test_partially_connected_conv_gradcheck(table, kernel, batch, extra, seed):
    in_channels, connections = table
    rng = np.random.default_rng(seed)
    layer = PartiallyConnectedConv2d(in_channels, connections, kernel).double()
    layer.weight.data = rng.standard_normal(layer.weight.shape)
    layer.bias.data = rng.standard_normal(layer.bias.shape)
    x = float64(rng.standard_normal((batch, in_channels, kernel + extra, kernel + 1)))
    assert tinynet.gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])


@settings(max_examples=10)
@given(connection_tables(), st.integers(1, 3), seeds)
def test_partially_connected_conv_matches_torch_masked_conv(table, kernel, seed):
    torch = torch_or_skip()
    in_channels, connections = table
    rng = np.random.default_rng(seed)
    layer = PartiallyConnectedConv2d(in_channels, connections, kernel).double()
    layer.weight.data = rng.standard_normal(layer.weight.shape)
    x_values = rng.standard_normal((2, in_channels, kernel + 2, kernel + 3))
    upstream = rng.standard_normal((2, len(connections), 3, 4))
    x = float64(x_values)
    y = layer(x)
    (y * tinynet.tensor(upstream)).sum().backward()

    # the full filter bank, filled by hand in the table's order: weight[p] is the p-th (j, i) pair listed
    pairs = [(j, i) for j, inputs in enumerate(connections) for i in inputs]
    mask = torch.tensor(layer.connection_mask, dtype=torch.float64)[:, :, None, None]
    full = torch.zeros(len(connections), in_channels, kernel, kernel, dtype=torch.float64)
    for p, (j, i) in enumerate(pairs):
        full[j, i] = torch.tensor(layer.weight.numpy()[p])
    full.requires_grad_(True)
    bias = torch.tensor(layer.bias.numpy(), requires_grad=True)
    tx = torch.tensor(x_values, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, full * mask, bias)
    (ty * torch.tensor(upstream)).sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.numpy(), bias.grad.numpy(), rtol=1e-10, atol=1e-12)
    # the compact weights' gradient is torch's full gradient at the connected pairs, in table order
    np.testing.assert_allclose(layer.weight.grad.numpy(), np.stack([full.grad[j, i].numpy() for j, i in pairs]),
                               rtol=1e-10, atol=1e-12)
    assert torch.all(full.grad[~torch.tensor(layer.connection_mask)] == 0)


def test_partially_connected_conv_errors():
    with pytest.raises(ValueError, match=r"output map 1 lists input maps \(0, 6\); expected distinct maps in 0..5"):
        PartiallyConnectedConv2d(6, [(0, 1), (0, 6)])
    with pytest.raises(ValueError, match="distinct"):
        PartiallyConnectedConv2d(6, [(1, 1)])
    layer = PartiallyConnectedConv2d(6, C3_CONNECTIONS, 5)
    with pytest.raises(ValueError, match=r"PartiallyConnectedConv2d\(6, 16\): expected input of shape "
                                         r"\(N, 6, H, W\), got \(1, 5, 14, 14\)"):
        layer(tinynet.tensor(np.zeros((1, 5, 14, 14), np.float32)))
    with pytest.raises(ValueError, match=r"the 4x14 maps are smaller than the 5x5 window"):
        layer(tinynet.tensor(np.zeros((1, 6, 4, 14), np.float32)))


# --------------------------------------------------------------------------- trainable subsampling
def naive_subsampling(x, weight, bias, k):
    """Loops: y[n, c, i, j] = weight[c] * sum of the k x k window at (k*i, k*j) + bias[c]."""
    n, c, h, w = x.shape
    y = np.empty((n, c, h // k, w // k))
    for a in range(n):
        for m in range(c):
            for i in range(h // k):
                for j in range(w // k):
                    y[a, m, i, j] = weight[m] * x[a, m, k * i:k * i + k, k * j:k * j + k].sum() + bias[m]
    return y


@st.composite
def subsampling_cases(draw):
    k = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(k, 3 * k + 1)),
             draw(st.integers(k, 3 * k + 1)))
    return k, shape


@settings(max_examples=25)
@given(subsampling_cases(), seeds)
def test_trainable_subsampling_gradcheck(case, seed):
    k, shape = case
    rng = np.random.default_rng(seed)
    layer = TrainableSubsampling(shape[1], k).double()
    layer.weight.data = rng.standard_normal(shape[1])
    layer.bias.data = rng.standard_normal(shape[1])
    x = float64(rng.standard_normal(shape))
    assert tinynet.gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])


@settings(max_examples=25)
@given(subsampling_cases(), seeds)
def test_trainable_subsampling_matches_the_naive_loops(case, seed):
    k, shape = case
    rng = np.random.default_rng(seed)
    layer = TrainableSubsampling(shape[1], k).double()
    layer.weight.data, layer.bias.data = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    x = rng.standard_normal(shape)
    with tinynet.no_grad():
        y = layer(float64(x, requires_grad=False)).numpy()
    np.testing.assert_allclose(y, naive_subsampling(x, layer.weight.numpy(), layer.bias.numpy(), k), rtol=1e-12,
                               atol=1e-12)


@settings(max_examples=10)
@given(subsampling_cases(), seeds)
def test_trainable_subsampling_matches_torch(case, seed):
    torch = torch_or_skip()
    k, shape = case
    rng = np.random.default_rng(seed)
    weight, bias, x_values = rng.standard_normal(shape[1]), rng.standard_normal(shape[1]), rng.standard_normal(shape)
    layer = TrainableSubsampling(shape[1], k).double()
    layer.weight.data, layer.bias.data = weight.copy(), bias.copy()
    x = float64(x_values)
    y = layer(x)
    upstream = rng.standard_normal(y.shape)
    (y * tinynet.tensor(upstream)).sum().backward()

    tx = torch.tensor(x_values, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True)
    tb = torch.tensor(bias, requires_grad=True)
    # torch has no trainable subsampling: its window sum is avg_pool2d times the window's area
    window_sum = torch.nn.functional.avg_pool2d(tx, k, stride=k) * (k * k)
    ty = window_sum * tw[None, :, None, None] + tb[None, :, None, None]
    (ty * torch.tensor(upstream)).sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    for ours, theirs in ((x, tx), (layer.weight, tw), (layer.bias, tb)):
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_trainable_subsampling_errors_and_parameters():
    layer = TrainableSubsampling(6)
    assert [p.shape for p in layer.parameters()] == [(6,), (6,)]
    with pytest.raises(ValueError, match=r"TrainableSubsampling\(6\): expected input of shape \(N, 6, H, W\), "
                                         r"got \(6, 28, 28\)"):
        layer(tinynet.tensor(np.zeros((6, 28, 28), np.float32)))
    with pytest.raises(ValueError, match=r"got \(1, 4, 28, 28\)"):
        layer(tinynet.tensor(np.zeros((1, 4, 28, 28), np.float32)))
    with pytest.raises(ValueError, match=r"the 1x28 maps are smaller than the 2x2 window"):
        layer(tinynet.tensor(np.zeros((1, 6, 1, 28), np.float32)))
    with pytest.raises(ValueError, match="channels and kernel_size must be >= 1"):
        TrainableSubsampling(0)


# --------------------------------------------------------------------------- tanh and the scaled tanh
@settings(max_examples=25)
@given(st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple), seeds)
def test_scaled_tanh_gradcheck(shape, seed):
    x = float64(np.random.default_rng(seed).uniform(-4, 4, size=shape))
    assert tinynet.gradcheck(ScaledTanh(), [x])


def test_scaled_tanh_is_the_papers_squashing_function():
    f = ScaledTanh()
    values = f(tinynet.tensor([-1.0, 0.0, 1.0, 20.0], dtype=np.float64)).numpy()
    np.testing.assert_allclose(values, [-1.0, 0.0, 1.0, 1.7159], atol=2e-5)   # f(+-1) = +-1, f(oo) = A
    x = float64([0.0])
    f(x).sum().backward()
    assert x.grad.numpy()[0] == pytest.approx(1.7159 * 2 / 3)              # the gain at the origin


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_tanh_and_scaled_tanh_match_torch(dtype, tolerance):
    torch = torch_or_skip()
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.uniform(-3, 3, 40), [-30.0, -9.0, 0.0, 9.0, 30.0]]).astype(dtype).reshape(5, 9)
    upstream = rng.standard_normal((5, 9)).astype(dtype)
    for ours_fn, theirs_fn in ((lambda t: t.tanh(), torch.tanh),
                               (ScaledTanh(), lambda t: 1.7159 * torch.tanh(t * (2.0 / 3.0)))):
        x = tinynet.tensor(values, dtype=dtype, requires_grad=True)
        y = ours_fn(x)
        assert y.dtype == dtype
        (y * tinynet.tensor(upstream, dtype=dtype)).sum().backward()
        tx = torch.tensor(values, requires_grad=True)
        ty = theirs_fn(tx)
        (ty * torch.tensor(upstream)).sum().backward()
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=tolerance, atol=tolerance)


@settings(max_examples=25)
@given(st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple), seeds)
def test_tanh_layer_gradcheck_over_drawn_shapes(shape, seed):
    x = float64(np.random.default_rng(seed).uniform(-3, 3, size=shape))
    assert tinynet.gradcheck(nn.Tanh(), [x])
    assert tinynet.gradcheck(lambda x: F.tanh(x), [x])


# --------------------------------------------------------------------------- the networks
@pytest.mark.parametrize("factory", [lenet5, lenet5_classic])
def test_forward_backward_at_the_papers_input(factory):
    tinynet.manual_seed(0)
    model = factory(num_classes=10)
    x = tinynet.tensor(np.random.default_rng(0).standard_normal((3, 1, 32, 32)), dtype=np.float32)
    logits = model(x)
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    F.cross_entropy(logits, np.array([1, 2, 3])).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


def test_whole_classic_network_gradcheck_in_float64():
    tinynet.manual_seed(0)
    model = LeNet5(num_classes=3, variant="classic").double()
    x = float64(np.random.default_rng(0).standard_normal((1, 1, 32, 32)), requires_grad=False)
    labels = np.array([2])
    parameters = [model.features.s2.weight, model.features.c3.weight, model.features.s4.bias]
    assert tinynet.gradcheck(lambda *p: F.cross_entropy(model(x), labels), parameters)


def test_unconnected_c3_filters_stay_zero_through_training():
    tinynet.manual_seed(0)
    model = lenet5_classic()
    optimizer = tinynet.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = tinynet.tensor(np.random.default_rng(0).standard_normal((4, 1, 32, 32)), dtype=np.float32)
    for _ in range(3):
        loss = F.cross_entropy(model(x), np.array([0, 1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    c3 = model.features.c3
    assert np.all(c3.full_weight().numpy()[~c3.connection_mask] == 0)


def test_bad_inputs_and_options():
    model = lenet5()
    with pytest.raises(ValueError, match=r"LeNet5: expected input of shape \(N, 1, 32, 32\) \(MNIST's 28x28 "
                                         r"digits padded by 2 on each side\), got \(2, 1, 28, 28\)"):
        model(tinynet.tensor(np.zeros((2, 1, 28, 28), np.float32)))
    with pytest.raises(ValueError, match="variant must be 'classic' or 'modern'"):
        LeNet5(variant="lenet1")
    with pytest.raises(ValueError, match="init must be 'paper' or 'lecun'"):
        lenet5_classic(init="xavier")


def test_paper_and_lecun_initialisations():
    tinynet.manual_seed(0)
    paper = lenet5_classic(init="paper")
    lecun = lenet5_classic()
    # the paper: uniform in +-2.4/F_i; C5's fan-in is 16*5*5 = 400
    assert np.abs(paper.features.c5.weight.numpy()).max() <= 2.4 / 400
    assert np.abs(paper.features.c5.weight.numpy()).max() > 0.9 * 2.4 / 400
    assert np.abs(lecun.features.c5.weight.numpy()).max() <= np.sqrt(3 / 400)
    assert lecun.features.c5.weight.numpy().std() == pytest.approx(1 / np.sqrt(400), rel=0.05)
    assert np.all(lecun.features.c5.bias.numpy() == 0)


def test_lenet_layers_on_the_gpu_path_match_the_cpu(gpu_xp):
    """C3's scatter of the filters and the trainable subsampling on GPU arrays (the CuPy stand-in,
    or real CuPy with TINYNET_TEST_REAL_GPU=1) against the same layers on the CPU."""
    rng = np.random.default_rng(4)
    x_values = rng.standard_normal((2, 3, 6, 6))
    for make in (lambda: PartiallyConnectedConv2d(3, [(0, 2), (1,), (2, 1, 0)], 3),
                 lambda: TrainableSubsampling(3, 2)):
        results = []
        for device in ("cpu", "gpu"):
            tinynet.manual_seed(0)
            layer = make().double()
            layer.weight.data = rng.standard_normal(layer.weight.shape) if device == "cpu" else results[0][3]
            layer.to(device)
            x = tinynet.tensor(x_values, dtype=np.float64, requires_grad=True, device=device)
            y = layer(x)
            (y * y).sum().backward()
            results.append([y.numpy(), x.grad.numpy(), layer.weight.grad.numpy(), layer.weight.numpy()])
            assert y.device == device and layer.weight.grad.device == device
        for cpu, gpu in zip(*results):
            np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)
