"""Train and evaluate AlexNet on Kaggle's Dogs vs. Cats photos with tinynet.

    python examples/alexnet_catdog.py --data ../shared/data/catdog/train --image-size 128 --epochs 30 \\
        --test-fraction 0.1

The recipe follows the paper where a 2-core CPU allows it: resize the shorter
side to 256/227 of the crop size, random crops and horizontal flips, "fancy PCA"
colour noise, per-channel normalisation, SGD with momentum 0.9 and weight decay
5e-4, the learning rate divided by 10 when validation accuracy plateaus, and
ten-crop evaluation (four corners + centre, and their mirrors, softmax averaged).

Three splits of the photos, stratified per class and seeded: training; validation
(``--val-fraction``), which picks the best epoch and drives the learning-rate
schedule; and, with ``--test-fraction``, a test split that nothing during training
looks at.  It is scored once at the end with the best checkpoint, and its accuracy
(with a 95 % Wilson confidence interval) is the run's headline figure: the
validation accuracy of the best epoch is optimistic, since that epoch was chosen
on those same images.

Everything a run produces lands in ``--out``: ``metrics.csv`` (one row per
epoch), ``curves.png`` (redrawn every epoch), ``results.json`` (the final scores),
and two pickle-free checkpoints: ``best.npz`` holds what evaluation and prediction
need (the weights, the model's name and arguments, classes, colour statistics and
the split), ``last.npz`` holds everything an exact ``--resume`` needs (also the
momentum, the schedule, the data position and the random generators' states), so
it is about twice the size.  Ctrl-C saves ``last.npz`` at the next batch boundary
and exits; ``--resume`` continues from there, bit for bit.

Flags are checked before any work starts (exit code 2, argparse-style message),
and so are the data (at least two classes, every class in every split) and the
crop size (tried on the model: the smallest size its layers accept).  A
non-finite training loss stops the run at once, without writing a checkpoint
(exit code 1).  ``--resume`` takes its configuration from last.npz and reports
each flag typed with another value: the learning rate, momentum, weight decay and
patience change from there on, ``--init`` is ignored, and what would make the
continuation wrong (crop size, batch size, seed, split fractions, model options,
other photos) is refused.

Data-parallel (tinynet.distributed, ``pip install -e ".[mpi]"``)::

    mpiexec -n 2 python examples/alexnet_catdog.py --distributed --data ... --batch-size 64

``--batch-size`` stays the global batch (each of N ranks takes batch/N of every step, so the
steps are those of one process with that batch); rank 0 alone prints, draws and writes, the
validation and test photos are split over the ranks and their counts added up.  ``--resume``
works with another number of processes: the global batch, learning rate, schedule and data
position carry over (per-rank batch = batch / N); the generators are rank 0's.  Checkpoints
and photos must be at the same paths on every machine (a shared folder).

``--eval-only --checkpoint OUT/best.npz`` scores the checkpoint on its own
validation and test splits; ``--eval-only --checkpoint ... --data FOLDER --all``
scores every photo of another labelled folder (a class of the model may be absent).

Other networks, same loop: ``--model NAME`` trains any network of the course's
registry (examples/models: vgg_a ... vgg19, googlenet, resnet18 ... resnet152, ...),
``--model-option KEY=VALUE`` passes its constructor options, and the checkpoint
records both.  Several checkpoints after ``--checkpoint`` make an ensemble: their
softmax outputs are averaged, in ``--eval-only`` (each member and the ensemble
scored on the same photos) and in ``--predict``::

    python examples/alexnet_catdog.py --model resnet18 --image-size 128 --batch-size 32 --lr 0.02 \
        --test-fraction 0.1 --out runs/resnet18
    python examples/alexnet_catdog.py --eval-only --checkpoint runs/alexnet_catdog/best.npz runs/resnet18/best.npz
"""
import argparse
import csv
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import tinynet  # before NumPy: it sets OpenBLAS's thread spin, read when NumPy loads it
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tinynet import backend, optim  # noqa: E402
from tinynet import distributed as dist  # noqa: E402
from tinynet.data import DistributedDataLoader  # noqa: E402
from tinynet.data import DataLoader, ImageFolder, NoImagesError, Subset, train_val_test_split  # noqa: E402
from tinynet.data import transforms as T  # noqa: E402
from tinynet.nn import functional as F  # noqa: E402

import tinynet.models as models
from script_tools import draw_training_curves  # noqa: E402

DEFAULT_DATA = "data/catdog/train"
NO_DATA_HELP = """\
No training images found at {where}.

tinynet trains on Kaggle's "Dogs vs. Cats" photos (cat.0.jpg ... dog.12499.jpg):
  1. download train.zip from https://www.kaggle.com/c/dogs-vs-cats/data
     (or with the Kaggle CLI: kaggle competitions download -c dogs-vs-cats)
  2. unzip it so the photos sit in {default}/  (cat.0.jpg, dog.0.jpg, ...)
  3. run again, or point --data (or $TINYNET_DATA) at the folder holding the photos.
One folder per class (train/cat/*.jpg, train/dog/*.jpg) works too.
"""

CHECKPOINT_KIND = "alexnet_catdog"
CHECKPOINT_VERSION = 2          # 2: model_config, three splits, "position"; best.npz without optimizer state
EXIT_DIVERGED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
Z_95 = 1.959963984540054        # the standard normal's 97.5 % quantile


class UsageError(Exception):
    """Flags or data that cannot make a meaningful run; reported argparse-style with exit code 2."""


class Interrupted(Exception):
    """Ctrl-C (or --stop-at) seen at a batch boundary."""


class Diverged(Exception):
    """The training loss or the weights stopped being finite."""


