"""tinynet.nn: Module, Parameter, layers, functional forms and initialisers."""
from . import functional, init
from .layers import (AdaptiveAvgPool2d, AvgPool2d, Conv2d, CrossEntropyLoss, Dropout, Flatten, Identity,
                     LeakyReLU, Linear, LocalResponseNorm, LogSoftmax, MaxPool2d, ReLU, Sequential, Sigmoid,
                     Softmax, Tanh)
from .module import Module
from .parameter import Parameter

__all__ = ["Module", "Parameter", "functional", "init", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "LocalResponseNorm", "Dropout", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
           "Softmax", "LogSoftmax", "Identity", "Flatten", "Sequential", "CrossEntropyLoss"]
