"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, 1998), built from tinynet layers, in two variants.

``lenet5_classic`` -- the paper's network, for a 32x32 input (an MNIST digit padded by 2)::

    [28x28x6]   C1   6 5x5 filters                        (32-5)/1+1 = 28     (5*5*1+1)*6   =    156
    [14x14x6]   S2   trainable 2x2 subsampling            (28-2)/2+1 = 14     6 weights + 6 biases =  12
    [10x10x16]  C3   16 5x5 filters, partially connected  (14-5)/1+1 = 10     60*5*5 + 16   =  1,516
    [5x5x16]    S4   trainable 2x2 subsampling            (10-2)/2+1 = 5      16 + 16       =     32
    [1x1x120]   C5   120 5x5 filters                      (5-5)/1+1  = 1      (16*5*5+1)*120 = 48,120
    [84]        F6   84 units                                                 120*84 + 84   = 10,164
                                                                                     C1..F6   = 60,000
    [10]        OUTPUT  linear, 10 class scores (NOT the paper's RBF layer)        84*10 + 10  =    850

Every layer from C1 to F6 is followed by the paper's squashing function
f(a) = 1.7159 tanh(2a/3) (:class:`ScaledTanh`: f(1) = 1, f(-1) = -1, and the gain is largest
where the targets +-1 sit).  A subsampling unit of S2/S4 adds the four inputs of its 2x2 window,
multiplies the sum by a trainable coefficient and adds a trainable bias, one coefficient and
one bias per feature map (:class:`TrainableSubsampling`).  C3 connects each of its 16 maps to a
subset of S2's 6 maps only, by the paper's Table I (:data:`C3_CONNECTIONS`,
:class:`PartiallyConnectedConv2d`): 60 connected (output map, input map) pairs instead of 96, so
1,500 weights instead of 2,400 -- "a non-complete connection scheme keeps the number of
connections within reasonable bounds [and] forces a break of symmetry".

**The output layer differs from the paper.**  LeNet-5 ends in 10 Euclidean radial basis function
units, y_i = sum_j (x_j - w_ij)^2, whose 84-dimensional centres were fixed by hand (stylised 7x12
bitmaps of the characters), trained with a special loss.  Here the output is an ordinary linear
layer, 84*10+10 = 850 trainable parameters, trained with softmax cross-entropy.  So the paper's
"60,000 trainable parameters" are exactly those of ``model.features`` (C1..F6), and the whole
model has 60,000 + 850 = 60,850: ``model.num_parameters()`` counts every trainable parameter and
says 60,850; ``model.features.num_parameters()`` says 60,000.  Only the 60 connected filters of
C3 exist as parameters, so nothing is counted that the network cannot learn.

``lenet5`` -- the "modern" LeNet-5 of today's courses: the same sizes with a full C3 (6*5*5*16+16
= 2,416), ReLU instead of the squashing function, 2x2 max pooling instead of trainable
subsampling, and the linear output (softmax in the loss): 156 + 2,416 + 48,120 + 10,164 + 850 =
61,706 parameters.

    >>> import tinynet.models as models
    >>> models.create("lenet5_classic", num_classes=10).num_parameters()
    60850
    >>> models.create("lenet5", num_classes=10).num_parameters()
    61706
