"""SGD and Adam against PyTorch's update rules on the same numbers; LR schedules."""
import numpy as np
import pytest

import tinynet
from tinynet import nn, optim


def _run_tinynet(optimizer_class, kwargs, weights, gradients):
    parameter = nn.Parameter(weights.copy())
    optimizer = optimizer_class([parameter], **kwargs)
    for g in gradients:
        parameter.grad = tinynet.tensor(g)
        optimizer.step()
    return parameter.numpy()


def _run_torch(torch, optimizer_class, kwargs, weights, gradients):
    parameter = torch.nn.Parameter(torch.tensor(weights.copy()))
    optimizer = optimizer_class([parameter], **kwargs)
    for g in gradients:
        parameter.grad = torch.tensor(g)
        optimizer.step()
    return parameter.detach().numpy()


SGD_SETTINGS = [dict(lr=0.1), dict(lr=0.01, momentum=0.9), dict(lr=0.01, momentum=0.9, weight_decay=5e-4),
                dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
                dict(lr=0.05, momentum=0.5, dampening=0.3)]
ADAM_SETTINGS = [dict(lr=1e-3), dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2), dict(lr=0.1, eps=1e-6)]


@pytest.mark.parametrize("kwargs", SGD_SETTINGS + ADAM_SETTINGS)
def test_optimizer_steps_match_torch(kwargs):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    is_adam = kwargs in ADAM_SETTINGS
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((4, 3))
    gradients = [rng.standard_normal((4, 3)) for _ in range(6)]
    ours = _run_tinynet(optim.Adam if is_adam else optim.SGD, kwargs, weights, gradients)
    theirs = _run_torch(torch, torch.optim.Adam if is_adam else torch.optim.SGD, kwargs, weights, gradients)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


def test_sgd_by_hand():
    # one step with momentum 0.9, weight decay 0.1: g' = 1 + 0.1*2 = 1.2, v = 1.2, w = 2 - 0.5*1.2
    parameter = nn.Parameter(np.array([2.0]))
    optimizer = optim.SGD([parameter], lr=0.5, momentum=0.9, weight_decay=0.1)
    parameter.grad = tinynet.tensor(np.array([1.0]))
    optimizer.step()
    assert parameter.item() == pytest.approx(1.4)


def test_parameters_without_grad_are_skipped():
    parameter = nn.Parameter(np.array([1.0]))
    optim.SGD([parameter], lr=1.0).step()
    assert parameter.item() == 1.0


def test_step_lr():
    parameter = nn.Parameter(np.zeros(1))
    optimizer = optim.SGD([parameter], lr=1.0)
    scheduler = optim.StepLR(optimizer, step_size=2, gamma=0.1)
    rates = []
    for _ in range(5):
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    np.testing.assert_allclose(rates, [1.0, 0.1, 0.1, 0.01, 0.01])


def test_reduce_lr_on_plateau_matches_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    accuracies = [0.5, 0.6, 0.6, 0.6, 0.6, 0.61, 0.61, 0.61, 0.61, 0.7, 0.7, 0.7, 0.7]
    ours_optimizer = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.01)
    ours = optim.ReduceLROnPlateau(ours_optimizer, mode="max", factor=0.1, patience=2)
    theirs_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_optimizer, mode="max", factor=0.1, patience=2)
    for accuracy in accuracies:
        ours.step(accuracy)
        theirs.step(accuracy)
        assert ours.get_last_lr()[0] == pytest.approx(theirs_optimizer.param_groups[0]["lr"])
    assert ours.get_last_lr()[0] < 0.01  # it did reduce


def test_optimizer_state_dict_round_trip():
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(3)
    gradients = [rng.standard_normal(3) for _ in range(4)]
    a = nn.Parameter(weights.copy())
    optimizer = optim.SGD([a], lr=0.1, momentum=0.9)
    for g in gradients[:2]:
        a.grad = tinynet.tensor(g)
        optimizer.step()
    state = optimizer.state_dict()
    b = nn.Parameter(a.numpy().copy())
    resumed = optim.SGD([b], lr=0.5, momentum=0.9)
    resumed.load_state_dict(state)
    assert resumed.param_groups[0]["lr"] == 0.1
    for g in gradients[2:]:
        a.grad = tinynet.tensor(g)
        b.grad = tinynet.tensor(g)
        optimizer.step()
        resumed.step()
    np.testing.assert_array_equal(a.numpy(), b.numpy())
