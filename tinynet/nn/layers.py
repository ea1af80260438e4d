"""Layers: Modules that hold parameters (if any) and call the functional forms."""
from collections import OrderedDict

import numpy as np

from ..kernels.geometry import pair
from . import functional as F
from . import init
from .description import (LayerDescription, count, format_number, hw, one_or_pair, window_formula,
                          window_text)
from .module import Module
from .parameter import Parameter


def _empty_parameter(*shape):
    # its default draw waits until the values are read: the model's own init usually overwrites it
    return init.DeferredDefaultParameter(*shape)


class Linear(Module):
    """y = x W^T + b;  W: (out_features, in_features), b: (out_features,)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty_parameter(out_features, in_features)
        self.register_parameter("bias", _empty_parameter(out_features) if bias else None)
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: expected input with {self.in_features} features in the last "
                             f"axis, got shape {x.shape}")
        return F.linear(x, self.weight, self.bias)

    summary_label = "FC"

    def describe(self, input_shape, output_shape, is_model_output=False):
        fin, fout = self.in_features, self.out_features
        bias = f"+{fout}" if self.bias is not None else ""
        params = fin * fout + (fout if self.bias is not None else 0)
        rows = int(np.prod(output_shape[1:-1])) if len(output_shape) > 2 else 1   # (N, ..., F): one product per row
        macs = rows * fin * fout
        return LayerDescription(
            text=f"{fout} neurons" + (" (class scores)" if is_model_output else ""),
            params_formula=f"{fin}*{fout}{bias} = {count(params)}", mult_adds=macs,
            mult_adds_formula=(f"{rows}*" if rows != 1 else "") + f"{fin}*{fout} = {count(macs)}")

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution; weight (out_channels, in_channels/groups, kh, kw) as in PyTorch."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = pair(kernel_size), pair(stride)
        self.padding, self.dilation, self.groups = pair(padding), pair(dilation), groups
        self.weight = _empty_parameter(out_channels, in_channels // groups, *self.kernel_size)
        self.register_parameter("bias", _empty_parameter(out_channels) if bias else None)
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.in_channels}, H, W), "
                             f"got {x.shape}")
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    summary_label = "CONV"

    def describe(self, input_shape, output_shape, is_model_output=False):
        (kh, kw), cin, cout, groups = self.kernel_size, self.in_channels, self.out_channels, self.groups
        text = f"{cout} " + window_text(self.kernel_size, self.stride, self.padding)
        if self.dilation != (1, 1):
            text += f", dilation {one_or_pair(self.dilation)}"
        if groups != 1:
            text += f", {groups} groups"
        per_group = f"({cin}/{groups})" if groups != 1 else str(cin)
        bias = f"+{cout}" if self.bias is not None else ""
        params = cin // groups * kh * kw * cout + (cout if self.bias is not None else 0)
        oh, ow = output_shape[2:4] if len(output_shape) == 4 else (1, 1)
        macs = oh * ow * cout * (cin // groups) * kh * kw
        return LayerDescription(
            text=text, size_formula=window_formula(input_shape, self.kernel_size, self.stride, self.padding,
                                                   self.dilation),
            params_formula=f"{per_group}*{kh}*{kw}*{cout}{bias} = {count(params)}", mult_adds=macs,
            mult_adds_formula=f"{oh}*{ow}*{cout}*{per_group}*{kh}*{kw} = {count(macs)}")

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size = pair(kernel_size)
        self.stride = self.kernel_size if stride is None else pair(stride)
        self.padding, self.ceil_mode = pair(padding), ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    summary_label = "MAX POOL"

    def describe(self, input_shape, output_shape, is_model_output=False):
        text = window_text(self.kernel_size, self.stride, self.padding if self.padding != (0, 0) else None)
        return LayerDescription(
            text=text + (", ceil mode" if self.ceil_mode else ""),
            size_formula=window_formula(input_shape, self.kernel_size, self.stride, self.padding,
                                        ceil_mode=self.ceil_mode))

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size = pair(kernel_size)
        self.stride = self.kernel_size if stride is None else pair(stride)
        self.padding, self.ceil_mode, self.count_include_pad = pair(padding), ceil_mode, count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    summary_label = "AVG POOL"
    describe = MaxPool2d.describe

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = pair(output_size)

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    summary_label = "ADAPTIVE AVG POOL"

    def describe(self, input_shape, output_shape, is_model_output=False):
        if len(input_shape) != 4 or len(output_shape) != 4:
            return LayerDescription()
        return LayerDescription(text=f"average over {hw(output_shape[2:])} bins",
                                size_formula=f"{hw(input_shape[2:])} -> {hw(output_shape[2:])} bins")

    def extra_repr(self):
        return f"output_size={self.output_size}"


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d; the math is in ``tinynet.kernels.batch_norm``."""

    #: the input ranks the layer accepts, and how the notes write them
    _ranks, _expected = (), ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        if int(num_features) != num_features or num_features < 1:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive integer, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None "
                             f"(cumulative average), got {momentum}")
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=np.float32))
            self.bias = Parameter(np.zeros(self.num_features, dtype=np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=np.float32))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def forward(self, x):
        if x.ndim not in self._ranks or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input of shape {self._expected.format(self.num_features)}, "
                             f"got {x.shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:          # cumulative moving average of all batches so far
                factor = 1.0 / float(self.num_batches_tracked)
        # the batch's statistics in training, and also in evaluation when none are tracked
        use_batch_statistics = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean if not self.training or self.track_running_stats else None,
                            self.running_var if not self.training or self.track_running_stats else None,
                            self.weight, self.bias, use_batch_statistics, factor, self.eps)

    summary_label = "BATCH NORM"

    def describe(self, input_shape, output_shape, is_model_output=False):
        over = "N" + "".join(f"*{axis}" for axis in "HW"[:max(0, len(input_shape) - 2)]) \
            if len(input_shape) == 4 else ("N" if len(input_shape) == 2 else "N*L")
        text = f"normalise each of {self.num_features} channels over {over}, eps={format_number(self.eps)}"
        params = f"{self.num_features}+{self.num_features} = {count(2 * self.num_features)}" if self.affine else ""
        return LayerDescription(text=text, params_formula=params)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of features (N, C) or sequences (N, C, L), per channel C."""

    _ranks, _expected = (2, 3), "(N, {0}) or (N, {0}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of images (N, C, H, W), per channel C, over N, H and W."""

    _ranks, _expected = (4,), "(N, {0}, H, W)"


