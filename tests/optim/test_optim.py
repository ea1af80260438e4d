"""SGD and Adam against PyTorch's update rules on the same numbers; LR schedules."""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

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


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=1.0), lambda ps: optim.SGD(ps, lr=1.0, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=1.0)])
def test_parameters_without_grad_are_skipped_and_the_next_ones_still_step(make):
    """A parameter without a gradient (a frozen layer, an unused head) is passed over; the ones after
    it in the same group are still updated."""
    frozen, trained = nn.Parameter(np.array([1.0])), nn.Parameter(np.array([1.0]))
    optimizer = make([frozen, trained])
    trained.grad = tinynet.tensor(np.array([0.5]))
    optimizer.step()
    assert frozen.item() == 1.0 and trained.item() < 1.0
    assert id(frozen) not in optimizer.state


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


# ---------------------------------------------------------------------- schedules against PyTorch
def _plateau_metrics(mode):
    """Values that improve by more and by less than a 1e-2 threshold, stall, and improve again."""
    steps = [0.0, 0.2, 0.2, 0.205, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.302, 0.4, 0.4, 0.4, 0.4,
             0.4, 0.4, 0.4, 0.4, 0.4]
    return [1.0 + s for s in steps] if mode == "max" else [1.0 - s for s in steps]


@pytest.mark.parametrize("mode, threshold_mode, threshold, cooldown, min_lr, factor, patience", [
    ("max", "rel", 1e-2, 0, 0.0, 0.1, 2),
    ("min", "rel", 1e-2, 0, 0.0, 0.5, 1),
    ("max", "abs", 1e-2, 0, 0.0, 0.1, 1),
    ("min", "abs", 1e-2, 2, 0.0, 0.1, 1),
    ("max", "rel", 1e-4, 1, 3e-4, 0.1, 0),
    ("min", "rel", 1e-2, 0, 0.0, 0.9, 0),
])
def test_reduce_lr_on_plateau_matches_torch_in_every_mode(mode, threshold_mode, threshold, cooldown, min_lr,
                                                         factor, patience):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    settings = dict(mode=mode, threshold_mode=threshold_mode, threshold=threshold, cooldown=cooldown,
                    min_lr=min_lr, factor=factor, patience=patience)
    ours_optimizer = optim.SGD([{"params": [nn.Parameter(np.zeros(1))], "lr": 0.01},
                                {"params": [nn.Parameter(np.zeros(1))], "lr": 0.1}], lr=1.0)
    ours = optim.ReduceLROnPlateau(ours_optimizer, **settings)
    theirs_optimizer = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.01},
                                        {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1}], lr=1.0)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_optimizer, **settings)
    reductions = 0
    for metric in _plateau_metrics(mode):
        before = ours.get_last_lr()
        ours.step(metric)
        theirs.step(metric)
        expected = [group["lr"] for group in theirs_optimizer.param_groups]
        assert ours.get_last_lr() == pytest.approx(expected, rel=1e-12, abs=0), metric
        assert ours.num_bad_epochs == theirs.num_bad_epochs and ours.best == pytest.approx(theirs.best)
        assert ours.cooldown_counter == theirs.cooldown_counter and ours.last_epoch == theirs.last_epoch
        reductions += ours.get_last_lr() != before
    assert reductions >= 2      # the sequence reaches the rule that reduces, more than once


def test_reduce_lr_on_plateau_stops_at_min_lr_and_ignores_changes_below_eps():
    optimizer = optim.SGD([nn.Parameter(np.zeros(1))], lr=1e-3)
    scheduler = optim.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, min_lr=4e-4, eps=1e-8)
    rates = []
    for _ in range(4):
        scheduler.step(1.0)
        rates.append(scheduler.get_last_lr()[0])
    assert rates == pytest.approx([1e-3, 5e-4, 4e-4, 4e-4])   # the first step sets best; then halve, floor
    tiny = optim.SGD([nn.Parameter(np.zeros(1))], lr=1e-8)
    scheduler = optim.ReduceLROnPlateau(tiny, factor=0.5, patience=0, eps=1e-8)
    scheduler.step(1.0)
    scheduler.step(1.0)
    assert scheduler.get_last_lr() == [1e-8]                  # a change of 5e-9 < eps is not applied
    exact = optim.SGD([nn.Parameter(np.zeros(1))], lr=2e-8)  # halving 2e-8 changes it by exactly 1e-8
    scheduler = optim.ReduceLROnPlateau(exact, factor=0.5, patience=0, eps=1e-8)
    scheduler.step(1.0)
    scheduler.step(1.0)
    assert scheduler.get_last_lr() == [2e-8]                  # PyTorch's rule: applied only if > eps


