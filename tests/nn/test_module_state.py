"""Modules that hold state properly: buffers, containers, dtype moves, per-thread grad mode."""
import threading

import numpy as np
import pytest

import tinynet
from tinynet import nn


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("total", np.zeros(3, dtype=np.float32))
        self.register_buffer("steps", np.zeros((), dtype=np.int64))

    def forward(self, x):
        self.total = self.total + x.numpy().sum(axis=0)   # reassignment, as user code writes it
        self.steps = self.steps + 1
        return x


def test_reassigning_a_buffer_keeps_it_in_the_state_dict():
    counter = Counter()
    counter(tinynet.tensor(np.ones((2, 3), np.float32)))
    state = counter.state_dict()
    assert set(state) == {"total", "steps"}
    np.testing.assert_array_equal(state["total"], [2, 2, 2])
    assert int(state["steps"]) == 1
    assert dict(counter.named_buffers())["total"] is counter.total


def test_a_buffer_cannot_silently_become_something_else():
    counter = Counter()
    with pytest.raises(TypeError, match="expected a NumPy or CuPy array"):
        counter.total = 3.0


def test_state_dict_round_trips_buffers():
    source, target = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    source(tinynet.tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)))
    target.load_state_dict(source.state_dict())
    for name, array in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], array)
    assert int(target.num_batches_tracked) == 1


def test_to_dtype_casts_floating_buffers_only():
    layer = nn.BatchNorm1d(2).double()
    assert layer.weight.dtype == np.float64
    assert layer.running_mean.dtype == np.float64 and layer.running_var.dtype == np.float64
    assert layer.num_batches_tracked.dtype == np.int64       # a counter stays an integer


def test_module_list_and_dict_register_their_modules():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
            self.heads = nn.ModuleDict({"cat": nn.Linear(2, 1), "dog": nn.Linear(2, 1)})

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return self.heads["cat"](x) + self.heads["dog"](x)

    net = Net()
    assert len(list(net.parameters())) == 3 * 2 + 2 * 2
    assert "blocks.2.weight" in net.state_dict() and "heads.dog.bias" in net.state_dict()
    assert net.blocks[-1] is net.blocks[2] and len(net.blocks[1:]) == 2
    net.blocks[0] = nn.Linear(2, 2)
    assert net.blocks[0].weight is dict(net.named_parameters())["blocks.0.weight"]
    net(tinynet.tensor(np.ones((1, 2), np.float32))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(TypeError, match="Modules only"):
        net.blocks.append("not a module")
    with pytest.raises(IndexError):
        net.blocks[3]


def test_no_grad_in_one_thread_does_not_stop_recording_in_another():
    entered, checked = threading.Event(), threading.Event()

    def loader_thread():
        with tinynet.no_grad():
            entered.set()
            checked.wait(5)

    thread = threading.Thread(target=loader_thread)
    thread.start()
    try:
        assert entered.wait(5)
        assert tinynet.is_grad_enabled()
        w = tinynet.tensor([1.0, 2.0], requires_grad=True)
        y = (w * w).sum()
        assert y.requires_grad and y.creator is not None
    finally:
        checked.set()
        thread.join()


def test_a_decorated_no_grad_function_restores_each_threads_own_mode():
    @tinynet.no_grad()
    def evaluate(barrier):
        barrier.wait(5)
        return tinynet.is_grad_enabled()

    barrier = threading.Barrier(2)
    results = []
    thread = threading.Thread(target=lambda: results.append(evaluate(barrier)))
    thread.start()
    results.append(evaluate(barrier))
    thread.join()
    assert results == [False, False] and tinynet.is_grad_enabled()