class LocalResponseNorm(Module):
    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0, alpha_scaled_by_size=True):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.alpha_scaled_by_size = alpha_scaled_by_size

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.alpha_scaled_by_size)

    summary_label = "NORM"

    def describe(self, input_shape, output_shape, is_model_output=False):
        text = (f"local response norm n={self.size}, k={format_number(self.k)}, "
                f"alpha={format_number(self.alpha)}, beta={format_number(self.beta)}")
        return LayerDescription(text=text + (" (alpha/n)" if self.alpha_scaled_by_size else ""))

    def extra_repr(self):
        return (f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
                f"alpha_scaled_by_size={self.alpha_scaled_by_size}")


class Dropout(Module):
    """Drops with probability p in training; ``scale_in_training=False`` is the paper's variant."""

    def __init__(self, p=0.5, scale_in_training=True):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p is the probability of dropping and must be in [0, 1], got {p}")
        self.p, self.scale_in_training = p, scale_in_training

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.scale_in_training)

    def describe(self, input_shape, output_shape, is_model_output=False):
        variant = "inverted" if self.scale_in_training else "paper: x(1-p) at test time"
        return LayerDescription(text=f"p={format_number(self.p)} ({variant})")

    def extra_repr(self):
        return f"p={self.p}" + ("" if self.scale_in_training else ", scale_in_training=False")


class ReLU(Module):
    summary_label = "RELU"

    def forward(self, x):
        return F.relu(x)

    def describe(self, input_shape, output_shape, is_model_output=False):
        return LayerDescription(text="max(0, x)")


class LeakyReLU(Module):
    summary_label = "LEAKY RELU"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Softmax(Module):
    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)


class LogSoftmax(Softmax):
    summary_label = "LOG SOFTMAX"

    def forward(self, x):
        return F.log_softmax(x, self.dim)


class Identity(Module):
    def forward(self, x):
        return x


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def describe(self, input_shape, output_shape, is_model_output=False):
        per_image = tuple(input_shape[1:])
        if len(per_image) == 3:            # the notes write volumes as H x W x C
            per_image = (per_image[1], per_image[2], per_image[0])
        sizes = "*".join(str(s) for s in per_image)
        return LayerDescription(size_formula=f"{sizes} = {count(np.prod(output_shape[1:]))}")


class CrossEntropyLoss(Module):
    def __init__(self, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        self.label_smoothing, self.reduction = label_smoothing, reduction

    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets, self.label_smoothing, self.reduction)


class Sequential(Module):
    """Layers applied in order; built from modules or an OrderedDict of named modules."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters and buffers the parent registers (``model.blocks[3]``).

    Unlike a plain Python list, modules held here are found by ``parameters()``,
    ``state_dict()`` (keys ``blocks.0.weight``...), ``to()`` and ``train()``.
    It has no ``forward``: the owner decides how its modules are called.
    """

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def _check(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules only, got {type(module).__name__}")
        return module

    def append(self, module):
        self.add_module(str(len(self._modules)), self._check(module))
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def _index(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"ModuleList index {index} out of range for {len(self)} modules")
        return str(index % len(self))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return self._modules[self._index(index)]

    def __setitem__(self, index, module):
        setattr(self, self._index(index), self._check(module))

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, *inputs):
        raise NotImplementedError("ModuleList has no forward: call its modules from the owner's forward")


class ModuleDict(Module):
    """A dict of named modules that the parent registers (keys become state-dict path parts)."""

    def __init__(self, modules=None):
        super().__init__()
        for name, module in (dict(modules) if modules is not None else {}).items():
            self[name] = module

    def __setitem__(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict holds Modules only, got {type(module).__name__} for key {name!r}")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"ModuleDict keys must be non-empty strings without '.', got {name!r}")
        self.add_module(name, module)

    def __getitem__(self, name):
        return self._modules[name]

    def __delitem__(self, name):
        delattr(self, name)

    def __contains__(self, name):
        return name in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def forward(self, *inputs):
        raise NotImplementedError("ModuleDict has no forward: call its modules from the owner's forward")