@pytest.mark.parametrize("mode, metrics", [("max", [1.0, 1.25, 1.5, 1.5, 1.75, 2.0, 2.0, 2.0]),
                                           ("min", [2.0, 1.75, 1.5, 1.5, 1.25, 1.0, 1.0, 1.0])])
def test_an_improvement_of_exactly_the_threshold_does_not_count(mode, metrics):
    """Steps of exactly 0.25 with threshold 0.25 (binary fractions: no rounding): PyTorch's strict rule."""
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    ours = optim.ReduceLROnPlateau(optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0), mode=mode,
                                   threshold_mode="abs", threshold=0.25, patience=1, factor=0.5)
    theirs_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_optimizer, mode=mode, threshold_mode="abs",
                                                        threshold=0.25, patience=1, factor=0.5)
    bad_epochs = []
    for metric in metrics:
        ours.step(metric)
        theirs.step(metric)
        bad_epochs.append(ours.num_bad_epochs)
        assert (ours.num_bad_epochs, ours.best) == (theirs.num_bad_epochs, theirs.best)
        assert ours.get_last_lr() == [theirs_optimizer.param_groups[0]["lr"]]
    assert bad_epochs[:3] == [0, 1, 0]     # 1.25 after 1.0 is not better by more than 0.25; 1.5 is
    assert ours.get_last_lr() == [0.25]


def test_the_defaults_are_pytorchs():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    parameter, theirs_parameter = nn.Parameter(np.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    adam, theirs_adam = optim.Adam([parameter]), torch.optim.Adam([theirs_parameter])
    for key in ("lr", "betas", "eps", "weight_decay"):
        assert adam.param_groups[0][key] == theirs_adam.param_groups[0][key], key
    sgd, theirs_sgd = optim.SGD([parameter], lr=0.1), torch.optim.SGD([theirs_parameter], lr=0.1)
    for key in ("momentum", "dampening", "weight_decay", "nesterov"):
        assert sgd.param_groups[0][key] == theirs_sgd.param_groups[0][key], key
    assert optim.StepLR(sgd, step_size=3).gamma == torch.optim.lr_scheduler.StepLR(theirs_sgd, 3).gamma
    ours, theirs = optim.ReduceLROnPlateau(sgd), torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_sgd)
    for key in ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lrs", "eps", "best",
                "num_bad_epochs", "cooldown_counter", "last_epoch"):
        assert getattr(ours, key) == getattr(theirs, key), key


@pytest.mark.parametrize("bad, message", [
    (dict(factor=1.0), r"^ReduceLROnPlateau: factor must be < 1, got 1.0$"),
    (dict(mode="up"), r"^ReduceLROnPlateau: mode must be 'min'/'max' and threshold_mode 'rel'/'abs'$"),
    (dict(threshold_mode="relative"), r"^ReduceLROnPlateau: mode must be 'min'/'max' and threshold_mode 'rel'/'abs'$"),
])
def test_reduce_lr_on_plateau_refuses_bad_settings(bad, message):
    with pytest.raises(ValueError, match=message):
        optim.ReduceLROnPlateau(optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1), **bad)


def test_step_lr_matches_torch_for_two_groups():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    ours_optimizer = optim.SGD([{"params": [nn.Parameter(np.zeros(1))], "lr": 0.3},
                                {"params": [nn.Parameter(np.zeros(1))]}], lr=0.02)
    ours = optim.StepLR(ours_optimizer, step_size=3, gamma=0.5)
    theirs_optimizer = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.3},
                                        {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=0.02)
    theirs = torch.optim.lr_scheduler.StepLR(theirs_optimizer, step_size=3, gamma=0.5)
    for _ in range(10):
        theirs_optimizer.step()      # torch warns when the schedule steps before the optimizer
        ours.step()
        theirs.step()
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12, abs=0)


