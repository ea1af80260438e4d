"""``tinynet.training_cost``: what one SGD step costs -- multiply-adds and memory -- for any model.

    >>> from tinynet.models.alexnet import AlexNet
    >>> from tinynet.training_cost import training_cost
    >>> cost = training_cost(AlexNet(), (3, 227, 227), batch_size=128)
    >>> print(cost)                                            # doctest: +SKIP

It is built on :func:`tinynet.summary` (the rows give every layer's output
size and forward multiply-adds, the totals the parameters) and adds what
training needs on top of the forward pass.

Multiply-adds
-------------
A convolution or fully connected layer is a GEMM ``Y = W X`` (im2col makes a
convolution one).  Its backward pass is two more GEMMs of the same size:

    input gradient:   dX = W^T dY          as many multiply-adds as the forward
    weight gradient:  dW = dY X^T          as many again

so a training step costs about 3x the forward multiply-adds.  Slightly less:
the first weighted layer does not compute the gradient of the input image,
which nobody uses (tinynet skips it, so do PyTorch and Caffe).  The pooling,
normalisation and activation layers add a few operations per value, which are
not counted, as in ``summary``.  One multiply-add is 2 floating-point
operations (FLOPs): one multiplication, one addition.

Memory
------
Everything a step holds, for a batch of ``batch_size`` in the parameters' dtype:

* activations: every layer's output (and the input batch), kept by the
  forward pass until the backward pass has used it (``summary``'s
  activations times the batch);
* saved for backward besides the outputs: LRN's scale (one value per output),
  max pooling's argmax (one index per output), dropout's mask (one value per
  value);
* activation gradients: one gradient per activation.  Counted two ways:
  ``all_activation_gradient_bytes`` has all of them alive at once (the
  textbook budget, an upper bound); a framework that frees each layer's saved
  arrays and incoming gradient as soon as the layer's backward is done (tinynet
  and PyTorch do) needs at most the largest pair of one layer's output
  gradient and input gradient, alive together with the activations of the
  layers below it (``backward_peak_bytes``);
* parameters, their gradients and, with momentum, one velocity per parameter:
  three copies of the weights;
* workspace: the largest im2col column matrix, ``(C*kh*kw) x (N*OH*OW)``, and
  the largest GEMM result in its ``(O, N*OH*OW)`` layout, for the whole batch
  at once (tinynet keeps one reusable buffer of each; on the CPU it processes a
  batch in chunks of about 128 MiB of columns, and Winograd's layers use other,
  similar buffers, so this is the textbook, GPU-style figure).

``total_bytes`` adds all of these with every gradient alive at once;
``peak_bytes`` uses the freed-as-you-go peak instead, and counts only the
activations that backward needs (``kept_activation_bytes``): a layer's output
stays alive only if that layer saves it (ReLU, LRN) or the next one saves its
input (convolution, linear, LRN, batch norm); a convolution's output that goes
into a ReLU, or a ReLU's output that goes into max pooling (which keeps only its
argmax), is freed as soon as its consumer has run, as tinynet's graph does.

Checking it
-----------
:func:`measure_step_peak` runs real SGD steps on the CPU under ``tracemalloc``
(NumPy reports its allocations to it) with im2col convolutions, and returns the
peak bytes of the last step.  For a small CNN with LRN, max pooling and dropout
(``tests/engine/test_training_cost.py``) ``peak_bytes`` and the measured peak agree to
within 1% at batch 16, 64 and 256.  The model knows nothing of Python's own
objects or of BLAS's internal buffers; for models whose layers it does not know
(a residual block's addition, say) it sees only what ``summary`` reports.
"""
from dataclasses import dataclass

import numpy as np

from .summary import summary as _summary

__all__ = ["training_cost", "TrainingCost", "measure_step_peak"]

WEIGHTED_KINDS = ("Conv2d", "Linear")


def _mib(n):
    return f"{n / 2**20:,.1f} MiB"