# ----------------------------------------------------------------------------- arguments
def _number(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse ``type`` that checks a range, so a bad value gets argparse's own message."""
    what = "an integer" if kind is int else "a number"

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
            right = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
            raise argparse.ArgumentTypeError(f"must be {' and '.join(x for x in (left, right) if x)}, got {text}")
        return value
    return convert


def _stop_point(text):
    """``train:E:B`` or ``val:E:B`` (1-based epoch and batch) -> ``(stage, epoch, batch)``."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("train", "val") or not all(p.isdigit() and int(p) >= 1
                                                                       for p in parts[1:]):
        raise argparse.ArgumentTypeError(f"expected train:EPOCH:BATCH or val:EPOCH:BATCH (from 1), got {text!r}")
    return parts[0], int(parts[1]), int(parts[2])


def _model_option(text):
    """``KEY=VALUE`` -> ``(key, value)``; the value is read as JSON (3, 0.5, true, null, [1, 2]) or kept as text."""
    key, equals, value = text.partition("=")
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. batch_norm=true), got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="alexnet_catdog.py",
        description="Train and evaluate AlexNet (or another network of examples/models, --model) on Kaggle "
                    "Dogs vs. Cats with tinynet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--data", default=os.environ.get("TINYNET_DATA", DEFAULT_DATA),
        help="folder of labelled photos (Kaggle's flat train/ layout or one folder per class); "
             "default $TINYNET_DATA or data/catdog/train; with --resume or --eval-only: the checkpoint's")
    add("--epochs", type=_number(int, 1), default=30, help="epochs to train (in total, when resuming)")
    add("--batch-size", type=_number(int, 1), default=128, help="images per SGD step (the paper: 128)")
    add("--lr", type=_number(float, 0, low_open=True), default=0.01, help="initial learning rate")
    add("--momentum", type=_number(float, 0, 1, high_open=True), default=0.9)
    add("--weight-decay", type=_number(float, 0), default=5e-4)
    add("--image-size", type=_number(int, 1), default=227,
        help="crop size fed to the network (227 as in the paper; 128 trains ~3x faster on a CPU); "
             "the smallest size is what the model's layers accept (AlexNet: 67)")
    add("--val-fraction", type=_number(float, 0, 1, True, True), default=0.1,
        help="share of each class held out for validation (picks the best epoch, drives the schedule)")
    add("--test-fraction", type=_number(float, 0, 1, high_open=True), default=0.0,
        help="share of each class held out as a test split, scored once at the end (0: none)")
    add("--max-images", type=_number(int, 2), default=None, help="use a stratified subset of N images (quick runs)")
    add("--workers", type=_number(int, 0), default=2, help="background threads decoding JPEGs")
    add("--device", choices=["cpu", "gpu"], default="cpu")
    add("--seed", type=_number(int, 0), default=0)
    add("--out", default="runs/alexnet_catdog", help="folder for checkpoints, metrics and plots")
    add("--resume", action="store_true", help="continue from OUT/last.npz")
    add("--eval-only", action="store_true",
        help="score --checkpoint on its validation and test splits (centre crop and ten-crop)")
    add("--all", action="store_true", help="with --eval-only: score every photo in --data (a separate labelled folder)")
    add("--checkpoint", nargs="+", default=None, metavar="NPZ",
        help="checkpoint(s) for --eval-only / --predict; several make an ensemble (their softmax averaged)")
    add("--predict", nargs="+", metavar="IMAGE", help="print class probabilities for these photos")
    add("--model", default="alexnet", choices=models.names(), metavar="NAME",
        help="the network to train, from examples/models: " + ", ".join(models.names()))
    add("--model-option", type=_model_option, action="append", default=[], metavar="KEY=VALUE",
        help="a constructor option of --model, repeatable (e.g. batch_norm=true for VGG, "
             "zero_init_residual=true for ResNet); a checkpoint records them")
    add("--init", choices=["paper", "kaiming"], default="kaiming",
        help="weight initialisation: the paper's N(0, 0.01) or He-normal (trains faster from scratch)")
    add("--patience", type=_number(int, 0), default=3,
        help="epochs without validation improvement before the learning rate is divided by 10")
    add("--dropout", type=_number(float, 0, 1, high_open=True), default=0.5,
        help="dropout probability (models with a dropout option: AlexNet, VGG, GoogLeNet)")
    add("--groups", type=int, choices=[1, 2], default=1, help="AlexNet: 2 is the paper's two-GPU split")
    add("--no-lrn", action="store_true", help="AlexNet: leave out local response normalisation")
    add("--no-ten-crop", action="store_true", help="skip the ten-crop evaluation at the end")
    add("--distributed", action="store_true",
        help="data-parallel training as one rank of an MPI job: mpiexec -n N python alexnet_catdog.py "
             "--distributed ... (without mpiexec: one process)")
    add("--stop-at", type=_stop_point, default=None, metavar="STAGE:EPOCH:BATCH",
        help="for tests: act as if Ctrl-C were pressed after that batch of training (train:E:B) or "
             "validation (val:E:B)")
    return parser


_NOT_GIVEN = object()


def parse_arguments(argv=None, parser=None):
    """The flags, plus ``args.given``: the names of those the user typed (not left at their default).

    ``--resume`` needs the difference: a flag left out means "as before", a flag typed with
    another value than the checkpoint's is a change to report.
    """
    parser = parser or build_parser()
    defaults = vars(parser.parse_args([]))
    # a repeatable flag (action="append") extends its default list: given when the list grew
    repeatable = {k for k, v in defaults.items() if isinstance(v, list)}
    marked = parser.parse_args(argv, namespace=argparse.Namespace(
        **{k: ([] if k in repeatable else _NOT_GIVEN) for k in defaults}))
    given = {k for k, v in vars(marked).items() if (v != [] if k in repeatable else v is not _NOT_GIVEN)}
    args = parser.parse_args(argv)
    args.given = given
    return args


def check_arguments(args):
    """Checks across flags and on paths, before anything is loaded (each raises UsageError)."""
    if args.val_fraction + args.test_fraction >= 1:
        raise UsageError(f"--val-fraction {args.val_fraction:g} and --test-fraction {args.test_fraction:g} "
                         f"leave no training images (their sum must be < 1)")
    if (args.eval_only or args.predict) and not args.checkpoint:
        raise UsageError("--eval-only and --predict need --checkpoint PATH (e.g. runs/alexnet_catdog/best.npz)")
    if args.distributed and (args.eval_only or args.predict):
        raise UsageError("--distributed applies to training only (--eval-only and --predict run in one process)")
    if args.all and not args.eval_only:
        raise UsageError("--all only applies to --eval-only (score every photo of --data)")
    if args.all and "data" not in args.given:
        raise UsageError("--all needs --data FOLDER: the labelled photos to score")
    if args.eval_only and "data" in args.given and not os.path.isdir(args.data):
        raise UsageError(f"--data {args.data}: no such folder")
    if args.eval_only and args.predict:
        raise UsageError("choose one of --eval-only and --predict")
    for photo in args.predict or []:
        if not os.path.isfile(photo):
            raise UsageError(f"--predict {photo}: no such file")
    for checkpoint in (args.checkpoint or []) if (args.eval_only or args.predict) else []:
        if not os.path.isfile(checkpoint):
            raise UsageError(f"--checkpoint {checkpoint}: no such file")
    if args.resume and (args.eval_only or args.predict):
        raise UsageError("--resume continues training; it does not combine with --eval-only or --predict")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} is a file; give a folder")
    if args.resume and not os.path.isfile(os.path.join(args.out, "last.npz")):
        raise UsageError(f"--resume: no checkpoint at {os.path.join(args.out, 'last.npz')} "
                         f"(start without --resume, or give the --out of the run to continue)")
    if args.device == "gpu" and not tinynet.gpu_available():
        raise UsageError("--device gpu: no usable GPU (CuPy with a CUDA device); install the [gpu] extra "
                         "or use --device cpu")


# ----------------------------------------------------------------------------- the model
# Flags of this script that are constructor options of some networks: (flag dest, option, value).
# A network gets those of its constructor's options; typing one it does not have is an error.
MODEL_FLAGS = [("groups", "groups", lambda a: a.groups), ("no_lrn", "lrn", lambda a: not a.no_lrn),
               ("dropout", "dropout", lambda a: a.dropout), ("init", "init", lambda a: a.init)]


def model_config_from_args(args, num_classes):
    """The network this run trains: registry name, number of classes and constructor options.

    A checkpoint stores this dict (``models.config_of``'s form), so every script rebuilds
    the network from the checkpoint alone.
    """
    accepted = models.accepted_options(args.model)      # None: the factory takes any keyword
    options = {}
    for dest, option, value_of in MODEL_FLAGS:
        if accepted is None or option in accepted:
            options[option] = value_of(args)
        elif dest in args.given:
            raise UsageError(f"{_flag(dest)} does not apply to --model {args.model} (its options: "
                             f"{', '.join(sorted(accepted)) or 'none'}; give them with --model-option KEY=VALUE)")
    options.update(dict(args.model_option))
    return {"name": args.model, "num_classes": int(num_classes), "options": options}


def build_model(model_config):
    """The network of ``model_config`` (fresh weights); a bad name or option is a usage error."""
    try:
        return models.from_config(model_config)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--model {model_config.get('name')}: {error}") from None


def training_loss(model, outputs, labels):
    """``(loss, logits)``.  A network with auxiliary heads (GoogLeNet) returns several outputs in
    training mode and defines ``model.loss(outputs, labels)`` to weigh them; the first is the logits."""
    logits = outputs[0] if isinstance(outputs, tuple) else outputs
    loss_of = getattr(model, "loss", None)
    return (loss_of(outputs, labels) if callable(loss_of) else F.cross_entropy(logits, labels)), logits


def _forward_error(model, size, device):
    """None if ``model`` runs on a (1, 3, size, size) input, else the ValueError its layers raise."""
    try:
        with tinynet.no_grad():
            model(tinynet.tensor(np.zeros((1, 3, size, size), np.float32), device=device))
        return None
    except ValueError as error:  # a layer's geometry check: kernel larger than its input, ...
        return error


def smallest_input_size(model, device="cpu", start=1, limit=4096):
    """The smallest square crop ``model`` accepts, found by running its forward pass.

    Nothing about the architecture is assumed except that a size that works keeps
    working when it grows (true of convolution and pooling stacks that end in an
    adaptive pool): doubling finds a size that works, bisection the smallest one.
    Returns None when nothing up to ``limit`` works.
    """
    was_training = model.training
    model.eval()  # no dropout draws, no batch-statistics updates
    try:
        if _forward_error(model, start, device) is None:
            return start
        low, high = start, max(2 * start, 2)
        while _forward_error(model, high, device) is not None:
            low, high = high, 2 * high
            if high > limit:
                return None
        while high - low > 1:  # low fails, high works
            middle = (low + high) // 2
            low, high = (low, middle) if _forward_error(model, middle, device) is None else (middle, high)
        return high
    finally:
        model.train(was_training)


def check_image_size(model, model_config, image_size, device):
    error = _forward_error(model, image_size, device)
    if error is None:
        return
    smallest = smallest_input_size(model, device, start=image_size)
    accepts = f"accepts crops of at least {smallest} px" if smallest else "accepts no square crop up to 4096 px"
    raise UsageError(f"argument --image-size: {image_size} px is too small: {model_config['name']} {accepts} "
                     f"({image_size} px fails in the model: {error})")


def all_finite(model):
    """No NaN or infinity in the weights (checked on host copies, as a checkpoint write makes anyway)."""
    return all(bool(np.isfinite(backend.to_numpy(parameter.data)).all()) for parameter in model.parameters())


# ----------------------------------------------------------------------------- data
def resize_size(image_size):
    """The paper resizes to 256 and crops 227; keep that ratio for other crop sizes."""
    return int(round(image_size * 256 / 227))


def make_transforms(image_size, statistics):
    normalize = T.Normalize(statistics["mean"], statistics["std"])
    train = T.Compose([T.Resize(resize_size(image_size)), T.RandomCrop(image_size), T.RandomHorizontalFlip(),
                       T.ToArray(), T.PCAColorAugmentation(statistics["eigenvalues"], statistics["eigenvectors"]),
                       normalize])
    centre = T.Compose([T.Resize(resize_size(image_size)), T.CenterCrop(image_size), T.ToArray(), normalize])
    ten_crop = T.Compose([T.Resize(resize_size(image_size)), T.ToArray(), normalize, T.TenCrop(image_size)])
    return train, centre, ten_crop


def open_folder(path, transform=None, max_images=None, seed=0, classes=None):
    return ImageFolder(path, transform=transform, max_images=max_images, seed=seed, classes=classes,
                       allow_missing_classes=classes is not None)


def class_counts(folder, indices):
    return np.bincount(np.asarray(folder.targets, np.int64)[np.asarray(indices, np.int64)],
                       minlength=len(folder.classes))


def make_split(folder, config):
    """The seeded stratified split, after checking that it can mean something."""
    totals = class_counts(folder, np.arange(len(folder)))
    found = ", ".join(f"{name}: {count}" for name, count in zip(folder.classes, totals))
    subset = f" (--max-images {config['max_images']})" if config["max_images"] else ""
    if len(folder.classes) < 2:
        raise UsageError(f"--data {folder.root}: found photos of one class only ({found}){subset}; a classifier "
                         f"needs at least two classes (cat.*.jpg and dog.*.jpg, or one sub-folder per class)")
    train, val, test = train_val_test_split(folder, config["val_fraction"], config["test_fraction"], config["seed"])
    parts = [("training", train, None), ("validation", val, "--val-fraction"), ("test", test, "--test-fraction")]
    for part, indices, flag in parts:
        if part == "test" and not config["test_fraction"]:
            continue
        empty = [name for name, count in zip(folder.classes, class_counts(folder, indices)) if count == 0]
        if empty:
            advice = (f"use more photos or a larger {flag} (now {config[flag[2:].replace('-', '_')]:g})" if flag
                      else "use more photos or smaller --val-fraction / --test-fraction")
            raise UsageError(f"the {part} split would have no image of class {', '.join(map(repr, empty))}: found "
                             f"{len(folder)} photos ({found}){subset}; every class needs at least one "
                             f"{part} image - {advice}")
    return {"train": train, "val": val, "test": test}


# ----------------------------------------------------------------------------- scoring
def ten_crop_probabilities(model, images):
    """Softmax probabilities (N, classes), host array, of a ten-crop batch (N, 10, C, h, w): the mean
    over each image's crops."""
    n, crops = images.shape[:2]
    logits = model(tinynet.Tensor(images.reshape((n * crops,) + images.shape[2:])))
    return F.softmax(logits, dim=1).numpy().reshape(n, crops, -1).mean(axis=1)


def evaluate(model, loader, description="validation", after_batch=None):
    """``{'loss', 'accuracy', 'correct', 'images'}``; ten-crop batches (N, 10, C, h, w) average the softmax.

    ``after_batch(number)`` runs after each batch (1-based); it may raise Interrupted.
    """
    from tqdm import tqdm

    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        with tinynet.no_grad():
            for number, (images, labels) in enumerate(tqdm(loader, desc=description, leave=False,
                                                           dynamic_ncols=True, disable=not _is_writer()),
                                                      start=1):
                labels_host = backend.to_numpy(labels)
                if images.ndim == 5:  # ten crops per image
                    probabilities = ten_crop_probabilities(model, images)
                    log_probabilities = np.log(np.maximum(probabilities, 1e-12))
                    total_loss += float(-log_probabilities[np.arange(len(labels_host)), labels_host].sum())
                    predictions = probabilities.argmax(axis=1)
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
    if _DATA_PARALLEL is not None:  # each rank scored its shard: add up the sums and counts
        total_loss, correct, count = dist.all_reduce([total_loss, correct, count], "validation counts").tolist()
        correct, count = int(correct), int(count)
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1), "correct": correct,
            "images": count}