@pytest.mark.parametrize("make, step", [
    (lambda o: optim.StepLR(o, step_size=2, gamma=0.1), lambda s, k: s.step()),
    (lambda o: optim.CosineAnnealingLR(o, epochs=8, warmup_epochs=2, min_lr=0.01), lambda s, k: s.step()),
    (lambda o: optim.ReduceLROnPlateau(o, mode="max", factor=0.5, patience=1, cooldown=1),
     lambda s, k: s.step([0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7][k])),
])
def test_a_schedule_restored_from_its_state_dict_continues_like_the_uninterrupted_one(make, step, tmp_path):
    def fresh():
        return make(optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1))

    uninterrupted = fresh()
    rates = []
    for k in range(10):
        step(uninterrupted, k)
        rates.append(uninterrupted.get_last_lr()[0])
    interrupted = fresh()
    for k in range(3):
        step(interrupted, k)
    tinynet.save({"scheduler": interrupted.state_dict(), "lr": interrupted.get_last_lr()[0]},
                 tmp_path / "last.npz")
    saved = tinynet.load(tmp_path / "last.npz")
    resumed = make(optim.SGD([nn.Parameter(np.zeros(1))], lr=saved["lr"]))
    resumed.load_state_dict(saved["scheduler"])
    if isinstance(resumed, (optim.StepLR, optim.CosineAnnealingLR)):
        assert resumed.base_lrs == [0.1]    # the initial rate, not the rate the optimizer was rebuilt with
    for k in range(3, 10):
        step(resumed, k)
        assert resumed.get_last_lr()[0] == pytest.approx(rates[k], rel=1e-12, abs=0), k


# ---------------------------------------------------------------------- optimizer state and arguments
def test_adam_resumed_from_a_saved_state_continues_exactly(tmp_path):
    rng = np.random.default_rng(1)
    weights, gradients = rng.standard_normal(5), [rng.standard_normal(5) for _ in range(6)]
    a = nn.Parameter(weights.copy())
    uninterrupted = optim.Adam([a], lr=0.05, betas=(0.8, 0.9), weight_decay=1e-2)
    for g in gradients:
        a.grad = tinynet.tensor(g)
        uninterrupted.step()
    b = nn.Parameter(weights.copy())
    first = optim.Adam([b], lr=0.05, betas=(0.8, 0.9), weight_decay=1e-2)
    for g in gradients[:3]:
        b.grad = tinynet.tensor(g)
        first.step()
    tinynet.save({"optimizer": first.state_dict()}, tmp_path / "adam.npz")
    resumed = optim.Adam([b], lr=1.0)
    resumed.load_state_dict(tinynet.load(tmp_path / "adam.npz")["optimizer"])
    assert resumed.param_groups[0]["betas"] == (0.8, 0.9) and resumed.param_groups[0]["lr"] == 0.05
    assert resumed.state[id(b)]["step"] == 3
    for g in gradients[3:]:
        b.grad = tinynet.tensor(g)
        resumed.step()
    np.testing.assert_array_equal(b.numpy(), a.numpy())


def test_a_step_counter_stored_as_a_0d_array_loads_as_a_number():
    p = nn.Parameter(np.ones(3))
    adam = optim.Adam([p], lr=0.1)
    adam.load_state_dict({"param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}],
                          "state": {"0": {"step": np.array(4), "exp_avg": np.zeros(3), "exp_avg_sq": np.ones(3)}}})
    assert adam.state[id(p)]["step"] == 4 and isinstance(adam.state[id(p)]["step"], int)


def test_optimizer_load_state_dict_refuses_another_layout():
    p, q = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(2))
    sgd = optim.SGD([p, q], lr=0.1, momentum=0.9)
    p.grad, q.grad = tinynet.tensor(np.ones(3)), tinynet.tensor(np.ones(2))
    sgd.step()
    state = sgd.state_dict()
    assert sorted(state["state"]) == ["0", "1"] and state["state"]["1"]["momentum_buffer"].shape == (2,)
    with pytest.raises(ValueError, match=r"optimizer state 0.momentum_buffer: expected shape \(2,\), got \(3,\)"):
        optim.SGD([q, p], lr=0.1, momentum=0.9).load_state_dict(state)
    with pytest.raises(ValueError, match="2 parameter groups, this optimizer has 1"):
        optim.SGD([p], lr=0.1).load_state_dict({"param_groups": [{"lr": 0.1}, {"lr": 0.2}], "state": {}})