@dataclass
class TrainingCost:
    """The result of :func:`training_cost`; every number is for one step on one batch."""

    model_name: str
    input_shape: tuple
    batch_size: int
    dtype: np.dtype
    momentum: bool
    # multiply-adds
    forward_mult_adds: int
    input_gradient_mult_adds: int
    weight_gradient_mult_adds: int
    # memory, bytes
    activation_bytes: int
    saved_for_backward_bytes: int
    kept_activation_bytes: int
    all_activation_gradient_bytes: int
    largest_gradient_pair_bytes: int
    backward_peak_activation_bytes: int
    parameter_bytes: int
    parameter_gradient_bytes: int
    momentum_bytes: int
    im2col_column_bytes: int
    gemm_output_bytes: int
    im2col_layer: str = ""
    gemm_layer: str = ""
    forward_peak_activation_bytes: int = 0

    @property
    def backward_mult_adds(self):
        return self.input_gradient_mult_adds + self.weight_gradient_mult_adds

    @property
    def step_mult_adds(self):
        return self.forward_mult_adds + self.backward_mult_adds

    @property
    def step_flops(self):
        """2 FLOPs (a multiplication and an addition) per multiply-add."""
        return 2 * self.step_mult_adds

    @property
    def workspace_bytes(self):
        return self.im2col_column_bytes + self.gemm_output_bytes

    @property
    def weight_state_bytes(self):
        """Parameters, their gradients and the momentum buffers."""
        return self.parameter_bytes + self.parameter_gradient_bytes + self.momentum_bytes

    @property
    def total_bytes(self):
        """Everything at once: every activation gradient alive together (the textbook budget)."""
        return (self.activation_bytes + self.saved_for_backward_bytes + self.all_activation_gradient_bytes
                + self.weight_state_bytes + self.workspace_bytes)

    @property
    def peak_bytes(self):
        """The peak when only what backward needs is kept, and each layer's saved arrays and
        gradients are freed once its backward is done."""
        return (max(self.forward_peak_activation_bytes, self.backward_peak_activation_bytes)
                + self.weight_state_bytes + self.workspace_bytes)

    def lines(self):
        n, fwd = self.batch_size, self.forward_mult_adds
        volume = "x".join(str(s) for s in (self.input_shape[1:] + self.input_shape[:1])) \
            if len(self.input_shape) == 3 else "x".join(map(str, self.input_shape))
        out = [f"{self.model_name}: one SGD step{' with momentum' if self.momentum else ''}, "
               f"batch {n} of [{volume}], {self.dtype.name}"]
        out.append(f"multiply-adds  forward            {fwd:>20,}")
        out.append(f"               input gradients    {self.input_gradient_mult_adds:>20,}")
        out.append(f"               weight gradients   {self.weight_gradient_mult_adds:>20,}")
        out.append(f"               step               {self.step_mult_adds:>20,}  "
                   f"= {self.step_mult_adds / fwd:.2f} x forward" if fwd else
                   f"               step               {self.step_mult_adds:>20,}")
        out.append(f"               FLOPs (2 per MAC)  {self.step_flops:>20,}")
        rows = [("activations", self.activation_bytes),
                ("saved for backward", self.saved_for_backward_bytes),
                ("activation grads", self.all_activation_gradient_bytes),
                ("parameters", self.parameter_bytes),
                ("parameter grads", self.parameter_gradient_bytes),
                ("momentum", self.momentum_bytes),
                (f"im2col columns{' (' + self.im2col_layer + ')' if self.im2col_layer else ''}",
                 self.im2col_column_bytes),
                (f"GEMM output{' (' + self.gemm_layer + ')' if self.gemm_layer else ''}",
                 self.gemm_output_bytes)]
        first = True
        for name, value in rows:
            out.append(f"{'memory' if first else '':15s}{name:27s}{_mib(value):>14s}")
            first = False
        out.append(f"{'':15s}{'total, all at once':27s}{_mib(self.total_bytes):>14s}")
        out.append(f"{'':15s}{'peak, freed as used':27s}{_mib(self.peak_bytes):>14s}")
        return out

    def __str__(self):
        return "\n".join(self.lines())

    __repr__ = __str__


#: tinynet.nn layers whose backward needs their input (it stays alive until their backward has run) ...
SAVES_INPUT = ("Conv2d", "Linear", "LocalResponseNorm", "BatchNorm1d", "BatchNorm2d")
#: ... or their output (ReLU's mask is y > 0, tanh' = 1 - y^2, sigmoid' = y(1 - y); LRN uses both)
SAVES_OUTPUT = ("ReLU", "Tanh", "Sigmoid", "LocalResponseNorm")
#: outputs that are views of their input: no memory of their own
VIEWS = ("Flatten",)
#: what a pooling or dropout layer keeps is counted in saved-for-backward (argmax, mask), not here
KEEPS_NOTHING_OF_ITS_INPUT = ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Dropout")