# the process group of a --distributed run with more than one rank (None otherwise)
_DATA_PARALLEL = None


def _is_writer():
    return _DATA_PARALLEL is None or _DATA_PARALLEL.rank == 0


def make_loader(dataset, batch_size, shuffle=False, **options):
    """A DataLoader; in a data-parallel run this rank's shard of the same order.

    Training (``shuffle``) shards batch by batch, batch_size / N per rank; evaluation
    shards without padding, so that each photo is counted exactly once.
    """
    group = _DATA_PARALLEL
    if group is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **options)
    if shuffle:
        return DistributedDataLoader(dataset, batch_size // group.world_size, shuffle=True, **options)
    return DistributedDataLoader(dataset, batch_size, even=False, **options)


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
    low, high = wilson_interval(score["correct"], score["images"])
    return dict(score, ci95=[low, high])


def describe(score):
    low, high = score["ci95"]
    return f"{100 * score['accuracy']:.2f}% (95% Wilson CI {100 * low:.1f}-{100 * high:.1f})"


def scoring_loader(folder_path, indices, config, statistics, classes, crop, device, workers, batch_size=None):
    """Batches of centre crops, or of ten crops (``crop='ten_crop'``, batch/8 images of 10 crops each), of
    the photos ``indices`` (None: all) of ``folder_path``, in that order, with the run's crop size and colour
    statistics."""
    _, centre, ten = make_transforms(config["image_size"], statistics)
    batch_size = batch_size or config["batch_size"]
    transform, size = (centre, batch_size) if crop == "centre_crop" else (ten, max(1, batch_size // 8))
    folder = open_folder(folder_path, transform, config["max_images"], config["seed"], classes)
    dataset = folder if indices is None else Subset(folder, indices)
    return make_loader(dataset, size, seed=config["seed"], num_workers=workers, device=device)


def score_split(model, folder_path, indices, config, statistics, classes, device, workers, ten_crop=True,
                batch_size=None):
    """Centre-crop (and ten-crop) scores of ``model`` on the photos ``indices`` of ``folder_path``."""
    crops = ("centre_crop", "ten_crop") if ten_crop else ("centre_crop",)
    return {crop: with_interval(evaluate(model, scoring_loader(folder_path, indices, config, statistics, classes,
                                                               crop, device, workers, batch_size),
                                         crop.replace("_", " ")))
            for crop in crops}


# ----------------------------------------------------------------------------- checkpoints
def load_model(path, device):
    """``(model, state)`` from a checkpoint of this script (best.npz or last.npz)."""
    state = tinynet.load(path)
    if state.get("kind") != CHECKPOINT_KIND:
        raise tinynet.CheckpointError(f"{path} is a tinynet checkpoint but not one written by alexnet_catdog.py")
    if state.get("version") != CHECKPOINT_VERSION:
        raise tinynet.CheckpointError(f"{path} was written by an older alexnet_catdog.py (checkpoint version "
                                      f"{state.get('version', 1)}, this script reads {CHECKPOINT_VERSION}); "
                                      f"retrain, or use the script of that version")
    model = build_model(state["model_config"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def megabytes(path):
    return os.path.getsize(path) / 1e6


# ----------------------------------------------------------------------------- resuming
# What --resume does with a flag typed with another value than the checkpoint's configuration.
# (flag, config key, value for the config, policy, why it cannot change)
REFUSE, APPLY, IGNORE = "refuse", "apply", "ignore"
RESUME_RULES = [
    ("image_size", "image_size", lambda a: a.image_size, REFUSE,
     "the network and its colour statistics were trained on crops of that size"),
    ("batch_size", "batch_size", lambda a: a.batch_size, REFUSE, "the saved data position counts batches of that size"),
    ("seed", "seed", lambda a: a.seed, REFUSE, "the seed fixes the split and the data order"),
    ("val_fraction", "val_fraction", lambda a: a.val_fraction, REFUSE,
     "it would change the split (test or validation photos would leak into training)"),
    ("test_fraction", "test_fraction", lambda a: a.test_fraction, REFUSE,
     "it would change the split (test or validation photos would leak into training)"),
    ("max_images", "max_images", lambda a: a.max_images, REFUSE, "it would change which photos are used"),
    ("lr", "lr", lambda a: a.lr, APPLY, None),
    ("momentum", "momentum", lambda a: a.momentum, APPLY, None),
    ("weight_decay", "weight_decay", lambda a: a.weight_decay, APPLY, None),
    ("patience", "patience", lambda a: a.patience, APPLY, None),
    ("init", "init", lambda a: a.init, IGNORE, None),
]


def _flag(dest):
    return "--" + dest.replace("_", "-")


def model_changes(args, model_config):
    """What the typed model flags would change in the checkpoint's network (each a refusal)."""
    changes = []
    if "model" in args.given and args.model != model_config["name"]:
        changes.append(f"--model {args.model} differs from the checkpoint's {model_config['name']}")
    saved = model_config["options"]
    typed = [(dest, option, value_of(args)) for dest, option, value_of in MODEL_FLAGS
             if dest in args.given and dest != "init"]       # --init only matters for a new run
    typed += [("model_option", key, value) for key, value in args.model_option]
    for dest, option, value in typed:
        if saved.get(option, _NOT_GIVEN) != value:
            shown = "--no-lrn" if dest == "no_lrn" else (f"--model-option {option}={json.dumps(value)}"
                                                         if dest == "model_option" else f"{_flag(dest)} {value}")
            was = saved[option] if option in saved else "not set"
            changes.append(f"{shown} differs from the checkpoint's {option} = {was}")
    return [f"{change}: it changes the model" for change in changes]


def reconcile_resume_config(args, saved, model_config):
    """The configuration to continue with, and the notes to print; UsageError where it would be wrong."""
    config, notes, refusals = dict(saved), [], model_changes(args, model_config)
    for dest, key, value_of, policy, why in RESUME_RULES:
        if dest not in args.given:
            continue
        value = value_of(args)
        if value == saved[key]:
            continue
        shown = f"{_flag(dest)} {value}" if dest != "no_lrn" else "--no-lrn"
        if policy == REFUSE:
            refusals.append(f"{shown} differs from the checkpoint's {key} = {saved[key]}: {why}")
        elif policy == APPLY:
            notes.append(f"{shown} differs from the checkpoint's {saved[key]}: using {value} from here on "
                         f"(no longer an exact continuation)")
            config[key] = value
        else:
            notes.append(f"{shown} differs from the checkpoint's {saved[key]}: ignored, the weights come "
                         f"from the checkpoint (--{dest} only matters for a new run)")
    if refusals:
        raise UsageError("--resume: " + "; ".join(refusals) + ". Leave these flags out to continue with the "
                         "checkpoint's values, or start a new run with another --out")
    return config, notes


# ----------------------------------------------------------------------------- one training run
class RunFiles:
    """Everything a run writes or prints besides the progress bars: the rank-0 side effects.

    A data-parallel run gives the other ranks ``RunFiles(out, writer=False)``: they train the
    same way but stay silent and write nothing.
    """

    def __init__(self, out, writer=True):
        self.out, self.writer = Path(out), writer
        self.last, self.best = self.out / "last.npz", self.out / "best.npz"

    def say(self, message, error=False):
        if self.writer:
            print(message, file=sys.stderr if error else sys.stdout, flush=True)

    def save(self, path, state):
        if self.writer:
            tinynet.save(state, path)
        if _DATA_PARALLEL is not None:
            dist.barrier(f"barrier after writing {path}")

    def write_metrics(self, history, title="Dogs vs. Cats (tinynet)"):
        """metrics.csv rewritten from the checkpoint's history: a resumed run never repeats a row."""
        if not self.writer:
            return
        path, temporary = self.out / "metrics.csv", self.out / ".tmp-metrics.csv"
        self.out.mkdir(parents=True, exist_ok=True)  # (tinynet.save makes it for the checkpoints)
        with open(temporary, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=METRIC_FIELDS)
            writer.writeheader()
            for row in history:
                writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                                 for k in METRIC_FIELDS})
        os.replace(temporary, path)
        draw_curves(self.out / "curves.png", history, title)

    def write_results(self, results):
        if self.writer:
            self.out.mkdir(parents=True, exist_ok=True)
            temporary = self.out / ".tmp-results.json"
            temporary.write_text(json.dumps(results, indent=2))
            os.replace(temporary, self.out / "results.json")


METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_second",
                 "epoch_seconds"]


def draw_curves(path, history, title="Dogs vs. Cats (tinynet)"):
    return draw_training_curves(path, history, title)


def _fresh_running():
    return {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}


class TrainingRun:
    """The state of one run and the steps of its loop.

    Where the run stands is ``epoch`` (0-based, the epoch in progress) and ``stage``:
    ``'train'`` (the loader's state says how many batches of it are done) or
    ``'validate'`` (its training pass is complete; validation and the end-of-epoch
    bookkeeping are not).  Both go into last.npz, so a stop at any batch boundary --
    including right after an epoch's last batch, where the loader already points at
    the next epoch -- resumes at exactly that point.
    """

    def __init__(self, args, config, model, model_config, folder, split, statistics, files, resume_state=None):
        self.args, self.config, self.model_config, self.files = args, config, model_config, files
        self.classes, self.split, self.statistics = list(folder.classes), split, statistics
        self.devices = sorted({"cpu", backend.normalize_device(args.device)})
        self.model = model.to(args.device).train()
        self.optimizer = optim.SGD(self.model.parameters(), lr=config["lr"], momentum=config["momentum"],
                                   weight_decay=config["weight_decay"])
        self.scheduler = optim.ReduceLROnPlateau(self.optimizer, mode="max", factor=0.1,
                                                 patience=config["patience"])
        train_transform, centre, _ = make_transforms(config["image_size"], statistics)
        self.train_folder = open_folder(config["data"], train_transform, config["max_images"], config["seed"])
        self.val_folder = open_folder(config["data"], centre, config["max_images"], config["seed"])
        self.train_loader = make_loader(Subset(self.train_folder, split["train"]), config["batch_size"],
                                        shuffle=True, seed=config["seed"], num_workers=args.workers,
                                        device=args.device)
        self.val_loader = make_loader(Subset(self.val_folder, split["val"]), config["batch_size"],
                                      seed=config["seed"], num_workers=args.workers, device=args.device)
        self.epoch, self.stage, self.history = 0, "train", []
        self.running = _fresh_running()
        self.best = {"epoch": 0, "val_accuracy": -1.0}
        if resume_state is not None:
            self._restore(resume_state)
        # data parallel: rank 0's weights everywhere, gradients averaged over the ranks in backward
        self.network = self.model if _DATA_PARALLEL is None else dist.DistributedDataParallel(self.model)

    # -- checkpoints
    def _restore(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.train_loader.load_state_dict(state["loader"])
        for device in self.devices:  # a run resumed on the CPU leaves a saved GPU state alone
            if device in state["generators"]:
                backend.generator(device).set_state(state["generators"][device])
        self.epoch, self.stage = int(state["position"]["epoch"]), state["position"]["stage"]
        self.history, self.running = list(state["history"]), dict(state["running"])
        self.best = dict(state["best"])
        # flags that --resume applies (reconcile_resume_config) override the saved hyper-parameters
        for group in self.optimizer.param_groups:
            for key in ("momentum", "weight_decay"):
                group[key] = self.config[key]
            if self.config["lr"] != state["config"]["lr"]:
                group["lr"] = self.config["lr"]
        self.scheduler.patience = self.config["patience"]

    def _common_state(self):
        """What evaluation and prediction need: best.npz holds this and nothing else."""
        return {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "model_config": self.model_config,
                "model": self.model.state_dict(), "config": self.config, "classes": self.classes,
                "statistics": self.statistics, "split": self.split}

    def save_best(self):
        state = dict(self._common_state(), epoch=self.best["epoch"], val_accuracy=self.best["val_accuracy"])
        self.files.save(self.files.best, state)

    def save_last(self):
        """Everything an exact --resume needs (about twice best.npz: the momentum buffers)."""
        if not all_finite(self.model):
            raise Diverged(f"epoch {self.epoch + 1}: the weights are no longer finite")
        state = dict(self._common_state(), optimizer=self.optimizer.state_dict(),
                     scheduler=self.scheduler.state_dict(), loader=self.train_loader.state_dict(),
                     generators={d: backend.generator(d).get_state() for d in self.devices},
                     position={"epoch": self.epoch, "stage": self.stage}, running=self.running,
                     history=self.history, best=self.best)
        self.files.save(self.files.last, state)

    # -- the loop
    def train_epoch(self, stop):
        """One pass over the training split (from where a resumed run left off)."""
        from tqdm import tqdm

        loader, epoch = self.train_loader, self.epoch
        if loader.state_dict()["epoch"] != epoch:
            raise tinynet.CheckpointError(f"inconsistent checkpoint: position epoch {epoch + 1}, "
                                          f"data loader epoch {loader.state_dict()['epoch'] + 1}")
        done = loader.state_dict()["batch"]
        batches = iter(loader)
        progress = tqdm(batches, desc=f"epoch {epoch + 1}/{self.args.epochs}", dynamic_ncols=True,
                        initial=done, total=len(loader), disable=not self.files.writer)
        started = time.perf_counter()
        try:
            for images, labels in progress:
                loss, logits = training_loss(self.model, self.network(tinynet.Tensor(images)), labels)
                loss_value = loss.item()
                batch_correct = int((logits.numpy().argmax(axis=1) == backend.to_numpy(labels)).sum())
                batch_loss, batch_count = loss_value * len(labels), len(labels)
                if _DATA_PARALLEL is not None:  # every rank sees the global batch's figures (and stops on them)
                    batch_loss, batch_correct, batch_count = dist.all_reduce(
                        [batch_loss, batch_correct, batch_count], "training loss and accuracy").tolist()
                    loss_value = batch_loss / batch_count
                if not math.isfinite(loss_value):
                    raise Diverged(f"epoch {epoch + 1}, batch {done + 1} of {len(loader)}: the training loss "
                                   f"is {loss_value}")
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                done += 1
                running = self.running
                running["loss"] += batch_loss
                running["correct"] += int(batch_correct)
                running["count"] += int(batch_count)
                seconds = running["seconds"] + time.perf_counter() - started
                progress.set_postfix(loss=f"{running['loss'] / running['count']:.4f}",
                                     acc=f"{100 * running['correct'] / running['count']:.1f}%",
                                     img_s=f"{running['count'] / max(seconds, 1e-9):.1f}")
                if _DATA_PARALLEL is not None:  # stop together, at the same batch, or some rank waits forever
                    stop.requested = bool(dist.all_reduce([int(stop.requested)], "stop request")[0])
                stop.check("train", epoch + 1, done)
        except Interrupted:
            if done == len(loader):  # stopped after the last batch: the training pass is complete
                self.stage = "validate"
            raise
        finally:
            self.running["seconds"] += time.perf_counter() - started
            progress.close()
            batches.close()
        self.stage = "validate"

    def validate(self, stop):
        if _DATA_PARALLEL is not None:  # shards differ in length: no per-batch stop, one agreed check after
            validation = evaluate(self.model, self.val_loader, "validation")
            stop.requested = bool(dist.all_reduce([int(stop.requested)], "stop request")[0])
            stop.check_at_boundary()
            return validation
        return evaluate(self.model, self.val_loader, "validation",
                        after_batch=lambda number: stop.check("val", self.epoch + 1, number))

    def finish_epoch(self, validation):
        """Schedule, history, checkpoints and metrics of the epoch just validated."""
        running = self.running
        row = {"epoch": self.epoch + 1, "train_loss": running["loss"] / max(running["count"], 1),
               "train_accuracy": running["correct"] / max(running["count"], 1), "val_loss": validation["loss"],
               "val_accuracy": validation["accuracy"], "lr": self.optimizer.param_groups[0]["lr"],
               "images_per_second": running["count"] / max(running["seconds"], 1e-9),
               "epoch_seconds": running["seconds"]}
        if not all_finite(self.model):
            raise Diverged(f"epoch {self.epoch + 1}: the weights are no longer finite after training "
                           f"(validation loss {validation['loss']})")
        self.scheduler.step(validation["accuracy"])
        self.history.append(row)
        self.epoch, self.stage, self.running = self.epoch + 1, "train", _fresh_running()
        if validation["accuracy"] > self.best["val_accuracy"]:
            self.best = {"epoch": row["epoch"], "val_accuracy": validation["accuracy"]}
            self.save_best()
        self.save_last()
        self.files.write_metrics(self.history, f"{self.model_config['name']} on Dogs vs. Cats (tinynet)")
        self.files.say(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc "
                       f"{100 * row['train_accuracy']:.1f}% | val loss {row['val_loss']:.4f} acc "
                       f"{100 * row['val_accuracy']:.1f}% | lr {row['lr']:.3g} | {row['images_per_second']:.1f} img/s")

    def where(self):
        return describe_position({"epoch": self.epoch, "stage": self.stage}, self.train_loader.state_dict()["batch"],
                                 len(self.train_loader))

    def fit(self, stop):
        """Train to --epochs; returns an exit code (0, 130 after a stop request, 1 after divergence)."""
        try:
            try:
                while self.epoch < self.args.epochs:
                    if self.stage == "train":
                        self.train_epoch(stop)
                    validation = self.validate(stop)
                    self.finish_epoch(validation)
                    stop.check_at_boundary()
            except Interrupted:
                self.save_last()  # raises Diverged rather than save non-finite weights
                self.files.say(f"\ninterrupted: saved {self.files.last} at {self.where()}; add --resume to the "
                               f"same command to continue")
                return EXIT_INTERRUPTED
        except Diverged as error:
            self.report_divergence(error)
            return EXIT_DIVERGED
        return 0

    def report_divergence(self, error):
        lr = self.optimizer.param_groups[0]["lr"]
        if self.files.last.exists():
            saved = tinynet.load(self.files.last)
            position = describe_position(saved["position"], saved["loader"]["batch"], len(self.train_loader))
            kept = (f"No checkpoint was overwritten: {self.files.last} still holds the last good state "
                    f"({position}); continue from it with --resume --lr {lr / 10:g}")
        else:
            kept = f"No checkpoint was written; start again with --lr {lr / 10:g}"
        self.files.say(f"\nstopped: {error}. The weights diverged; the likely cause is a learning rate too high "
                       f"for this model and batch size (the rate was {lr:g}, --lr {self.config['lr']:g}). {kept}.",
                       error=True)

    def final_scores(self):
        """The best checkpoint scored once on validation and (if any) test photos -> results dict."""
        best_state = tinynet.load(self.files.best)
        model = self.model  # training is over: the same network takes the best epoch's weights
        model.load_state_dict(best_state["model"])
        ten_crop = not self.args.no_ten_crop
        common = (self.config, self.statistics, self.classes, self.args.device, self.args.workers, ten_crop)
        results = {"best_checkpoint": str(self.files.best), "best_epoch": int(best_state["epoch"]),
                   "epochs": len(self.history),
                   "confidence_interval": "95% Wilson score interval for a binomial proportion",
                   "validation": dict(images=int(len(self.split["val"])),
                                      **score_split(model, self.config["data"], self.split["val"], *common))}
        if len(self.split["test"]):
            results["test"] = dict(images=int(len(self.split["test"])),
                                   **score_split(model, self.config["data"], self.split["test"], *common))
        results["headline"] = "test" if "test" in results else "validation"
        results["checkpoint_megabytes"] = {"best.npz": round(megabytes(self.files.best), 1),
                                           "last.npz": round(megabytes(self.files.last), 1)}
        return results


def describe_position(position, batch, batches):
    """Where a saved or running training stands, in words."""
    epoch = int(position["epoch"])
    if position["stage"] == "validate":
        return f"epoch {epoch + 1}, training pass done, before its validation"
    if batch == 0:
        return f"after epoch {epoch}" if epoch else "the start of epoch 1"
    return f"epoch {epoch + 1}, batch {batch} of {batches}"


class StopRequest:
    """Ctrl-C raises a flag; the loop looks at it after each batch, so what is saved is consistent.

    A second Ctrl-C stops at once (Python's default KeyboardInterrupt).  ``--stop-at`` raises the
    same signal at an exact batch, so tests interrupt where they mean to.
    """

    def __init__(self, stop_at=None):
        self.requested, self.stop_at, self._previous = False, stop_at, None

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def check(self, stage, epoch, batch):
        """After batch ``batch`` of ``stage`` ('train' or 'val') of ``epoch`` (both from 1)."""
        if self.stop_at == (stage, epoch, batch):
            signal.raise_signal(signal.SIGINT)
        if self.requested:
            raise Interrupted

    def check_at_boundary(self):
        if self.requested:
            raise Interrupted


# ----------------------------------------------------------------------------- modes
def print_results(files, results):
    head = results["headline"]
    order = [head] + [s for s in ("validation", "test") if s != head and s in results]
    for split in order:
        scores = results[split]
        label = {"test": "test (never seen during training or selection)",
                 "validation": f"validation (picked epoch {results['best_epoch']}, so optimistic)"}[split]
        crops = "; ".join(f"{name.replace('_', ' ')} {describe(scores[name])}"
                          for name in ("centre_crop", "ten_crop") if name in scores)
        files.say(f"{'HEADLINE ' if split == head else ''}{label}, {scores['images']} images: {crops}")
    if head == "validation":
        files.say("(no test split: add --test-fraction 0.1 for a figure not used to pick the epoch)")
    sizes = results["checkpoint_megabytes"]
    files.say(f"checkpoints: best.npz {sizes['best.npz']:.1f} MB (weights and configuration: --eval-only, "
              f"--predict), last.npz {sizes['last.npz']:.1f} MB (also momentum, schedule, data position, "
              f"random state: --resume)")


def run_configuration(args, resume_state):
    """``(config, model_config, notes)``: from the flags, or from the checkpoint and the flags that may change.

    ``model_config`` is None for a new run: it needs the number of classes, known once the data are listed.
    """
    if resume_state is None:
        config = {"image_size": args.image_size, "batch_size": args.batch_size, "lr": args.lr,
                  "momentum": args.momentum, "weight_decay": args.weight_decay, "val_fraction": args.val_fraction,
                  "test_fraction": args.test_fraction, "max_images": args.max_images, "seed": args.seed,
                  "init": args.init, "patience": args.patience, "data": os.path.abspath(args.data)}
        return config, None, []
    if resume_state.get("kind") != CHECKPOINT_KIND or resume_state.get("version") != CHECKPOINT_VERSION:
        raise tinynet.CheckpointError(f"{args.out}/last.npz was not written by this version of alexnet_catdog.py; "
                                      f"start a new run")
    config, notes = reconcile_resume_config(args, resume_state["config"], resume_state["model_config"])
    if "data" in args.given and os.path.abspath(args.data) != config["data"]:
        config["data"] = os.path.abspath(args.data)
        notes.append(f"--data {args.data} differs from the checkpoint's {resume_state['config']['data']}: "
                     f"using the new folder (checked to hold the same photos)")
    return config, resume_state["model_config"], notes


def prepare_run(args, files):
    """Everything before the first training step, each check before the work it guards."""
    resume_state = tinynet.load(files.last) if args.resume else None
    config, model_config, notes = run_configuration(args, resume_state)
    if not os.path.isdir(config["data"]):
        raise NoImagesError(f"image folder {config['data']!r} does not exist")

    if _DATA_PARALLEL is not None and config["batch_size"] % _DATA_PARALLEL.world_size:
        raise UsageError(f"--batch-size {config['batch_size']} (the global batch) must be divisible by the "
                         f"{_DATA_PARALLEL.world_size} processes of the run")
    folder = open_folder(config["data"], None, config["max_images"], config["seed"])
    files.say(f"data: {folder.summary()}")
    if resume_state is None:
        split = make_split(folder, config)
        config.update(data_fingerprint=folder.fingerprint(), data_images=len(folder))
        model_config = model_config_from_args(args, len(folder.classes))
        statistics = None
    else:
        if folder.fingerprint() != config["data_fingerprint"]:
            raise UsageError(f"--resume: the photos in {config['data']} are not the ones this run was trained on "
                             f"({len(folder)} now, {config['data_images']} then, or other names or labels); "
                             f"the stored split would point at other photos")
        split = {k: np.asarray(v, np.int64) for k, v in resume_state["split"].items()}
        statistics = {k: np.asarray(v) for k, v in resume_state["statistics"].items()}
    for note in notes:
        files.say(f"--resume: {note}")

    # the model (and with it the smallest crop it accepts) before the first pass over the photos
    tinynet.manual_seed(config["seed"])
    model = build_model(model_config).to(args.device)
    check_image_size(model, model_config, config["image_size"], args.device)
    if statistics is None:
        # colour statistics of the training images only (validation and test photos stay unseen)
        rgb = T.compute_rgb_stats(Subset(folder, split["train"]), max_images=500, seed=config["seed"])
        statistics = {k: rgb[k] for k in ("mean", "std", "eigenvalues", "eigenvectors")}

    run = TrainingRun(args, config, model, model_config, folder, split, statistics, files, resume_state)
    test_note = f", {len(split['test'])} test" if len(split["test"]) else ""
    files.say(f"split: {len(split['train'])} training, {len(split['val'])} validation{test_note} images; "
              f"{config['image_size']}px crops, batch {config['batch_size']}, device {args.device}")
    if resume_state is not None:
        files.say(f"resumed from {files.last}: {run.where()}")
    return run


def train(args):
    global _DATA_PARALLEL
    if args.distributed:
        group = dist.init()
        _DATA_PARALLEL = group if group.world_size > 1 else None
        if args.device == "gpu":
            dist.use_local_gpu()
    files = RunFiles(args.out, writer=_is_writer())
    if _DATA_PARALLEL is not None:
        files.say(f"data parallel: {_DATA_PARALLEL.world_size} processes (rank 0 prints and writes)")
    run = prepare_run(args, files)
    with StopRequest(args.stop_at) as stop:
        code = run.fit(stop)
    if code != 0:
        return code
    try:
        results = run.final_scores()
    except KeyboardInterrupt:  # training is complete and saved; only the scoring is lost
        files.say(f"\ninterrupted during the final scoring; {files.last} holds the finished training: the same "
                  f"command with --resume scores it again", error=True)
        return EXIT_INTERRUPTED
    files.write_results(results)
    print_results(files, results)
    skipped = run.train_folder.skipped + run.val_folder.skipped
    if skipped:
        files.say(f"{skipped} unreadable image file(s) were skipped (listed in the warnings above)")
    return 0


def load_members(paths, device):
    """``[(model, state), ...]`` of one or more checkpoints, checked to predict the same classes."""
    members = [load_model(path, device) for path in paths]
    classes = members[0][1]["classes"]
    for path, (_, state) in zip(paths[1:], members[1:]):
        if list(state["classes"]) != list(classes):
            raise UsageError(f"--checkpoint {path} predicts the classes {list(state['classes'])}, "
                             f"{paths[0]} predicts {list(classes)}: an ensemble needs the same classes in "
                             f"the same order")
    return members


def member_name(path, state):
    return f"{state['model_config']['name']} ({path})"


def predict(args):
    """Class probabilities of each photo: ten-crop softmax, averaged over the checkpoints given."""
    members = load_members(args.checkpoint, args.device)
    classes = members[0][1]["classes"]
    # each member with its own crop size and colour statistics
    ten_crops = [make_transforms(state["config"]["image_size"], state["statistics"])[2] for _, state in members]
    from tinynet.data import BadImageError, load_image
    for path in args.predict:
        try:
            image = load_image(path)
        except (BadImageError, OSError) as error:
            print(f"{path}: cannot read this image ({error})")
            continue
        probabilities = np.zeros(len(classes))
        for (model, _), ten_crop in zip(members, ten_crops):
            crops = ten_crop(image, np.random.default_rng(0))
            with tinynet.no_grad():
                logits = model(tinynet.tensor(crops, device=args.device))
                probabilities += F.softmax(logits, dim=1).numpy().mean(axis=0) / len(members)
        ranked = ", ".join(f"{name} {p:.3f}" for name, p in sorted(zip(classes, probabilities),
                                                                   key=lambda item: -item[1]))
        print(f"{path}: {ranked}")
    return 0


def split_probabilities(model, state, data, indices, crop, device, workers, batch_size=None):
    """``(probabilities (N, classes), labels (N,))`` of ``model`` on the photos ``indices`` of ``data``
    (None: all), in that order, with the checkpoint's own crop size and colour statistics."""
    config = dict(state["config"], max_images=None) if indices is None else state["config"]
    loader = scoring_loader(data, indices, config, state["statistics"], state["classes"], crop, device, workers,
                            batch_size)
    probabilities, labels = [], []
    model.eval()
    with tinynet.no_grad():
        for images, targets in loader:
            probabilities.append(ten_crop_probabilities(model, images) if images.ndim == 5 else
                                 F.softmax(model(tinynet.Tensor(images)), dim=1).numpy())
            labels.append(backend.to_numpy(targets))
    return np.concatenate(probabilities).astype(np.float64), np.concatenate(labels)


def score_probabilities(probabilities, labels):
    """Loss, accuracy and interval of class probabilities against labels."""
    picked = probabilities[np.arange(len(labels)), labels]
    correct = int((probabilities.argmax(axis=1) == labels).sum())
    return with_interval({"loss": float(-np.log(np.maximum(picked, 1e-12)).mean()), "correct": correct,
                          "accuracy": correct / max(len(labels), 1), "images": int(len(labels))})


def check_known_classes(data, classes):
    """--all scores a labelled folder: every class in it must be one the checkpoint predicts."""
    unknown = sorted(set(ImageFolder(data).classes) - set(classes))
    if unknown:
        raise UsageError(f"--all: {data} has photos of class(es) {unknown} that the checkpoint does not "
                         f"know (its classes: {classes})")


def evaluate_ensemble(args):
    """Each checkpoint and their average (the softmax of the members, averaged) on the same photos.

    Without --all the members must share the photos and the split (same --data, seed and
    fractions), so that no member has trained on a photo the ensemble is scored on.
    """
    members = load_members(args.checkpoint, args.device)
    first = members[0][1]
    batch_size = args.batch_size if "batch_size" in args.given else None
    if args.all:
        check_known_classes(args.data, first["classes"])
        data, splits = args.data, {"all photos": None}
    else:
        data = os.path.abspath(args.data) if "data" in args.given else first["config"]["data"]
        for path, (_, state) in zip(args.checkpoint[1:], members[1:]):
            same = (state["config"]["data_fingerprint"] == first["config"]["data_fingerprint"] and
                    all(np.array_equal(state["split"][k], first["split"][k]) for k in ("train", "val", "test")))
            if not same:
                raise UsageError(f"--checkpoint {path} was trained on other photos or another split than "
                                 f"{args.checkpoint[0]}: one member's validation or test photos may be another's "
                                 f"training photos. Train the members with the same --data, --seed, "
                                 f"--val-fraction and --test-fraction, or score on a separate folder with --all")
        splits = {name: np.asarray(first["split"][key], np.int64) for key, name in
                  (("val", "validation"), ("test", "test")) if len(first["split"][key])}
    crops = ("centre_crop",) if args.no_ten_crop else ("centre_crop", "ten_crop")
    print(f"ensemble of {len(members)}: " + "; ".join(member_name(p, st) for p, (_, st) in
                                                       zip(args.checkpoint, members)))
    results = {}
    for split, indices in splits.items():
        for crop in crops:
            outputs = [split_probabilities(model, state, data, indices, crop, args.device, args.workers, batch_size)
                       for model, state in members]
            labels = outputs[0][1]
            rows = [(member_name(p, st), score_probabilities(probs, labels))
                    for p, (_, st), (probs, _) in zip(args.checkpoint, members, outputs)]
            average = np.mean([probs for probs, _ in outputs], axis=0)
            rows.append(("ensemble (mean softmax)", score_probabilities(average, labels)))
            print(f"{split}, {crop.replace('_', ' ')}, {len(labels)} images:")
            for name, score in rows:
                print(f"  {name:<50} {describe(score)}  loss {score['loss']:.4f}")
            results[f"{split}/{crop}"] = {name: score for name, score in rows}
    return results


def evaluate_only(args):
    """Score a checkpoint: on its own validation and test splits, or (--all) on every photo of --data."""
    if len(args.checkpoint) > 1:
        evaluate_ensemble(args)
        return 0
    model, state = load_model(args.checkpoint[0], args.device)
    config, classes = state["config"], state["classes"]
    ten_crop = not args.no_ten_crop
    common = (dict(config, max_images=None if args.all else config["max_images"]), state["statistics"], classes,
              args.device, args.workers, ten_crop, args.batch_size if "batch_size" in args.given else None)
    if args.all:
        check_known_classes(args.data, classes)
        print(f"data: {open_folder(args.data, None, None, 0, classes).summary()}")
        scores = score_split(model, args.data, None, *common)
        for name, score in scores.items():
            print(f"{name.replace('_', ' ')}: accuracy {describe(score)} on all {score['images']} images "
                  f"of {args.data}")
        return 0
    data = os.path.abspath(args.data) if "data" in args.given else config["data"]
    folder = open_folder(data, None, config["max_images"], config["seed"])
    if folder.fingerprint() != config["data_fingerprint"]:
        raise UsageError(f"{data} does not hold the photos the checkpoint was trained on, so its stored "
                         f"validation and test splits do not apply; add --all to score every photo in it")
    for split in ("val", "test"):
        indices = np.asarray(state["split"][split], np.int64)
        if not len(indices):
            continue
        name = {"val": "validation", "test": "test"}[split]
        for crop, score in score_split(model, data, indices, *common).items():
            print(f"{crop.replace('_', ' ')}: {name} accuracy {describe(score)} (loss {score['loss']:.4f}) "
                  f"on {len(indices)} images")
    return 0


def main(argv=None):
    parser = build_parser()
    try:
        args = parse_arguments(argv, parser)
    except SystemExit as exit_:  # argparse has printed its message (or --help)
        return exit_.code
    try:
        check_arguments(args)
        if args.predict:
            return predict(args)
        if not args.eval_only and not args.resume and not os.path.isdir(args.data):
            print(NO_DATA_HELP.format(where=os.path.abspath(args.data), default=DEFAULT_DATA), file=sys.stderr)
            return EXIT_USAGE
        return evaluate_only(args) if args.eval_only else train(args)
    except UsageError as error:
        print(f"{parser.format_usage()}{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except NoImagesError as error:
        print(f"{error}\n\n" + NO_DATA_HELP.format(where=os.path.abspath(args.data), default=DEFAULT_DATA),
              file=sys.stderr)
        return EXIT_USAGE
    except tinynet.CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