def test_parameter_groups_take_the_defaults_they_do_not_set_and_zero_grad_can_keep_zeros():
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    sgd = optim.SGD([{"params": [p], "lr": 0.5}, {"params": [q], "momentum": 0.9}], lr=0.1, weight_decay=0.01)
    assert [g["lr"] for g in sgd.param_groups] == [0.5, 0.1]
    assert [g["momentum"] for g in sgd.param_groups] == [0.0, 0.9]
    assert [g["weight_decay"] for g in sgd.param_groups] == [0.01, 0.01]
    p.grad, q.grad = tinynet.tensor(np.ones(2)), tinynet.tensor(np.ones(2))
    sgd.step()
    np.testing.assert_allclose(p.numpy(), 1 - 0.5 * (1 + 0.01))
    np.testing.assert_allclose(q.numpy(), 1 - 0.1 * (1 + 0.01))
    sgd.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), np.zeros(2))
    sgd.zero_grad()
    assert p.grad is None and q.grad is None
    with pytest.raises(ValueError, match="^SGD got an empty parameter list$"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="^Adam got an empty parameter list$"):
        optim.Adam(iter([]))
    assert sgd.defaults == dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.01, nesterov=False)
    assert optim.Adam([p]).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD(p, lr=-0.1), "SGD: lr, momentum and weight_decay must be >= 0, got -0.1, 0.0, 0.0"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.9), "SGD: lr, momentum and weight_decay must be >= 0, got 0.1, -0.9, 0.0"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1e-4),
     "SGD: lr, momentum and weight_decay must be >= 0, got 0.1, 0.0, -0.0001"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "SGD: Nesterov momentum requires momentum > 0 and dampening = 0"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     "SGD: Nesterov momentum requires momentum > 0 and dampening = 0"),
    (lambda p: optim.Adam(p, lr=-1e-3), "Adam: invalid lr=-0.001, betas=(0.9, 0.999) or eps=1e-08"),
    (lambda p: optim.Adam(p, eps=-1e-8), "Adam: invalid lr=0.001, betas=(0.9, 0.999) or eps=-1e-08"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "Adam: invalid lr=0.001, betas=(1.0, 0.999) or eps=1e-08"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), "Adam: invalid lr=0.001, betas=(0.9, 1.0) or eps=1e-08"),
    (lambda p: optim.Adam(p, betas=(-0.1, 0.999)), "Adam: invalid lr=0.001, betas=(-0.1, 0.999) or eps=1e-08"),
])
def test_bad_hyper_parameters_are_refused(make, message):
    """Each message names the optimizer and the values it got (the whole message is compared)."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make([nn.Parameter(np.zeros(1))])


def test_zero_momentum_keeps_no_state_and_zero_betas_are_allowed():
    p = nn.Parameter(np.ones(2))
    sgd = optim.SGD([p], lr=0.1, momentum=0.0)
    p.grad = tinynet.tensor(np.ones(2))
    sgd.step()
    assert sgd.state == {} and sgd.state_dict()["state"] == {}
    optim.SGD([p], lr=0.0, momentum=0.0, weight_decay=0.0)     # zero is allowed everywhere
    optim.SGD([p], lr=0.1, momentum=0.5, nesterov=True)
    optim.Adam([p], lr=0.0, betas=(0.0, 0.0), eps=0.0)


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_what_counts_as_an_improvement_is_pytorchs_far_from_1(mode, threshold_mode):
    """A step to ``value`` after ``best``, on a grid far from 1, where a relative and an absolute threshold
    of 0.25 draw different limits (near 1 they agree)."""
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    grid = [0.5, 2.0, 2.4, 2.6, 3.0, 3.4, 3.6, 4.0]

    def improved(make, best, value):
        scheduler = make()
        scheduler.step(best)       # the first value always becomes the best
        scheduler.step(value)
        return scheduler.num_bad_epochs == 0

    settings = dict(mode=mode, threshold_mode=threshold_mode, threshold=0.25)
    ours = [[improved(lambda: optim.ReduceLROnPlateau(optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0), **settings),
                      best, value) for value in grid] for best in grid]
    theirs = [[improved(lambda: torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), **settings), best, value)
        for value in grid] for best in grid]
    assert ours == theirs
    assert sum(map(sum, ours)) not in (0, len(grid) ** 2)


# ---------------------------------------------------------------------- warm-up and cosine
def test_cosine_schedule_follows_its_formula_and_resumes():
    model = nn.Linear(2, 2)
    optimizer = optim.SGD(model.parameters(), lr=0.4)
    schedule = optim.CosineAnnealingLR(optimizer, epochs=6, warmup_epochs=2, min_lr=0.1)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(5):
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    cosine = [0.1 + 0.3 * 0.5 * (1 + np.cos(np.pi * t / 4)) for t in range(4)]
    assert rates == pytest.approx([0.4 / 3, 0.8 / 3] + cosine)
    again = optim.CosineAnnealingLR(optim.SGD(model.parameters(), lr=0.4), epochs=6, warmup_epochs=2, min_lr=0.1)
    again.load_state_dict(schedule.state_dict())
    assert again.get_last_lr() == schedule.get_last_lr()


def test_only_the_plateau_schedule_steps_on_the_validation_metric():
    """tinynet.train.Trainer passes the validation accuracy to a schedule's step() exactly when its
    steps_on_metric is True; the other schedules' step() takes no argument."""
    assert optim.ReduceLROnPlateau.steps_on_metric is True
    assert optim.StepLR.steps_on_metric is False and optim.CosineAnnealingLR.steps_on_metric is False


