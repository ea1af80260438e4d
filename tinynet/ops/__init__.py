"""Differentiable operations: each a Function with forward/backward on raw arrays.

arithmetic  + - * / neg pow matmul cast       reduction  sum mean max
shape       reshape transpose getitem concat stack
activation  exp log sqrt relu leaky_relu sigmoid tanh softmax log_softmax
loss        cross_entropy
layers      thin wrappers that call the hand-written kernels in tinynet.kernels
"""
