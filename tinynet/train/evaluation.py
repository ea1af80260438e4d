"""Scoring a classifier: accuracy and loss over a loader, ten-crop averaging, Wilson intervals.

A ten-crop batch has shape (N, 10, C, h, w) (``transforms.TenCrop``): the softmax of the ten crops
of each image is averaged, and the class with the highest mean probability is the prediction.
"""
import math

import numpy as np

import tinynet
from .. import backend
from ..nn import functional as F

__all__ = ["Z_95", "evaluate", "ten_crop_probabilities", "probabilities", "score_probabilities",
           "wilson_interval", "with_interval", "describe_score"]

Z_95 = 1.959963984540054        # the standard normal's 97.5 % quantile


def ten_crop_probabilities(model, images):
    """Softmax probabilities (N, classes), host array, of a ten-crop batch (N, 10, C, h, w): the mean
    over each image's crops."""
    n, crops = images.shape[:2]
    logits = model(tinynet.Tensor(images.reshape((n * crops,) + images.shape[2:])))
    return F.softmax(logits, dim=1).numpy().reshape(n, crops, -1).mean(axis=1)


def evaluate(model, loader, description="validation", after_batch=None, group=None, progress=True):
    """``{'loss', 'accuracy', 'correct', 'images'}`` of ``model`` (in eval mode) over ``loader``.

    Ten-crop batches (N, 10, C, h, w) average the softmax.  ``after_batch(number)`` runs after each
    batch (from 1); it may raise :class:`~tinynet.train.Interrupted`.  With a data-parallel
    ``group`` each rank scores its shard and the sums and counts are added up over the ranks.
    """
    from tqdm import tqdm

    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    writer = group is None or group.rank == 0
    try:
        with tinynet.no_grad():
            for number, (images, labels) in enumerate(tqdm(loader, desc=description, leave=False,
                                                           dynamic_ncols=True, disable=not (writer and progress)),
                                                      start=1):
                labels_host = backend.to_numpy(labels)
                if images.ndim == 5:  # ten crops per image
                    probabilities_ = ten_crop_probabilities(model, images)
                    log_probabilities = np.log(np.maximum(probabilities_, 1e-12))
                    total_loss += float(-log_probabilities[np.arange(len(labels_host)), labels_host].sum())
                    predictions = probabilities_.argmax(axis=1)
                else:
                    logits = model(tinynet.Tensor(images))
                    total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
                    predictions = logits.numpy().argmax(axis=1)
                correct += int((predictions == labels_host).sum())
                count += len(labels_host)
                if after_batch is not None:
                    after_batch(number)
    finally:
        model.train()
    if group is not None and group.world_size > 1:
        from .. import distributed as dist
        total_loss, correct, count = dist.all_reduce([total_loss, correct, count], "validation counts").tolist()
        correct, count = int(correct), int(count)
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1), "correct": correct,
            "images": count}


def probabilities(model, loader):
    """``(probabilities (N, classes) float64, labels (N,))`` of ``model`` over ``loader``, in order.

    Centre-crop batches give the softmax, ten-crop batches its mean over the crops.
    """
    outputs, labels = [], []
    model.eval()
    with tinynet.no_grad():
        for images, targets in loader:
            outputs.append(ten_crop_probabilities(model, images) if images.ndim == 5 else
                           F.softmax(model(tinynet.Tensor(images)), dim=1).numpy())
            labels.append(backend.to_numpy(targets))
    return np.concatenate(outputs).astype(np.float64), np.concatenate(labels)


def wilson_interval(correct, count, z=Z_95):
    """Wilson's score interval for a binomial proportion (95 % by default).

    Unlike the normal approximation p +- z sqrt(p(1-p)/n) it stays inside [0, 1] and
    does not collapse to a point at 0 % or 100 %: its ends are the proportions p for
    which |correct/count - p| is exactly z standard errors sqrt(p(1-p)/count).
    """
    if count == 0:
        return 0.0, 1.0
    p = correct / count
    denominator = 1 + z * z / count
    centre = (p + z * z / (2 * count)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count))
    return max(0.0, centre - half), min(1.0, centre + half)


def with_interval(score):
    """``score`` (with 'correct' and 'images') plus ``ci95``: its Wilson interval."""
    low, high = wilson_interval(score["correct"], score["images"])
    return dict(score, ci95=[low, high])


def score_probabilities(probabilities_, labels):
    """Loss, accuracy and interval of class probabilities (N, classes) against labels (N,)."""
    picked = probabilities_[np.arange(len(labels)), labels]
    correct = int((probabilities_.argmax(axis=1) == labels).sum())
    return with_interval({"loss": float(-np.log(np.maximum(picked, 1e-12)).mean()), "correct": correct,
                          "accuracy": correct / max(len(labels), 1), "images": int(len(labels))})


def describe_score(score):
    """``'71.50% (95% Wilson CI 64.9-77.3)'``."""
    low, high = score["ci95"]
    return f"{100 * score['accuracy']:.2f}% (95% Wilson CI {100 * low:.1f}-{100 * high:.1f})"
