r"""One step of stochastic gradient descent with momentum, in place: PyTorch's update rule.

The formula
-----------
For a parameter p with gradient g, learning rate lr, momentum mu, dampening d,
weight decay wd, and the momentum buffer v (velocity):

    g <- g + wd * p                               (L2 regularisation)
    v <- g                       on the first step,
    v <- mu * v + (1 - d) * g    afterwards
    g <- g + mu * v   (Nesterov)     or     g <- v
    p <- p - lr * g

Every element is updated independently, so the step is memory-bound: its cost
is the number of passes over the parameter-sized arrays.  Written as array
calls (``g = g + wd*p; v *= mu; v += (1-d)*g; p -= lr*g``) it makes about a
dozen passes and three parameter-sized temporaries (what that cost AlexNet's
62 M parameters: benchmarks/README.md, "Measurements behind the design").  The CPU path is one numba loop that
reads p, g and v once and writes p and v once.

Rounding
--------
The scalars are cast to the parameters' dtype before the loop and every
operation is done in that dtype, in the order of the formula, so the fused
loop gives bit for bit what the array calls give (numba does not contract
``a*b + c`` into a fused multiply-add unless asked to).

CPU and GPU
-----------
CPU: the numba loop, parallel over elements.  GPU (and arrays that are not
contiguous): the same formula as array-module calls, which CuPy runs as
elementwise kernels.
"""
import numpy

from tinynet.backend import get_array_module

from ._numba import ELEMENTWISE_GRAIN, njit, parallel_tasks


@njit(cache=True, nogil=True)
def _sgd_update_tasks(param, grad, velocity, lr, momentum, dampening_complement, weight_decay,
                    use_momentum, first_step, nesterov, first, last):
    # the loop counts from 0 over slices (_numba.py, "Loops that vectorise")
    param, grad = param[first:last], grad[first:last]
    if use_momentum:
        velocity = velocity[first:last]
    for i in range(param.size):
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        if use_momentum:
            if first_step:
                v = g
            else:
                v = velocity[i] * momentum + dampening_complement * g
            velocity[i] = v
            if nesterov:
                g = g + momentum * v
            else:
                g = v
        param[i] = param[i] - lr * g


def _sgd_update_cpu(param, grad, velocity, lr, momentum, dampening_complement, weight_decay, use_momentum,
                    first_step, nesterov):
    parallel_tasks(_sgd_update_tasks, param.size, param, grad, velocity, lr, momentum,
                   dampening_complement, weight_decay, use_momentum, first_step, nesterov,
                   grain=ELEMENTWISE_GRAIN)


def sgd_update(param, grad, velocity, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
               nesterov=False, first_step=False):
    """Update ``param`` (and ``velocity``, the momentum buffer) in place by one SGD step.

    param, grad, velocity: arrays of one shape and dtype (velocity is None without
    momentum).  ``first_step``: the buffer is empty and receives the gradient itself.
    """
    if grad.shape != param.shape:
        raise ValueError(f"sgd_update: gradient shape {tuple(grad.shape)} differs from the "
                         f"parameter shape {tuple(param.shape)}")
    use_momentum = momentum != 0
    if use_momentum and (velocity is None or velocity.shape != param.shape):
        raise ValueError(f"sgd_update: momentum {momentum} needs a velocity of the parameter shape "
                         f"{tuple(param.shape)}, got {None if velocity is None else tuple(velocity.shape)}")
    xp = get_array_module(param, grad)
    dtype = param.dtype.type
    arrays = (param, grad) + ((velocity,) if use_momentum else ())
    if (xp is numpy and all(a.flags.c_contiguous and a.dtype == param.dtype for a in arrays)
            and param.dtype.kind == "f"):
        flat_velocity = velocity.reshape(-1) if use_momentum else param.reshape(-1)[:0]
        _sgd_update_cpu(param.reshape(-1), grad.reshape(-1), flat_velocity, dtype(lr), dtype(momentum),
                        dtype(1 - dampening), dtype(weight_decay), use_momentum, bool(first_step),
                        bool(nesterov))
        return
    g = grad
    if weight_decay:
        g = g + weight_decay * param
    if use_momentum:
        if first_step:
            velocity[...] = g
        else:
            velocity *= momentum
            velocity += (1 - dampening) * g
        g = g + momentum * velocity if nesterov else velocity
    param -= lr * g