@settings(max_examples=25, deadline=None)
@given(epochs=st.integers(1, 40), warmup=st.integers(0, 39), min_lr=st.sampled_from([0.0, 1e-3, 0.05]),
       base=st.lists(st.floats(0.06, 1.0), min_size=1, max_size=3))
def test_cosine_with_warm_up_matches_torchs_linear_then_cosine_schedule(epochs, warmup, min_lr, base):
    """PyTorch spells the same schedule LinearLR(1/(W+1) -> 1 over W epochs), then
    CosineAnnealingLR(T_max=E-W, eta_min); every group's rate at every epoch, and the rate stays at
    min_lr past the last epoch (where torch's cosine would climb again)."""
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    assume(warmup < epochs)
    ours_opt = optim.SGD([{"params": [nn.Parameter(np.zeros(1))], "lr": lr} for lr in base], lr=base[0])
    ours = optim.CosineAnnealingLR(ours_opt, epochs=epochs, warmup_epochs=warmup, min_lr=min_lr)
    theirs_opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in base],
                                 lr=base[0])
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(theirs_opt, T_max=epochs - warmup, eta_min=min_lr)
    if warmup:
        linear = torch.optim.lr_scheduler.LinearLR(theirs_opt, 1 / (warmup + 1), 1.0, total_iters=warmup)
        theirs = torch.optim.lr_scheduler.SequentialLR(theirs_opt, [linear, cosine], milestones=[warmup])
    else:
        theirs = cosine
    for epoch in range(epochs):
        expected = [g["lr"] for g in theirs_opt.param_groups]
        assert [g["lr"] for g in ours_opt.param_groups] == pytest.approx(expected, rel=1e-12, abs=1e-15), epoch
        assert ours.get_last_lr() == [g["lr"] for g in ours_opt.param_groups]
        ours.step()
        theirs_opt.step()
        theirs.step()
    for _ in range(3):
        assert ours.get_last_lr() == pytest.approx([min_lr] * len(base), rel=1e-12, abs=1e-15)
        ours.step()


def test_cosine_defaults_to_no_warm_up_and_a_floor_of_zero():
    optimizer = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.4)
    schedule = optim.CosineAnnealingLR(optimizer, epochs=4)
    rates = []
    for _ in range(6):
        rates.append(schedule.get_last_lr()[0])
        schedule.step()
    assert rates == pytest.approx([0.4, 0.2 * (1 + np.cos(np.pi / 4)), 0.2, 0.2 * (1 - np.cos(np.pi / 4)), 0, 0],
                                  abs=1e-15)


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=3, warmup_epochs=3),
     "CosineAnnealingLR: need epochs >= 1 and 0 <= warmup_epochs < epochs, got epochs=3, warmup_epochs=3"),
    (dict(epochs=1, warmup_epochs=0), None),
    (dict(epochs=2, warmup_epochs=1, min_lr=0.0), None),
    (dict(epochs=0), "CosineAnnealingLR: need epochs >= 1 and 0 <= warmup_epochs < epochs, got epochs=0, warmup_epochs=0"),
    (dict(epochs=5, warmup_epochs=-1),
     "CosineAnnealingLR: need epochs >= 1 and 0 <= warmup_epochs < epochs, got epochs=5, warmup_epochs=-1"),
    (dict(epochs=5, min_lr=-0.1), "CosineAnnealingLR: min_lr must be >= 0, got -0.1"),
])
def test_cosine_refuses_bad_settings_and_accepts_the_edges(kwargs, message):
    optimizer = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    if message is None:                                    # the smallest valid settings
        optim.CosineAnnealingLR(optimizer, **kwargs)
        return
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        optim.CosineAnnealingLR(optimizer, **kwargs)
    assert optimizer.param_groups[0]["lr"] == 0.1          # a refused schedule leaves the rate alone
