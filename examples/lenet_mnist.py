"""Train LeNet-5 on MNIST with tinynet, choose the epoch on a held-out split, report the test accuracy once.

    python examples/lenet_mnist.py                       # the modern variant (ReLU, max pooling)
    python examples/lenet_mnist.py --variant classic     # the paper's network (60,000 parameters to F6)

The data are the four original IDX files (``--data``, default ``../shared/data/mnist`` from the
project's root, gzip-compressed or not).  The 60,000 training digits are split once, stratified
by class and seeded, into ``--val-size`` (5,000) held-out digits and the rest (55,000) to train
on.  Every epoch is scored on the held-out digits; the best epoch's weights are kept
(``best.npz``) and only they are scored on the 10,000 test digits, once, at the end -- the test
set chooses nothing.

Input: each 28x28 digit is padded by 2 to the 32x32 the network expects (as the paper did:
"the [input] field ... is significantly larger than the largest character").  Training digits
are shifted by up to ``--shift`` pixels in each direction at random (0 turns it off).  The
classic variant scales pixels as the paper did (background -0.1, ink 1.175); the modern one
standardises them with the training split's mean and standard deviation.  SGD with momentum
0.9 and weight decay 5e-4, the learning rate following a half cosine from its initial value to 0
over the run.  The initial value is chosen on the held-out split too: each ``--lr`` candidate
(0.1, 0.05, 0.02) trains a fresh network for ``--search-epochs`` (1) on ``--search-size``
(10,000) training digits, and the best held-out accuracy wins (a single ``--lr`` skips this).

``--out`` receives ``metrics.csv`` (one row per epoch), ``curves.png``, ``best.npz`` (the model's
registry name and arguments, its weights and the input scaling) and ``results.json``.
"""
import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import tinynet  # its thread settings apply in any import order (tinynet/_threads.py)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tinynet import backend, optim  # noqa: E402
from tinynet.data import (MNIST, DataLoader, Subset,  # noqa: E402
                          stratified_indices)
from tinynet.nn import functional as F  # noqa: E402

import tinynet.models as models
from script_tools import draw_training_curves, main_for_mnist  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.path.normpath(PROJECT_ROOT / ".." / "shared" / "data" / "mnist")
VARIANTS = {"modern": "lenet5", "classic": "lenet5_classic"}
DEFAULT_LRS = (0.1, 0.05, 0.02)
NO_DATA_HELP = """\
No MNIST files found at {where}.

lenet_mnist.py reads the four original MNIST files in IDX format (plain or .gz):
  train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte
Put them in one folder (this project expects ../shared/data/mnist from its root) and point --data at it.
"""


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description="Train LeNet-5 on MNIST with tinynet and report the test accuracy.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST's four IDX files")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="modern",
                        help="modern: full C3, ReLU, max pooling; classic: the paper's partial C3, trainable "
                             "subsampling, scaled tanh")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, nargs="+", default=None,
                        help="initial learning rate; several values: each is tried briefly (--search-epochs on "
                             "--search-size digits) and the held-out split picks one (default: 0.1 0.05 0.02)")
    parser.add_argument("--search-epochs", type=int, default=1, help="epochs per learning-rate candidate")
    parser.add_argument("--search-size", type=int, default=10000, help="training digits per learning-rate trial")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--shift", type=int, default=2, help="random shifts of up to this many pixels (0: none)")
    parser.add_argument("--val-size", type=int, default=5000, help="training digits held out to choose the epoch")
    parser.add_argument("--max-train", type=int, default=None, help="train on a stratified subset (quick runs)")
    parser.add_argument("--workers", type=int, default=0, help="background threads preparing batches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output folder (default runs/lenet_mnist_VARIANT)")
    args = parser.parse_args(argv)
    if args.lr is None:
        args.lr = list(DEFAULT_LRS)
    if args.out is None:
        args.out = f"runs/lenet_mnist_{args.variant}"
    if min(args.epochs, args.batch_size, args.val_size, args.search_epochs, args.search_size) < 1 or args.shift < 0:
        parser.error("--epochs, --batch-size, --val-size, --search-epochs and --search-size must be >= 1, "
                     "--shift >= 0")
    if min(args.lr) <= 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    return args


# ----------------------------------------------------------------------------- input
class DigitTransform:
    """uint8 28x28 digit -> float32 (1, 32, 32): pad by 2, shift at random (training), scale.

    A shift of (dy, dx) moves the digit inside the padded frame; what moves out of the frame is
    lost and what moves in is background, as with a camera that saw the digit elsewhere.  The
    random offsets come from the DataLoader's per-sample generator, so a run is reproducible.
    """

    def __init__(self, scale, offset, max_shift=0):
        self.scale, self.offset, self.max_shift = np.float32(scale), np.float32(offset), int(max_shift)

    def __call__(self, image, rng):
        m = self.max_shift
        frame = np.zeros((32 + 2 * m, 32 + 2 * m), dtype=np.uint8)
        frame[2 + m:30 + m, 2 + m:30 + m] = image
        dy, dx = (rng.integers(-m, m + 1, size=2) if m else (0, 0))
        window = frame[m + dy:m + dy + 32, m + dx:m + dx + 32]
        return (window.astype(np.float32) * self.scale + self.offset)[None]