def _kept_for_backward(rows):
    """Per summary row: does the backward pass need that row's output?  For a chain of layers:
    yes if the row saves its own output or the next layer saves its input (through views);
    a layer of a kind not listed above is assumed to keep everything."""
    known = set(SAVES_INPUT) | set(SAVES_OUTPUT) | set(VIEWS) | set(KEEPS_NOTHING_OF_ITS_INPUT)
    kept = [False] * len(rows)
    for i in reversed(range(len(rows))):
        row = rows[i]
        consumer = rows[i + 1] if i + 1 < len(rows) else None
        if i == 0 or row.kind in SAVES_OUTPUT or row.kind not in known:
            kept[i] = True                   # the input batch is held by the training loop
        elif consumer is None:
            kept[i] = False                  # the logits: the loss keeps its own probabilities
        elif consumer.kind in VIEWS:
            kept[i] = kept[i + 1]
        else:
            kept[i] = consumer.kind in SAVES_INPUT or consumer.kind not in known
    return kept


def _saved_extra_bytes(kind, activations, itemsize):
    """Per-image bytes a layer saves for its backward besides its output."""
    if kind == "LocalResponseNorm":
        return activations * itemsize          # the scale s, one per output
    if kind == "MaxPool2d":
        return activations * 4                 # argmax as int32 (int64 only for planes over 2**31 pixels)
    if kind == "Dropout":
        return activations * itemsize          # the mask (kept/dropped times the scale)
    return 0


def training_cost(model, input_shape, batch_size, momentum=True, input_requires_grad=False):
    """Multiply-adds and memory of one training step of ``model`` on a batch; returns a :class:`TrainingCost`.

    ``input_shape`` is one sample without the batch axis, as for :func:`tinynet.summary`;
    ``batch_size`` the images per step; ``momentum``: whether the optimiser keeps one
    velocity per parameter (SGD with momentum; Adam would keep two);
    ``input_requires_grad``: whether the gradient of the input is wanted (normally not,
    so the first weighted layer skips its input-gradient GEMM).
    """
    batch_size_int = int(batch_size)
    if batch_size_int != batch_size or batch_size_int < 1:
        raise ValueError(f"training_cost: batch_size must be a positive integer, got {batch_size!r}")
    n = batch_size_int
    table = _summary(model, input_shape)
    itemsize = table.dtype.itemsize
    modules = dict(model.named_modules())

    forward = n * table.total_mult_adds
    weight_grad = n * sum(r.mult_adds for r in table.rows if r.kind in WEIGHTED_KINDS)
    input_grad = weight_grad
    weighted = [r for r in table.rows if r.kind in WEIGHTED_KINDS]
    if weighted and not input_requires_grad:
        input_grad -= n * weighted[0].mult_adds

    # activations: the input and every layer's output; gradients for all but the input
    per_image = [r.activation_bytes for r in table.rows]
    activation_bytes = n * sum(per_image)
    saved = n * sum(_saved_extra_bytes(r.kind, r.activations, itemsize) for r in table.rows)
    all_gradients = n * sum(per_image[1:])

    # what backward needs stays (tinynet's graph frees the rest as soon as it is consumed): in
    # the forward pass layer i's output exists beside the kept arrays of the layers below it,
    # and disappears after layer i+1 has run unless backward needs it
    kept = _kept_for_backward(table.rows)
    owned = [0 if r.kind in VIEWS else b for r, b in zip(table.rows, per_image)]
    kept_bytes = [b if k else 0 for b, k in zip(owned, kept)]
    saved_bytes = [_saved_extra_bytes(r.kind, r.activations, itemsize) for r in table.rows]
    alive = np.cumsum([k + s for k, s in zip(kept_bytes, saved_bytes)])
    forward_peak = max(n * (int(alive[i]) + (owned[i - 1] - kept_bytes[i - 1] if i else 0))
                       for i in range(len(table.rows)))

    # freed as used: walking back through layer i, the kept activations and saved arrays of rows
    # 0..i are still alive, with layer i's output gradient and its input gradient
    peak, pair = 0, 0
    for i in range(1, len(table.rows)):
        gradient_in = per_image[i - 1] if (i > 1 or input_requires_grad) else 0
        this_pair = n * (per_image[i] + gradient_in)
        pair = max(pair, this_pair)
        peak = max(peak, n * int(alive[i]) + this_pair)

    params = table.total_params * itemsize
    columns, column_layer, gemm, gemm_layer = 0, "", 0, ""
    for row in table.rows:
        if row.kind != "Conv2d" or len(row.output_shape) != 3:
            continue
        module = modules[row.name]
        out_channels, out_h, out_w = row.output_shape
        kh, kw = module.weight.shape[2], module.weight.shape[3]
        in_channels = row.input_shape[0]
        layer_columns = in_channels * kh * kw * n * out_h * out_w * itemsize
        layer_gemm = out_channels * n * out_h * out_w * itemsize
        if layer_columns > columns:
            columns, column_layer = layer_columns, row.label
        if layer_gemm > gemm:
            gemm, gemm_layer = layer_gemm, row.label

    return TrainingCost(
        model_name=table.model_name, input_shape=tuple(table.input_shape), batch_size=n,
        dtype=table.dtype, momentum=bool(momentum), forward_mult_adds=forward,
        input_gradient_mult_adds=input_grad, weight_gradient_mult_adds=weight_grad,
        activation_bytes=activation_bytes, saved_for_backward_bytes=saved,
        kept_activation_bytes=n * sum(kept_bytes), forward_peak_activation_bytes=forward_peak,
        all_activation_gradient_bytes=all_gradients, largest_gradient_pair_bytes=pair,
        backward_peak_activation_bytes=peak, parameter_bytes=params, parameter_gradient_bytes=params,
        momentum_bytes=params if momentum else 0, im2col_column_bytes=columns, gemm_output_bytes=gemm,
        im2col_layer=column_layer, gemm_layer=gemm_layer)


