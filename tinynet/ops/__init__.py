"""Differentiable operations: each a Function with forward/backward on raw arrays.

arithmetic  + - * / neg pow matmul cast       reduction  sum mean max
shape       reshape transpose getitem concat stack
activation  exp log sqrt relu leaky_relu sigmoid tanh softmax log_softmax
loss        cross_entropy
kernel_function  apply_kernel: the one generic adapter that runs any kernel of tinynet.kernels
                 (the kernel contract: forward -> (outputs, saved), backward(grads, saved, needs))
"""