"""
from collections import OrderedDict

import numpy as np

import tinynet
from tinynet import nn
from tinynet.nn import functional as F
from tinynet.nn.description import LayerDescription, window_formula

__all__ = ["LeNet5", "ScaledTanh", "TrainableSubsampling", "PartiallyConnectedConv2d", "C3_CONNECTIONS",
           "lenet5", "lenet5_classic", "MODELS"]

#: The paper's Table I, by column: C3 map j takes input from the S2 maps C3_CONNECTIONS[j].
#: Maps 0-5: every contiguous subset of three S2 maps (wrapping around); 6-11: every contiguous
#: subset of four; 12-14: three discontinuous subsets of four; 15: all six.
C3_CONNECTIONS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

#: f(a) = A tanh(S a), the paper's Appendix A: A = 1.7159, S = 2/3
SQUASH_AMPLITUDE, SQUASH_SLOPE = 1.7159, 2.0 / 3.0


def _check_maps(layer, x, channels, smallest):
    """A clear error for an input that is not (N, channels, H, W) with H, W >= smallest."""
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{layer}: expected input of shape (N, {channels}, H, W), got {tuple(x.shape)}")
    if x.shape[2] < smallest or x.shape[3] < smallest:
        raise ValueError(f"{layer}: the {x.shape[2]}x{x.shape[3]} maps are smaller than the "
                         f"{smallest}x{smallest} window")


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = 1.7159 tanh(2a/3): f(+-1) = +-1, f'(0) = 1.14."""

    def __init__(self, amplitude=SQUASH_AMPLITUDE, slope=SQUASH_SLOPE):
        super().__init__()
        self.amplitude, self.slope = float(amplitude), float(slope)

    def forward(self, x):
        return F.tanh(x * self.slope) * self.amplitude

    def extra_repr(self):
        return f"{self.amplitude:g} * tanh({self.slope:.4g} * x)"


class TrainableSubsampling(nn.Module):
    """LeNet's S2 / S4: per feature map c, ``y = weight[c] * (sum of the k x k window) + bias[c]``.

    Non-overlapping windows (stride k), so an H x W map becomes floor(H/k) x floor(W/k).  Two
    parameters per map -- a weight and a bias -- whatever the map's size.  Built from existing
    autograd ops: the window sum is k*k times ``avg_pool2d``, and the per-map weight and bias
    broadcast over (N, C, H, W), so the backward pass needs nothing new::

        dL/dweight[c] = sum over n, i, j of dL/dy[n,c,i,j] * window_sum[n,c,i,j]
        dL/dbias[c]   = sum over n, i, j of dL/dy[n,c,i,j]
        dL/dx[n,c,...] = weight[c] * dL/dy of the window the pixel falls in (0 for cut-off rows)

    The squashing function is a separate layer (:class:`ScaledTanh`).
    """

    def __init__(self, channels, kernel_size=2):
        super().__init__()
        if int(channels) < 1 or int(kernel_size) < 1:
            raise ValueError(f"TrainableSubsampling: channels and kernel_size must be >= 1, got "
                             f"{channels} and {kernel_size}")
        self.channels, self.kernel_size = int(channels), int(kernel_size)
        self.weight = nn.Parameter(np.ones(self.channels, dtype=np.float32))
        self.bias = nn.Parameter(np.zeros(self.channels, dtype=np.float32))

    def forward(self, x):
        _check_maps(f"TrainableSubsampling({self.channels})", x, self.channels, self.kernel_size)
        k = self.kernel_size
        window_sum = F.avg_pool2d(x, k, stride=k) * float(k * k)
        return window_sum * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)

    summary_label = "SUBSAMPLING"

    def describe(self, input_shape, output_shape, is_model_output=False):
        k = self.kernel_size
        return LayerDescription(
            text=f"sum of {k}x{k} windows at stride {k}, times a weight, plus a bias, per map",
            size_formula=window_formula(input_shape, (k, k), (k, k), (0, 0)),
            params_formula=f"{self.channels}+{self.channels} = {2 * self.channels:,}")

    def extra_repr(self):
        return f"{self.channels}, kernel_size={self.kernel_size}"


