"""Stochastic gradient descent with momentum, weight decay and Nesterov, PyTorch's update rule.

For each parameter p with gradient g, learning rate lr, momentum mu, weight decay wd:

    g <- g + wd * p                      (L2 regularisation, as in the AlexNet paper)
    v <- g                   on the first step,
    v <- mu * v + (1 - dampening) * g    afterwards
    g <- g + mu * v   (Nesterov)   or   g <- v
    p <- p - lr * g

The AlexNet paper writes v <- 0.9 v - 0.0005 lr w - lr g; w <- w + v.  With a
constant lr the two are the same up to the factor lr folded into v; PyTorch's
form (used here) keeps v independent of lr, which matters when the schedule
divides lr by 10.
"""
from ..backend import get_array_module
from ..function import no_grad
from ..kernels.sgd_update import sgd_update
from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @no_grad()
    def step(self):
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                velocity, first_step = None, False
                if momentum:
                    state = self.state.setdefault(id(p), {})
                    velocity = state.get("momentum_buffer")
                    if velocity is None:
                        xp = get_array_module(p.data)
                        velocity = state["momentum_buffer"] = xp.empty_like(p.data)
                        first_step = True
                # one fused pass over p, its gradient and its velocity (kernels/sgd_update.py)
                sgd_update(p.data, p.grad.data, velocity, lr, momentum, dampening, weight_decay,
                           nesterov, first_step)
