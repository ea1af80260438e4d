"""Softmax cross-entropy, fused and numerically stable.

For logits z (N, K), integer targets t and label smoothing eps, the target
distribution is q = (1 - eps) * onehot(t) + eps / K, and

    loss_n = -sum_k q_nk * log_softmax(z_n)_k,        loss = mean_n loss_n

log_softmax is computed as z - max(z) - log(sum exp(z - max(z))), so no
exponential overflows.  The gradient has the famous simple form

    dloss/dz_nk = (softmax(z_n)_k - q_nk) / N

(the predicted probabilities minus the target ones), which is why the two
operations are fused into one Function instead of chaining log and softmax.
"""

from ..backend import get_array_module, to_device, device_of
from ..function import Function
from .activation import stable_log_softmax


class CrossEntropy(Function):
    def __init__(self, targets, label_smoothing=0.0, reduction="mean"):
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.targets, self.label_smoothing, self.reduction = targets, label_smoothing, reduction

    def forward(self, logits):
        xp = get_array_module(logits)
        if logits.ndim != 2:
            raise ValueError(f"cross_entropy: expected logits of shape (N, num_classes), got {tuple(logits.shape)}")
        targets = to_device(self.targets, device_of(logits))
        if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
            raise ValueError(f"cross_entropy: expected targets of shape ({logits.shape[0]},) for logits "
                             f"{tuple(logits.shape)}, got {tuple(targets.shape)}")
        if targets.dtype.kind not in "iu":
            raise ValueError(f"cross_entropy: targets must be integer class indices, got dtype {targets.dtype}")
        count, classes = logits.shape
        if count and (int(targets.min()) < 0 or int(targets.max()) >= classes):
            raise ValueError(f"cross_entropy: target class indices must lie in [0, {classes}), "
                             f"got values from {int(targets.min())} to {int(targets.max())}")
        log_probabilities = stable_log_softmax(logits, axis=1)
        rows = xp.arange(count)
        smoothing = self.label_smoothing
        per_sample = -(1 - smoothing) * log_probabilities[rows, targets]
        if smoothing:
            per_sample = per_sample - smoothing / classes * log_probabilities.sum(axis=1)
        self.log_probabilities, self.rows, self.targets = log_probabilities, rows, targets
        if self.reduction == "none":
            return per_sample
        total = per_sample.sum()
        return total / count if self.reduction == "mean" else total

    def backward(self, grad):
        xp = get_array_module(grad)
        count, classes = self.log_probabilities.shape
        smoothing = self.label_smoothing
        grad_logits = xp.exp(self.log_probabilities)                 # softmax
        if smoothing:
            grad_logits -= smoothing / classes
        grad_logits[self.rows, self.targets] -= 1 - smoothing        # minus the target distribution
        if self.reduction == "none":
            return grad_logits * grad[:, None]
        scale = grad / count if self.reduction == "mean" else grad
        return grad_logits * scale