class PartiallyConnectedConv2d(nn.Module):
    """A stride-1 convolution whose output map j sees only the input maps ``connections[j]``.

    Only the connected filters are parameters: ``weight`` has one k x k filter per connected
    (output map, input map) pair, ``(num_connections, k, k)``, in table order, and ``bias``
    one value per output map.  The forward pass scatters them into the full
    ``(out, in, k, k)`` filter bank, with exact zeros for the pairs the table leaves out, and
    runs an ordinary convolution -- so the backward pass (the gather's adjoint, a scatter-add)
    gives the connected filters their gradient and the missing ones do not exist to get any.
    """

    def __init__(self, in_channels, connections, kernel_size=5):
        super().__init__()
        self.in_channels, self.kernel_size = int(in_channels), int(kernel_size)
        self.connections = tuple(tuple(int(i) for i in inputs) for inputs in connections)
        self.out_channels = len(self.connections)
        for j, inputs in enumerate(self.connections):
            if not inputs or len(set(inputs)) != len(inputs) or not all(0 <= i < self.in_channels for i in inputs):
                raise ValueError(f"PartiallyConnectedConv2d: output map {j} lists input maps {inputs}; "
                                 f"expected distinct maps in 0..{self.in_channels - 1}")
        self.num_connections = sum(len(inputs) for inputs in self.connections)
        # slot[j, i]: where the filter for (output j, input i) sits in weight; num_connections
        # (one past the end) points at an all-zero filter for pairs that are not connected
        slot = np.full((self.out_channels, self.in_channels), self.num_connections, dtype=np.int64)
        position = 0
        for j, inputs in enumerate(self.connections):
            for i in inputs:
                slot[j, i] = position
                position += 1
        self.slot = slot
        k = self.kernel_size
        self.weight = nn.Parameter(np.zeros((self.num_connections, k, k), dtype=np.float32))
        self.bias = nn.Parameter(np.zeros(self.out_channels, dtype=np.float32))
        # PyTorch's default for a conv whose fan-in is the connected inputs of a map (mean fan-in)
        fan_in = self.num_connections / self.out_channels * k * k
        bound = 1.0 / np.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    @property
    def connection_mask(self):
        """(out_channels, in_channels) bool: True where output map j reads input map i."""
        return self.slot < self.num_connections

    def full_weight(self):
        """The (out, in, k, k) filter bank the convolution runs with (zeros where not connected)."""
        k = self.kernel_size
        zero_filter = tinynet.zeros(1, k, k, dtype=self.weight.dtype, device=self.weight.device)
        return tinynet.concat([self.weight, zero_filter], axis=0)[self.slot]

    def forward(self, x):
        _check_maps(f"PartiallyConnectedConv2d({self.in_channels}, {self.out_channels})", x, self.in_channels,
                    self.kernel_size)
        return F.conv2d(x, self.full_weight(), self.bias)

    summary_label = "CONV"

    def describe(self, input_shape, output_shape, is_model_output=False):
        k, maps = self.kernel_size, self.out_channels
        oh, ow = output_shape[2:4]
        macs = oh * ow * self.num_connections * k * k         # only the connected input maps are summed
        return LayerDescription(
            text=f"{maps} {k}x{k} filters at stride 1, pad 0, {self.num_connections} of "
                 f"{self.in_channels * maps} map connections (Table I)",
            size_formula=window_formula(input_shape, (k, k), (1, 1), (0, 0)),
            params_formula=f"{self.num_connections}*{k}*{k}+{maps} = {self.num_connections * k * k + maps:,}",
            mult_adds=macs, mult_adds_formula=f"{oh}*{ow}*{self.num_connections}*{k}*{k} = {macs:,}")

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"{self.num_connections} of {self.in_channels * self.out_channels} connections")


def _fan_in(layer):
    if isinstance(layer, nn.Conv2d):
        return layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
    if isinstance(layer, nn.Linear):
        return layer.in_features
    if isinstance(layer, PartiallyConnectedConv2d):     # the mean over C3's maps: 60*25/16 = 93.75
        return layer.num_connections / layer.out_channels * layer.kernel_size ** 2
    if isinstance(layer, TrainableSubsampling):
        return layer.kernel_size ** 2
    return None


def classic_init_(module, scheme="lecun"):
    """Uniform weights scaled by each unit's fan-in F_i, zero biases.

    ``"paper"``: uniform in +-2.4/F_i, the paper's Appendix A -- chosen there for its
    second-order training method (stochastic diagonal Levenberg-Marquardt), which rescales each
    weight's step; with plain SGD those weights are so small that the signal fades layer by layer
    (C5's sums have a standard deviation near 0.07) and training stalls for epochs.
    ``"lecun"``: uniform in +-sqrt(3/F_i), standard deviation 1/sqrt(F_i) (LeCun et al.,
    "Efficient BackProp", 1998): with the scaled tanh this keeps each layer's weighted sums near
    unit variance, where f is neither linear nor saturated.
    """
    if scheme not in ("paper", "lecun"):
        raise ValueError(f"LeNet5: init must be 'paper' or 'lecun', got {scheme!r}")
    for layer in module.modules():
        fan_in = _fan_in(layer)
        if fan_in is None:
            continue
        bound = 2.4 / fan_in if scheme == "paper" else float(np.sqrt(3.0 / fan_in))
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.zeros_(layer.bias)


