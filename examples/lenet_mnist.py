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
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import tinynet
import tinynet.models as models
from tinynet import optim
from tinynet.data import MNIST, DataLoader, DigitTransform, Subset, input_scaling, stratified_indices
from tinynet.train import Trainer, evaluate
from tinynet.train.commands import main_for_mnist

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.path.normpath(PROJECT_ROOT / ".." / "shared" / "data" / "mnist")
VARIANTS = {"modern": "lenet5", "classic": "lenet5_classic"}
DEFAULT_LRS = (0.1, 0.05, 0.02)


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


# ----------------------------------------------------------------------------- training
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


def epoch_line(row):
    return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.2f}% | "
            f"held-out loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.2f}% | lr {row['lr']:.3g} | "
            f"{row['images_per_second']:.0f} img/s, {row['epoch_seconds']:.0f} s")


def make_trainer(model, train_loader, val_loader, lr, epochs, args, **options):
    """tinynet's training loop with this recipe: SGD with momentum, the rate on a half cosine to 0."""
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=args.momentum, weight_decay=args.weight_decay)
    options.setdefault("epoch_message", epoch_line)
    return Trainer(model, optimizer, train_loader, val_loader, epochs=epochs,
                   scheduler=optim.CosineAnnealingLR(optimizer, epochs=epochs), held_out="held out",
                   as_error=True, **options)


def choose_learning_rate(args, train_set, train_indices, val_loader):
    """Try each --lr candidate for --search-epochs on --search-size training digits; the held-out
    split picks the one with the best accuracy (ties: the first listed)."""
    if len(args.lr) == 1:
        return args.lr[0], []
    subset = train_indices[stratified_indices(train_set.targets[train_indices],
                                              count=min(args.search_size, len(train_indices)), seed=args.seed)]
    trials = []
    for lr in args.lr:
        tinynet.manual_seed(args.seed)          # every candidate starts from the same weights, sees the same batches
        model = models.create(VARIANTS[args.variant], num_classes=10)
        loader = DataLoader(Subset(train_set, subset), batch_size=args.batch_size, shuffle=True, seed=args.seed,
                            num_workers=args.workers)
        rows = make_trainer(model, loader, val_loader, lr, args.search_epochs, args, description=f"lr {lr:g}: ",
                            epoch_message=lambda row: None).fit()
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
    if (out / "results.json").exists():
        (out / "results.json").unlink()

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

    trainer = make_trainer(model, train_loader, val_loader, lr, args.epochs, args, out=out, save_last=False,
                           title=f"LeNet-5 ({args.variant}) on MNIST (tinynet)",
                           checkpoint_state=lambda: dict(model_config=models.config_of(model), kind="lenet_mnist",
                                                         config=config))
    trainer.fit()
    best = trainer.best
    best_path = trainer.best_path
    training_seconds = time.perf_counter() - started_run

    # the test digits, once, with the weights the held-out split chose
    state = tinynet.load(best_path)
    best_model = models.model_from_checkpoint(state)
    test_set = MNIST(args.data, "test", transform=DigitTransform(scale, offset, 0))
    test = evaluate(best_model, DataLoader(test_set, batch_size=1000), "test")
    test_loss, test_accuracy = test["loss"], test["accuracy"]
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
    return main_for_mnist(train, parse_arguments(argv), "lenet_mnist.py")


if __name__ == "__main__":
    sys.exit(main())
