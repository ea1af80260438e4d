"""What the training scripts of examples/ share: their figures and their "no data" exit.

``pyplot()`` gives matplotlib's pyplot on the file-only Agg backend, or None when
matplotlib is not installed (the ``[plot]`` extra): a script then trains without
drawing.  ``save_figure(figure, path)`` writes a PNG atomically (a run interrupted
mid-write never leaves a truncated plot).  ``draw_training_curves`` is the loss
and accuracy (or error) per epoch of one run.  ``main_for_mnist`` turns the MNIST
reader's errors into a message and exit code 2.
"""
import os
import sys


def pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(figure, path):
    """Write ``figure`` to ``path`` (a pathlib.Path) through a temporary file and a rename; close it."""
    plt = pyplot()
    figure.tight_layout()
    temporary = path.with_name(".tmp-" + path.name)
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


def main_for_mnist(run, args, no_data_help):
    """``run(args)``, with the MNIST reader's errors (and bad settings) as a message and exit code 2."""
    from tinynet.data import IDXError, MNISTNotFoundError

    try:
        return run(args)
    except MNISTNotFoundError as error:
        print(f"{error}\n\n" + no_data_help.format(where=os.path.abspath(args.data)), file=sys.stderr)
        return 2
    except IDXError as error:
        print(f"error: a damaged MNIST file: {error}", file=sys.stderr)
        return 2
    except ValueError as error:     # e.g. a --val-size that leaves nothing to train on
        print(f"error: {error}", file=sys.stderr)
        return 2
