"""The degradation experiment of He et al. (2015), Figure 1, on MNIST: plain-20/56 against ResNet-20/56.

    python examples/degradation.py                      # four networks, 800 digits, 4 epochs

"Is learning better networks as easy as stacking more layers?"  He et al. found that a plain
56-layer network has a *higher training error* than a plain 20-layer one -- not overfitting, an
optimisation problem -- and that the same stacks with identity shortcuts (ResNets) do not suffer
from it.  This script trains the four CIFAR-style networks of the registry (``plain20``,
``plain56``, ``resnet20``, ``resnet56``: a 3x3 convolution to 16 channels, three stages of 16, 32
and 64 channels, global average pooling, a linear layer; BatchNorm everywhere) the same way on
MNIST digits padded to 32x32, one input channel:

* the same ``--train-size`` training digits (stratified, seeded) in the same order for every
  network, shifted by up to 2 pixels at random as in lenet_mnist.py, standardised;
* the same initialisation rule (He-normal), SGD with momentum 0.9 and weight decay 1e-4 as in the
  paper, the learning rate ``--lr`` on a half cosine to 0;
* training error: the running error on the mini-batches of each epoch (what the paper plots);
  test error: a fixed stratified ``--test-size`` subset of the 10,000 test digits after each epoch.

``--out`` receives ``metrics.csv`` (model, epoch, training and test error, seconds),
``degradation.png`` (plain nets left, ResNets right; thin dashed lines training error, bold lines
test error, the paper's convention) and ``results.json`` (the end points).

Scale: one 32x32 digit costs 40.3 million multiply-adds forward in plain-20 / ResNet-20 and 125.2
million in the 56-layer nets (``tinynet.summary``), about three times that forward and backward:
some 1 G multiply-adds per training digit and epoch for the four networks together.  Measured on a
2-core AMD EPYC with about one core's worth of other load (2026-12-01): 512 digits, 3 epochs, 300
test digits in 16.6 minutes, about 0.6 s per training digit and epoch, evaluation included.  The default (800
digits, 4 epochs, 500 test digits) aims at about 30 minutes.  That is a tiny version of the paper's
64,000 iterations on CIFAR-10: read the curves as "how fast can each stack be optimised", which is
the paper's question, not as MNIST accuracies.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import tinynet
import tinynet.models as models
from tinynet import optim
from tinynet.data import MNIST, DataLoader, DigitTransform, Subset, input_scaling, stratified_indices
from tinynet.train import Trainer, pyplot, save_figure, write_csv, write_json
from tinynet.train.commands import main_for_mnist

DEFAULT_DATA = os.path.normpath(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist")
DEFAULT_MODELS = ("plain20", "plain56", "resnet20", "resnet56")
METRIC_FIELDS = ["model", "epoch", "train_error", "test_error", "train_loss", "test_loss", "lr", "seconds"]


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description="He et al.'s degradation experiment (Figure 1) on MNIST.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST's four IDX files")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="registry names to train, all the same way")
    parser.add_argument("--train-size", type=int, default=800, help="training digits (stratified subset)")
    parser.add_argument("--test-size", type=int, default=500, help="test digits scored after every epoch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1, help="initial learning rate (the paper's 0.1)")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--shift", type=int, default=2, help="random shifts of up to this many pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/degradation")
    args = parser.parse_args(argv)
    if min(args.train_size, args.test_size, args.epochs, args.batch_size) < 1 or args.lr <= 0:
        parser.error("--train-size, --test-size, --epochs and --batch-size must be >= 1 and --lr > 0")
    return args


class Trainee:
    """One network of the experiment, built from the run's seed, with tinynet's training loop.

    Every network gets its own loader with the run's seed, so all see the same batches in the same
    order with the same shifts; the rate follows a half cosine to 0 over the run.
    """

    def __init__(self, name, args, train_set, test_loader):
        tinynet.manual_seed(args.seed)
        self.name = name
        self.model = models.create(name, num_classes=10, in_channels=1)
        # the layers that keep PyTorch's default initialisation draw it now, from this network's seed,
        # not at their first use (tinynet.nn.init defers it), when the next network has drawn its own
        tinynet.nn.init.draw_pending_defaults()
        optimizer = optim.SGD(self.model.parameters(), lr=args.lr, momentum=args.momentum,
                              weight_decay=args.weight_decay)
        train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=args.seed)
        # test error after each epoch in eval mode (BatchNorm's running statistics); nothing is saved
        self.trainer = Trainer(self.model, optimizer, train_loader, test_loader, epochs=args.epochs,
                               scheduler=optim.CosineAnnealingLR(optimizer, epochs=args.epochs), held_out="test",
                               description=f"{name} ", epoch_message=lambda row: None)
        self.rows = []

    def train_epoch(self):
        """The next epoch; its row (training error: the running error on the epoch's mini-batches)."""
        started = time.perf_counter()
        row = self.trainer.run_epoch()
        row = {"model": self.name, "epoch": row["epoch"], "train_error": 1.0 - row["train_accuracy"],
               "test_error": 1.0 - row["val_accuracy"], "train_loss": row["train_loss"],
               "test_loss": row["val_loss"], "lr": row["lr"], "seconds": time.perf_counter() - started}
        self.rows.append(row)
        return row


def draw(path, history, title):
    plt = pyplot()
    if plt is None:
        return False
    from matplotlib import ticker
    families = [("plain", [m for m in history if not m.startswith("resnet")]),
                ("ResNet", [m for m in history if m.startswith("resnet")])]
    families = [(label, names) for label, names in families if names]
    figure, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4.2), squeeze=False, sharey=True)
    colours = {"20": "C0", "56": "C3"}      # depth -> colour, the same in both panels
    for axis, (label, names) in zip(axes[0], families):
        for name in names:
            rows = history[name]
            epochs = [r["epoch"] for r in rows]
            depth = "".join(ch for ch in name if ch.isdigit())
            colour = colours.setdefault(depth, f"C{len(colours) + 1}")
            axis.plot(epochs, [100 * r["train_error"] for r in rows], "--", color=colour, linewidth=1,
                      label=f"{label}-{depth} training")
            axis.plot(epochs, [100 * r["test_error"] for r in rows], "-", color=colour, linewidth=2.2,
                      label=f"{label}-{depth} test")
        axis.set_xlabel("epoch"), axis.set_ylabel("error (%)"), axis.set_title(f"{label} networks")
        axis.set_yscale("log"), axis.grid(alpha=0.3, which="both"), axis.legend()
        axis.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))     # 50, not 5x10^1
        axis.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
        axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    figure.suptitle(title)
    save_figure(figure, path)
    return True