def measure_step_peak(model, input_shape, batch_size, lr=0.01, momentum=0.9, steps=3, seed=0):
    """Peak bytes that NumPy (and Python) allocate during one SGD step of a copy of ``model``, on the CPU.

    The model runs two warm-up steps untraced (numba compiles its kernels, which allocates
    memory that has nothing to do with training); then a deep copy of it, a fresh optimiser
    and a random batch of ``batch_size`` samples of ``input_shape`` are created under
    ``tracemalloc``, ``steps`` steps run (cross-entropy on random labels), and the peak of the
    last step is returned -- it includes everything alive at that moment: parameters,
    gradients, momentum, the batch, the activations and the convolution's scratch buffers.
    Convolutions run as im2col + GEMM during the measurement (the algorithm ``training_cost``
    models), the CPU kernels on one thread (on several, the temporaries of their task ranges
    overlap as the scheduler happens to run them, and the peak would change from run to run), and
    results in fresh memory rather than recycled (``kernels/_recycled.py``: its waiting blocks
    are not part of the model; they keep the process within its peak in use, not this step's
    freed-as-you-go peak).  The previous settings are restored afterwards.
    """
    import copy
    import gc
    import tracemalloc

    from . import backend, manual_seed, optim
    from .kernels import conv2d as conv2d_kernels
    from .kernels import _recycled
    from .nn import functional as F
    from .tensor import Tensor

    if tracemalloc.is_tracing():
        raise RuntimeError("measure_step_peak: tracemalloc is already tracing; stop it first")
    if steps < 2:
        raise ValueError(f"measure_step_peak: steps must be at least 2 (the first step creates the "
                         f"momentum buffers), got {steps}")
    shape = (int(batch_size),) + tuple(int(s) for s in input_shape)
    first = next(iter(model.parameters()))
    if backend.device_of(first.data) != "cpu":
        raise ValueError("measure_step_peak: tracemalloc sees host memory only; the model must be on the CPU")
    rng = np.random.default_rng(seed)
    dtype = first.dtype

    def run(net, number_of_steps, trace):
        optimizer = optim.SGD(net.parameters(), lr=lr, momentum=momentum)
        x = Tensor(rng.standard_normal(shape).astype(dtype))
        labels = None
        for step in range(number_of_steps):
            if trace and step == number_of_steps - 1:
                tracemalloc.reset_peak()
            optimizer.zero_grad()
            scores = net(x)
            if labels is None:
                labels = rng.integers(0, scores.shape[1], shape[0])
            loss = F.cross_entropy(scores, labels)
            loss.backward()
            optimizer.step()
            del scores, loss

    previous = conv2d_kernels.set_algorithm("im2col")
    previous_threads = backend.get_num_threads()
    backend.set_num_threads(1)
    was_training = model.training
    try:
        manual_seed(seed)
        model.train()
        run(copy.deepcopy(model), 2, trace=False)
        conv2d_kernels.release_scratch_memory()
        gc.collect()
        _recycled.release_recycled_memory()
        tracemalloc.start()
        try:
            with _recycled.disabled():
                run(copy.deepcopy(model), steps, trace=True)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        conv2d_kernels.set_algorithm(previous)
        backend.set_num_threads(previous_threads)
        model.train(was_training)