def input_scaling(variant, train_images):
    """(scale, offset) with x = pixel * scale + offset for the 32x32 padded digit."""
    if variant == "classic":
        # the paper: "the values of the input pixels are normalized so that the background level
        # (white) corresponds to a value of -0.1 and the foreground (black) corresponds to 1.175"
        return 1.275 / 255.0, -0.1
    # mean and std of the padded training digits: the 28x28 sums over the 32x32 frame
    pixels = train_images.astype(np.float64) / 255.0
    count = len(train_images) * 32 * 32
    mean = pixels.sum() / count
    std = math.sqrt((pixels ** 2).sum() / count - mean ** 2)
    return 1.0 / (255.0 * std), -mean / std


# ----------------------------------------------------------------------------- evaluation
def evaluate(model, loader, description):
    from tqdm import tqdm

    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with tinynet.no_grad():
        for images, labels in tqdm(loader, desc=description, leave=False, dynamic_ncols=True):
            logits = model(tinynet.Tensor(images))
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.numpy().argmax(axis=1) == backend.to_numpy(labels)).sum())
            count += len(labels)
    model.train()
    return total_loss / max(count, 1), correct / max(count, 1)


# ----------------------------------------------------------------------------- metrics and plots
METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_second",
                 "epoch_seconds"]