class LeNet5(nn.Module):
    """LeNet-5 for (N, in_channels, 32, 32) inputs; ``variant`` is ``"classic"`` or ``"modern"``.

    ``init``: ``"lecun"`` (default) or ``"paper"`` for the classic variant (:func:`classic_init_`);
    the modern one uses He-normal weights and zero biases.

    ``features`` runs C1 to F6 (with their activations), ``output`` is the linear layer that
    gives the ``num_classes`` scores (see the module docstring for what differs from the paper).
    """

    def __init__(self, num_classes=10, variant="modern", in_channels=1, init=None):
        super().__init__()
        if variant not in ("classic", "modern"):
            raise ValueError(f"LeNet5: variant must be 'classic' or 'modern', got {variant!r}")
        self.variant, self.in_channels = variant, int(in_channels)
        if variant == "classic":
            layers = [("c1", nn.Conv2d(in_channels, 6, 5)), ("squash1", ScaledTanh()),
                      ("s2", TrainableSubsampling(6)), ("squash2", ScaledTanh()),
                      ("c3", PartiallyConnectedConv2d(6, C3_CONNECTIONS, 5)), ("squash3", ScaledTanh()),
                      ("s4", TrainableSubsampling(16)), ("squash4", ScaledTanh()),
                      ("c5", nn.Conv2d(16, 120, 5)), ("squash5", ScaledTanh()),
                      ("flatten", nn.Flatten()),
                      ("f6", nn.Linear(120, 84)), ("squash6", ScaledTanh())]
        else:
            layers = [("c1", nn.Conv2d(in_channels, 6, 5)), ("relu1", nn.ReLU()),
                      ("s2", nn.MaxPool2d(2)),
                      ("c3", nn.Conv2d(6, 16, 5)), ("relu3", nn.ReLU()),
                      ("s4", nn.MaxPool2d(2)),
                      ("c5", nn.Conv2d(16, 120, 5)), ("relu5", nn.ReLU()),
                      ("flatten", nn.Flatten()),
                      ("f6", nn.Linear(120, 84)), ("relu6", nn.ReLU())]
        self.features = nn.Sequential(OrderedDict(layers))
        self.output = nn.Linear(84, num_classes)
        if variant == "classic":
            classic_init_(self, init or "lecun")
        elif init not in (None, "kaiming"):
            raise ValueError(f"LeNet5: the modern variant uses He (kaiming) initialisation, got init={init!r}")
        else:
            for layer in self.modules():
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu" if layer is not self.output
                                            else "linear")
                    nn.init.zeros_(layer.bias)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != (32, 32):
            raise ValueError(f"LeNet5: expected input of shape (N, {self.in_channels}, 32, 32) (MNIST's "
                             f"28x28 digits padded by 2 on each side), got {tuple(x.shape)}")
        return self.output(self.features(x))


def lenet5(num_classes=10, in_channels=1):
    """The modern LeNet-5: full C3, ReLU, max pooling, linear output (61,706 parameters for 10 classes)."""
    return LeNet5(num_classes=num_classes, variant="modern", in_channels=in_channels)


def lenet5_classic(num_classes=10, in_channels=1, init="lecun"):
    """The paper's LeNet-5 up to F6 (60,000 parameters) with a linear output for the RBF layer (+850).

    ``init="paper"`` draws the weights as the paper did (see :func:`classic_init_`)."""
    return LeNet5(num_classes=num_classes, variant="classic", in_channels=in_channels, init=init)


MODELS = {"lenet5": lenet5, "lenet5_classic": lenet5_classic}
