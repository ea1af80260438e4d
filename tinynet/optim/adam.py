"""Adam (Kingma & Ba, 2015), PyTorch's update rule (L2 weight decay added to the gradient).

    g <- g + wd * p
    m <- b1 m + (1 - b1) g           first moment (mean of gradients)
    v <- b2 v + (1 - b2) g^2         second moment (uncentred variance)
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

The (1 - b^t) factors undo the bias of m and v towards their zero start.
"""
import math

from ..backend import get_array_module
from ..function import no_grad
from .optimizer import Optimizer


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Adam: invalid lr={lr}, betas={betas} or eps={eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @no_grad()
    def step(self):
        for group in self.param_groups:
            lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                xp = get_array_module(p.data)
                g = p.grad.data
                if weight_decay:
                    g = g + weight_decay * p.data
                state = self.state.setdefault(id(p), {})
                if "step" not in state:
                    state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
                state["step"] += 1
                m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * g * g
                step_size = lr / (1 - beta1 ** t)
                denominator = xp.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps
                p.data -= step_size * m / denominator