def run(args):
    started_run = time.perf_counter()
    unknown = [name for name in args.models if name not in models.names()]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; the registry has {models.names()}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.csv"
    if metrics_path.exists():
        metrics_path.unlink()

    train_full, test_full = MNIST(args.data, "train"), MNIST(args.data, "test")
    train_indices = stratified_indices(train_full.targets, count=min(args.train_size, len(train_full)), seed=args.seed)
    test_indices = stratified_indices(test_full.targets, count=min(args.test_size, len(test_full)), seed=args.seed)
    scale, offset = input_scaling("modern", train_full.images[train_indices])
    train_set = Subset(train_full.with_transform(DigitTransform(scale, offset, args.shift)), train_indices)
    test_loader = DataLoader(Subset(test_full.with_transform(DigitTransform(scale, offset, 0)), test_indices),
                             batch_size=500)
    steps = -(-len(train_indices) // args.batch_size)
    print(f"data: {len(train_indices):,} training digits, {len(test_indices):,} test digits; "
          f"{args.epochs} epochs of {steps} steps, batch {args.batch_size}, lr {args.lr:g}")

    history, results, rows = {}, {}, []

    def on_epoch(row):
        history.setdefault(row["model"], []).append(row)
        rows.append(row)
        write_csv(metrics_path, rows, METRIC_FIELDS)
        draw(out / "degradation.png", history, f"Degradation on MNIST ({len(train_indices):,} digits, "
                                                f"{args.epochs} epochs): thin = training, bold = test")
        print(f"{row['model']} epoch {row['epoch']}: training error {100 * row['train_error']:.2f}%, "
              f"test error {100 * row['test_error']:.2f}% ({row['seconds']:.0f} s)")

    # epoch by epoch, every network in turn: a run stopped early still has all four curves
    trainees = [Trainee(name, args, train_set, test_loader) for name in args.models]
    for epoch in range(args.epochs):
        for trainee in trainees:
            on_epoch(trainee.train_epoch())
    for trainee in trainees:
        rows = trainee.rows
        results[trainee.name] = {"parameters": int(trainee.model.num_parameters()),
                                 "final_train_error": rows[-1]["train_error"], "final_test_error": rows[-1]["test_error"],
                                 "seconds": sum(r["seconds"] for r in rows)}
    summary = {"models": results, "train_size": int(len(train_indices)), "test_size": int(len(test_indices)),
               "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
               "wall_seconds": time.perf_counter() - started_run}
    write_json(out / "results.json", summary)
    for name, result in results.items():
        print(f"{name:9s} {result['parameters']:>9,} parameters: final training error "
              f"{100 * result['final_train_error']:.2f}%, test error {100 * result['final_test_error']:.2f}%")
    print(f"{summary['wall_seconds'] / 60:.1f} min in all; plot: {out / 'degradation.png'}")
    return 0


def main(argv=None):
    return main_for_mnist(run, parse_arguments(argv), "degradation.py")


if __name__ == "__main__":
    sys.exit(main())
