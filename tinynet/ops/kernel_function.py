"""One generic adapter from a kernel file to an autograd Function.

Every module in ``tinynet.kernels`` that implements a differentiable op speaks
the same two calls (the *kernel contract*):

    forward(*inputs, **hyperparameters)            -> (outputs, saved)
    backward(grad_outputs, saved, needs_input_grad) -> one gradient (or None) per input

``inputs`` are the arrays that may need gradients (x, weight, bias; ``None`` for
an absent bias); ``hyperparameters`` are everything else (stride, p, running
statistics, a random draw).  ``outputs`` is an array or a tuple of arrays;
``saved`` is opaque to everyone but the kernel's own backward, and holds
whatever forward chose (algorithm, geometry, masks), so the backward pass can
never use a different choice.  ``grad_outputs`` is an array for a one-output
op, else a tuple.

:func:`apply_kernel` runs such a kernel as a node of the graph::

    y = apply_kernel(kernels.batch_norm, x, weight, bias, training=True, eps=1e-5, ...)

so a new layer needs no Function class of its own.

A kernel may also offer ``inference(*inputs, **hyperparameters) -> outputs``: the same
outputs, computed without what only the backward pass needs (max pooling's argmax).  It runs
where no graph is recorded (``no_grad``, or no input that requires a gradient).
"""
from ..function import Function


class KernelFunction(Function):
    """A graph node that runs ``kernel.forward`` and ``kernel.backward`` (see the module docstring)."""

    def __init__(self, kernel, hyperparameters):
        self.kernel = kernel
        self.hyperparameters = hyperparameters

    @property
    def name(self):
        return self.kernel.__name__.rpartition(".")[2]

    def forward(self, *inputs):
        if not getattr(self, "recording", True) and hasattr(self.kernel, "inference"):
            return self.kernel.inference(*inputs, **self.hyperparameters)
        outputs, self.saved = self.kernel.forward(*inputs, **self.hyperparameters)
        return outputs

    def backward(self, *grad_outputs):
        grads = grad_outputs[0] if len(grad_outputs) == 1 else grad_outputs
        grad_inputs = self.kernel.backward(grads, self.saved, self.needs_input_grad)
        return tuple(grad_inputs)

    def __repr__(self):
        return f"<{self.name}>" if "kernel" in vars(self) else "<released kernel function>"


def apply_kernel(kernel, *inputs, **hyperparameters):
    """Run kernel module ``kernel`` on ``inputs`` (Tensors or arrays) as one differentiable op."""
    return KernelFunction(kernel, hyperparameters)(*inputs)
