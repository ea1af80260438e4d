"""What a run writes besides checkpoints: metrics CSV, results JSON and the curves figure, each
written to a temporary file and renamed, so an interrupted run never leaves a truncated file.

``pyplot()`` gives matplotlib's pyplot on the file-only Agg backend, or None when matplotlib is
not installed (the ``[plot]`` extra): a run then trains without drawing.
"""
import csv
import json
import os
from pathlib import Path

__all__ = ["METRIC_FIELDS", "write_csv", "write_json", "pyplot", "save_figure", "draw_training_curves"]

#: the columns of ``metrics.csv``, one row per epoch (:class:`tinynet.train.Trainer`'s history rows)
METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_second",
                 "epoch_seconds"]


def _temporary(path):
    return path.with_name(".tmp-" + path.name)


def write_csv(path, rows, fields=METRIC_FIELDS):
    """Write ``rows`` (dicts) as a CSV with the columns ``fields``; floats with 6 significant digits.

    The whole file is rewritten from the rows each time: a resumed run, whose history comes from
    its checkpoint, never repeats or loses a row.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    with open(temporary, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in fields})
    os.replace(temporary, path)


def write_json(path, value):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    temporary.write_text(json.dumps(value, indent=2))
    os.replace(temporary, path)


def pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(figure, path):
    """Write ``figure`` to ``path`` as PNG through a temporary file and a rename; close it."""
    plt = pyplot()
    path = Path(path)
    figure.tight_layout()
    temporary = _temporary(path)
    figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
    os.replace(temporary, path)


def draw_training_curves(path, history, title, held_out="validation", as_error=False):
    """Loss (left) and accuracy -- or error on a log scale, ``as_error`` -- (right) per epoch.

    ``history`` rows hold epoch, train_loss, val_loss, train_accuracy, val_accuracy.
    Returns False (and draws nothing) without matplotlib.
    """
    plt = pyplot()
    if plt is None:
        return False
    epochs = [h["epoch"] for h in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    left.plot(epochs, [h["val_loss"] for h in history], "o-", label=held_out)
    left.set_xlabel("epoch"), left.set_ylabel("cross-entropy loss"), left.legend(), left.grid(alpha=0.3)
    if as_error:
        right.plot(epochs, [100 * (1 - h["train_accuracy"]) for h in history], "o-", label="train")
        right.plot(epochs, [100 * (1 - h["val_accuracy"]) for h in history], "o-", label=held_out)
        right.set_yscale("log")
        right.set_ylabel("error (%)"), right.grid(alpha=0.3, which="both")
    else:
        right.plot(epochs, [100 * h["train_accuracy"] for h in history], "o-", label="train")
        right.plot(epochs, [100 * h["val_accuracy"] for h in history], "o-", label=held_out)
        right.set_ylabel("accuracy (%)"), right.grid(alpha=0.3)
    right.set_xlabel("epoch"), right.legend()
    figure.suptitle(title)
    save_figure(figure, path)
    return True
