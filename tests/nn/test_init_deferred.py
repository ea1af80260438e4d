"""Deferred default initialisation and the parallel draws of tinynet/nn/init.py.

Building AlexNet drew every layer's weights twice (the layer's PyTorch default, then the model's
own scheme, issue 13); now the default is drawn only if nothing overwrote it before it was read.
"""
import copy
import math

import numpy as np
import pytest

import tinynet
from tinynet import backend, nn
from tinynet.nn import init


class _DrawCounter:
    """Counts the values drawn from tinynet's CPU generator (uniform and normal draws)."""

    def __init__(self, monkeypatch):
        self.values = 0
        generator = backend.generator("cpu")
        for kind in ("uniform", "normal"):
            original = getattr(generator, kind)

            def counted(shape, dtype=np.float32, original=original):
                self.values += int(np.prod(shape))
                return original(shape, dtype=dtype)
            monkeypatch.setattr(generator, kind, counted)


def _small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


def _eager_defaults(shapes):
    """What drawing each default at construction gave: weight then bias, layer by layer."""
    values = []
    for weight_shape in shapes:
        weight = nn.Parameter(np.zeros(weight_shape, np.float32))
        bias = nn.Parameter(np.zeros(weight_shape[0], np.float32))
        init.default_layer_init_(weight, bias)
        values += [weight.numpy(), bias.numpy()]
    return values


def test_a_model_that_initialises_its_layers_draws_each_parameter_once(monkeypatch):
    counter = _DrawCounter(monkeypatch)
    net = _small_net()
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.constant_(module.bias, 0.1)
    weights = sum(p.numel() for p in net.parameters() if p.ndim > 1)
    assert counter.values == weights                       # twice as many before the deferral
    net(tinynet.tensor(np.ones((1, 3, 6, 6), np.float32)))  # reading them later draws nothing more
    assert counter.values == weights
    assert np.all(net[0].bias.numpy() == np.float32(0.1))


@pytest.mark.parametrize("read_last_layer_first", [False, True])
def test_default_only_layers_get_the_numbers_drawing_at_construction_gave(read_last_layer_first):
    tinynet.manual_seed(11)
    net = _small_net()
    layers = [net[0], net[3]]
    first = layers[-1] if read_last_layer_first else layers[0]
    first.weight.numpy()            # any first read draws every pending default, in creation order
    tinynet.manual_seed(11)
    expected = _eager_defaults([(4, 3, 3, 3), (5, 64)])
    got = [p.numpy() for layer in layers for p in (layer.weight, layer.bias)]
    for value, reference in zip(got, expected):
        np.testing.assert_array_equal(value, reference)
    for layer, fan_in in zip(layers, (27, 64)):
        bound = 1 / math.sqrt(fan_in)
        for p in (layer.weight, layer.bias):
            assert 0 < np.abs(p.numpy()).max() <= bound


def test_a_copy_made_before_the_draw_gets_its_own_default():
    layer = nn.Linear(6, 3)
    twin = copy.deepcopy(layer)
    bound = 1 / math.sqrt(6)
    for p in (twin.weight, twin.bias, layer.weight, layer.bias):
        values = p.numpy()
        assert 0 < np.abs(values).max() <= bound
    assert not np.array_equal(twin.weight.numpy(), layer.weight.numpy())


def test_loading_a_state_dict_replaces_the_default():
    layer = nn.Linear(4, 2)
    weights = {"weight": np.arange(8, dtype=np.float32).reshape(2, 4), "bias": np.array([5, 6], np.float32)}
    layer.load_state_dict(weights)
    np.testing.assert_array_equal(layer.weight.numpy(), weights["weight"])
    np.testing.assert_array_equal(layer.bias.numpy(), weights["bias"])


def test_in_place_scaling_gives_the_bits_of_the_plain_formula():
    tinynet.manual_seed(5)
    t = nn.Parameter(np.zeros((7, 9), np.float32))
    init.normal_(t, 0.3, 0.01)
    init.uniform_(t2 := nn.Parameter(np.zeros((7, 9), np.float32)), -0.2, 0.5)
    tinynet.manual_seed(5)
    normal = backend.generator("cpu").normal((7, 9), dtype=np.float32)
    uniform = backend.generator("cpu").uniform((7, 9), dtype=np.float32)
    np.testing.assert_array_equal(t.numpy(), 0.3 + 0.01 * normal)
    np.testing.assert_array_equal(t2.numpy(), -0.2 + (0.5 - -0.2) * uniform)


def test_large_draws_are_the_same_on_any_number_of_cores_and_keep_their_distribution(monkeypatch):
    monkeypatch.setattr(init, "_PARALLEL_DRAW_VALUES", 1000)
    monkeypatch.setattr(init, "_DRAW_CHUNK", 256)
    results = []
    for cores in ({0}, {0, 1, 2, 3}):
        monkeypatch.setattr(init.os, "sched_getaffinity", lambda pid, cores=cores: cores, raising=False)
        tinynet.manual_seed(2)
        normal = nn.Parameter(np.zeros((50, 100), np.float32))
        uniform = nn.Parameter(np.zeros((50, 100), np.float32))
        init.normal_(normal, 1.0, 2.0)
        init.uniform_(uniform, -3.0, 1.0)
        results.append((normal.numpy(), uniform.numpy()))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    normal, uniform = results[0]
    assert abs(normal.mean() - 1.0) < 0.15 and abs(normal.std() - 2.0) < 0.15   # 5000 draws
    assert uniform.min() >= -3.0 and uniform.max() < 1.0 and abs(uniform.mean() + 1.0) < 0.1
    # the chunks are not copies of one another
    assert len(np.unique(normal)) == normal.size


def test_loading_a_state_dict_draws_no_default_it_then_overwrites():
    tinynet.manual_seed(0)
    source = nn.Linear(300, 200)
    state = {name: array.copy() for name, array in source.state_dict().items()}
    tinynet.manual_seed(1)
    before = tinynet.backend.generator("cpu").get_state()
    target = nn.Linear(300, 200)
    target.load_state_dict(state)
    assert tinynet.backend.generator("cpu").get_state() == before      # nothing was drawn
    np.testing.assert_array_equal(target.weight.numpy(), state["weight"])