def append_metrics(path, row):
    new = not path.exists()
    with open(path, "a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=METRIC_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in METRIC_FIELDS})


def draw_curves(path, history, title):
    return draw_training_curves(path, history, title, held_out="held out", as_error=True)


# ----------------------------------------------------------------------------- training
def cosine_lr(base, epoch, epochs):
    """Half a cosine from ``base`` (epoch 0) towards 0 (after the last epoch)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def split_training_set(labels, val_size, seed, max_train=None):
    """(train indices, held-out indices), stratified by digit, from the 60,000 training labels."""
    if val_size >= len(labels):
        raise ValueError(f"--val-size {val_size} leaves nothing to train on ({len(labels)} training digits)")
    labels = np.asarray(labels)
    held_out = stratified_indices(labels, count=val_size, seed=seed)
    train = np.setdiff1d(np.arange(len(labels)), held_out)
    if max_train is not None:
        train = train[stratified_indices(labels[train], count=max_train, seed=seed)]
    return train, held_out


def train_epochs(model, train_loader, val_loader, lr, epochs, args, on_epoch=None, description=""):
    """SGD with momentum and a cosine learning rate; returns the per-epoch rows.

    ``on_epoch(row)`` runs after each epoch's held-out evaluation (to save, plot, print).
    """
    from tqdm import tqdm

    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=args.momentum, weight_decay=args.weight_decay)
    history = []
    for epoch in range(epochs):
        epoch_lr = cosine_lr(lr, epoch, epochs)
        optimizer.param_groups[0]["lr"] = epoch_lr
        loss_sum, correct, count = 0.0, 0, 0
        started = time.perf_counter()
        progress = tqdm(train_loader, desc=f"{description}epoch {epoch + 1}/{epochs}", dynamic_ncols=True)
        for images, labels in progress:
            logits = model(tinynet.Tensor(images))
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += int((logits.numpy().argmax(axis=1) == labels).sum())
            count += len(labels)
            seconds = time.perf_counter() - started
            progress.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{100 * correct / count:.2f}%",
                                 img_s=f"{count / max(seconds, 1e-9):.0f}")
        seconds = time.perf_counter() - started
        val_loss, val_accuracy = evaluate(model, val_loader, "held out")
        row = {"epoch": epoch + 1, "train_loss": loss_sum / count, "train_accuracy": correct / count,
               "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": epoch_lr,
               "images_per_second": count / max(seconds, 1e-9), "epoch_seconds": seconds}
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    return history


def choose_learning_rate(args, train_set, train_indices, val_loader):
    """Try each --lr candidate for --search-epochs on --search-size training digits; the held-out
    split picks the one with the best accuracy (ties: the first listed)."""
    if len(args.lr) == 1:
        return args.lr[0], []
    subset = train_indices[stratified_indices(train_set.targets[train_indices],
                                              count=min(args.search_size, len(train_indices)), seed=args.seed)]
    loader = DataLoader(Subset(train_set, subset), batch_size=args.batch_size, shuffle=True, seed=args.seed,
                        num_workers=args.workers)
    trials = []
    for lr in args.lr:
        tinynet.manual_seed(args.seed)          # every candidate starts from the same weights
        model = models.create(VARIANTS[args.variant], num_classes=10)
        rows = train_epochs(model, loader, val_loader, lr, args.search_epochs, args, description=f"lr {lr:g}: ")
        trials.append({"lr": lr, "val_accuracy": rows[-1]["val_accuracy"], "val_loss": rows[-1]["val_loss"]})
        print(f"learning-rate search: lr {lr:g} -> held-out accuracy {100 * rows[-1]['val_accuracy']:.2f}% "
              f"after {args.search_epochs} epoch(s) on {len(subset):,} digits")
    best = max(trials, key=lambda t: (t["val_accuracy"], -t["val_loss"]))
    print(f"learning-rate search: chose lr {best['lr']:g}")
    return best["lr"], trials


def train(args):
    started_run = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.csv", "results.json"):
        if (out / stale).exists():
            (out / stale).unlink()

    plain_train = MNIST(args.data, "train")
    train_indices, val_indices = split_training_set(plain_train.targets, args.val_size, args.seed, args.max_train)
    scale, offset = input_scaling(args.variant, plain_train.images[train_indices])
    train_set = plain_train.with_transform(DigitTransform(scale, offset, args.shift))
    eval_train_set = plain_train.with_transform(DigitTransform(scale, offset, 0))
    train_loader = DataLoader(Subset(train_set, train_indices), batch_size=args.batch_size, shuffle=True,
                              seed=args.seed, num_workers=args.workers)
    val_loader = DataLoader(Subset(eval_train_set, val_indices), batch_size=1000, num_workers=args.workers)
    print(f"data: {len(train_indices):,} training and {len(val_indices):,} held-out digits from {args.data}; "
          f"variant {args.variant}, batch {args.batch_size}, {args.epochs} epochs, shifts of up to {args.shift} px")

    lr, lr_trials = choose_learning_rate(args, train_set, train_indices, val_loader)
    tinynet.manual_seed(args.seed)
    model = models.create(VARIANTS[args.variant], num_classes=10)
    print(f"model: {VARIANTS[args.variant]}, {model.num_parameters():,} trainable parameters; lr {lr:g}")
    config = {"variant": args.variant, "epochs": args.epochs, "batch_size": args.batch_size, "lr": lr,
              "lr_candidates": list(args.lr), "momentum": args.momentum, "weight_decay": args.weight_decay,
              "shift": args.shift, "val_size": int(len(val_indices)), "train_size": int(len(train_indices)),
              "seed": args.seed, "input_scale": float(scale), "input_offset": float(offset)}

    history, best = [], {"val_accuracy": -1.0, "epoch": 0}
    best_path = out / "best.npz"

    def after_epoch(row):
        nonlocal best
        history.append(row)
        append_metrics(out / "metrics.csv", row)
        draw_curves(out / "curves.png", history, f"LeNet-5 ({args.variant}) on MNIST (tinynet)")
        print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.2f}% | "
              f"held-out loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.2f}% | lr {row['lr']:.3g} | "
              f"{row['images_per_second']:.0f} img/s, {row['epoch_seconds']:.0f} s")
        if row["val_accuracy"] > best["val_accuracy"]:
            best = {"val_accuracy": row["val_accuracy"], "epoch": row["epoch"]}
            tinynet.save(dict(models.checkpoint_entries(model), kind="lenet_mnist", config=config,
                              epoch=row["epoch"], val_accuracy=row["val_accuracy"]), best_path)

    train_epochs(model, train_loader, val_loader, lr, args.epochs, args, on_epoch=after_epoch)
    training_seconds = time.perf_counter() - started_run

    # the test digits, once, with the weights the held-out split chose
    state = tinynet.load(best_path)
    best_model = models.model_from_checkpoint(state)
    test_set = MNIST(args.data, "test", transform=DigitTransform(scale, offset, 0))
    test_loss, test_accuracy = evaluate(best_model, DataLoader(test_set, batch_size=1000), "test")
    results = {"variant": args.variant, "model": VARIANTS[args.variant],
               "parameters": int(best_model.num_parameters()), "best_epoch": best["epoch"],
               "val_accuracy": best["val_accuracy"], "test_accuracy": test_accuracy, "test_loss": test_loss,
               "test_images": len(test_set), "epochs": args.epochs,
               "wall_seconds": time.perf_counter() - started_run, "training_seconds": training_seconds,
               "lr_search": lr_trials, "config": config}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"best epoch {best['epoch']} (held-out accuracy {100 * best['val_accuracy']:.2f}%): "
          f"test accuracy {100 * test_accuracy:.2f}% on {len(test_set):,} digits "
          f"({100 * (1 - test_accuracy):.2f}% error); {results['wall_seconds'] / 60:.1f} min in all")
    return 0


def main(argv=None):
    return main_for_mnist(train, parse_arguments(argv), NO_DATA_HELP)


if __name__ == "__main__":
    sys.exit(main())
