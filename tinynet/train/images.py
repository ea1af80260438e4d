"""Image classification on a labelled folder of photos: the recipe and its command line.

    python -m tinynet.train --model resnet18 --data my_photos/ --image-size 128 --batch-size 32 \
        --lr 0.02 --schedule cosine --test-fraction 0.1 --out runs/resnet18

This module is what ``examples/alexnet_catdog.py`` (AlexNet on Kaggle's Dogs vs. Cats by default)
and ``examples/train_classifier.py`` (any network of ``tinynet.models``, any labelled folder) run;
the training loop itself is :class:`tinynet.train.Trainer`.

The recipe follows AlexNet's paper where a 2-core CPU allows it: resize the shorter side to
256/227 of the crop size, random crops and horizontal flips, "fancy PCA" colour noise,
per-channel normalisation, SGD with momentum 0.9 and weight decay 5e-4, and ten-crop evaluation
(four corners + centre, and their mirrors, softmax averaged).  The learning rate climbs linearly
for ``--warmup-epochs`` (2) and then follows a half cosine to 0 (``--schedule cosine``, the
default); the paper's schedule, dividing it by 10 when validation accuracy plateaus, is
``--schedule plateau``, and ``step`` divides it by 10 every ``--step-epochs``.

Three splits of the photos, stratified per class and seeded: training; validation
(``--val-fraction``), which picks the best epoch (and drives the plateau schedule); and, with
``--test-fraction``, a test split that nothing during training looks at.  It is scored once at
the end with the best checkpoint, and its accuracy (with a 95 % Wilson confidence interval) is the
run's headline figure: the validation accuracy of the best epoch is optimistic, since that epoch
was chosen on those same images.

Everything a run produces lands in ``--out``: ``metrics.csv`` (one row per epoch), ``curves.png``
(redrawn every epoch), ``results.json`` (the final scores), and two pickle-free checkpoints:
``best.npz`` holds what evaluation and prediction need (the weights, the model's name and
arguments, classes, colour statistics and the split), ``last.npz`` holds everything an exact
``--resume`` needs (also the momentum, the schedule, the data position and the random
generators' states), so it is about twice the size.  Ctrl-C saves ``last.npz`` at the next batch
boundary and exits; ``--resume`` continues from there, bit for bit.

Flags are checked before any work starts (exit code 2, argparse-style message), and so are the
data (at least two classes, every class in every split) and the crop size (tried on the model:
the smallest size its layers accept).  A non-finite training loss stops the run at once, without
writing a checkpoint (exit code 1).  ``--resume`` takes its configuration from last.npz and
reports each flag typed with another value: the learning rate, momentum, weight decay and
patience change from there on, ``--init`` is ignored, and what would make the continuation wrong
(crop size, batch size, seed, split fractions, schedule, model options, other photos) is refused.

Data-parallel (``pip install -e ".[mpi]"``): ``mpiexec -n 2 python examples/alexnet_catdog.py
--distributed ...``.  ``--batch-size`` stays the global batch (each of N ranks takes batch/N of
every step, so the steps are those of one process with that batch); rank 0 alone prints, draws
and writes; the validation and test photos are split over the ranks and their counts added up.
``--resume`` works with another number of processes.  Checkpoints and photos must be at the same
paths on every machine (a shared folder).

``--eval-only --checkpoint OUT/best.npz`` scores the checkpoint on its own validation and test
splits; ``--eval-only --checkpoint ... --data FOLDER --all`` scores every photo of another
labelled folder.  Several checkpoints after ``--checkpoint`` make an ensemble: their softmax
outputs are averaged, in ``--eval-only`` (each member and the ensemble scored on the same photos)
and in ``--predict``.
"""
import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

import tinynet
from .. import models, optim
from .. import distributed as dist
from ..data import DataLoader, DistributedDataLoader, ImageFolder, NoImagesError, Subset, train_val_test_split
from ..data import transforms as T
from ..nn import functional as F
from .evaluation import describe_score as describe, evaluate, probabilities, score_probabilities, with_interval
from .loop import Trainer, describe_position
from .outputs import write_json
from .stop import Diverged, Interrupted, StopRequest

__all__ = ["main", "build_parser", "parse_arguments", "UsageError", "load_model", "smallest_input_size",
           "make_transforms", "CHECKPOINT_KIND", "CHECKPOINT_VERSION"]

#: the Kaggle Dogs-vs-Cats photos; a command's ``no_data_help`` names where to get its data
CATDOG_NO_DATA_HELP = """\
No training images found at {where}.

tinynet trains on Kaggle's "Dogs vs. Cats" photos (cat.0.jpg ... dog.12499.jpg):
  1. download train.zip from https://www.kaggle.com/c/dogs-vs-cats/data
     (or with the Kaggle CLI: kaggle competitions download -c dogs-vs-cats)
  2. unzip it so the photos sit in {default}/  (cat.0.jpg, dog.0.jpg, ...)
  3. run again, or point --data (or $TINYNET_DATA) at the folder holding the photos.
One folder per class (train/cat/*.jpg, train/dog/*.jpg) works too.
"""

GENERIC_NO_DATA_HELP = """\
No training images found at {where}.

Point --data at a folder of labelled photos: one sub-folder per class (photos/cat/*.jpg,
photos/dog/*.jpg, ...) or a flat folder whose file names start with the class (cat.0.jpg, dog.0.jpg).
"""

# the checkpoint format of image classifiers ("alexnet_catdog": the name its first command gave it,
# kept so that every checkpoint written since loads)
CHECKPOINT_KIND = "alexnet_catdog"
CHECKPOINT_VERSION = 2          # 2: model_config, three splits, "position"; best.npz without optimizer state
EXIT_DIVERGED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

#: the defaults of ``examples/alexnet_catdog.py``: AlexNet on the Dogs-vs-Cats photos
ALEXNET_CATDOG = {"prog": "alexnet_catdog.py", "model": "alexnet", "out": "runs/alexnet_catdog",
                  "data": "data/catdog/train", "no_data_help": CATDOG_NO_DATA_HELP,
                  "description": "Train and evaluate AlexNet (or another network of tinynet.models, --model) on "
                                 "Kaggle Dogs vs. Cats with tinynet.",
                  "title": "Dogs vs. Cats"}
#: the defaults of the general command (``examples/train_classifier.py``, ``python -m tinynet.train``)
GENERIC = {"prog": "train_classifier.py", "model": None, "out": None, "data": None,
           "no_data_help": GENERIC_NO_DATA_HELP,
           "description": "Train and evaluate a network of tinynet.models on a folder of labelled photos.",
           "title": None}


#: the cosine schedule's warm-up when --warmup-epochs is not given.  The schedule was chosen on the
#: validation photos: AlexNet's README command reached 75.0 % there with it (72.0 % with the plateau
#: schedule); test figures in the README.
DEFAULT_WARMUP_EPOCHS = 2


class UsageError(Exception):
    """Flags or data that cannot make a meaningful run; reported argparse-style with exit code 2."""


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


def build_parser(command=ALEXNET_CATDOG):
    """The flags of a command; ``command`` is :data:`ALEXNET_CATDOG` or :data:`GENERIC` (or a dict like them)."""
    parser = argparse.ArgumentParser(prog=command["prog"], description=command["description"],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.command = command
    add = parser.add_argument
    if command["data"] is not None:
        add("--data", default=os.environ.get("TINYNET_DATA", command["data"]),
            help=f"folder of labelled photos (Kaggle's flat train/ layout or one folder per class); "
                 f"default $TINYNET_DATA or {command['data']}; with --resume or --eval-only: the checkpoint's")
    else:
        add("--data", default=os.environ.get("TINYNET_DATA"),
            help="folder of labelled photos: one sub-folder per class, or flat files named CLASS.N.jpg "
                 "(default $TINYNET_DATA); with --resume or --eval-only: the checkpoint's")
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
    add("--out", default=command["out"], help="folder for checkpoints, metrics and plots"
        + ("" if command["out"] else " (default runs/MODEL)"))
    add("--resume", action="store_true", help="continue from OUT/last.npz")
    add("--eval-only", action="store_true",
        help="score --checkpoint on its validation and test splits (centre crop and ten-crop)")
    add("--all", action="store_true", help="with --eval-only: score every photo in --data (a separate labelled folder)")
    add("--checkpoint", nargs="+", default=None, metavar="NPZ",
        help="checkpoint(s) for --eval-only / --predict; several make an ensemble (their softmax averaged)")
    add("--predict", nargs="+", metavar="IMAGE", help="print class probabilities for these photos")
    add("--model", default=command["model"], choices=models.names(), metavar="NAME",
        help="the network to train, from tinynet.models: " + ", ".join(models.names()))
    add("--model-option", type=_model_option, action="append", default=[], metavar="KEY=VALUE",
        help="a constructor option of --model, repeatable (e.g. batch_norm=true for VGG, "
             "zero_init_residual=true for ResNet); a checkpoint records them")
    add("--init", choices=["paper", "kaiming"], default="kaiming",
        help="weight initialisation: the paper's N(0, 0.01) or He-normal (trains faster from scratch)")
    add("--schedule", choices=["cosine", "plateau", "step"], default="cosine",
        help="learning-rate schedule: a half cosine to 0 after --warmup-epochs of linear warm-up; divide by 10 "
             "after --patience epochs without validation improvement; or divide by 10 every --step-epochs")
    add("--patience", type=_number(int, 0), default=3,
        help="plateau schedule: epochs without validation improvement before the learning rate is divided by 10")
    add("--warmup-epochs", type=_number(int, 0), default=None,
        help=f"cosine schedule: epochs of linear warm-up (default {DEFAULT_WARMUP_EPOCHS}, or --epochs - 1 "
             f"when that is fewer)")
    add("--step-epochs", type=_number(int, 1), default=10, help="step schedule: epochs between divisions by 10")
    add("--dropout", type=_number(float, 0, 1, high_open=True), default=0.5,
        help="dropout probability (models with a dropout option: AlexNet, VGG, GoogLeNet)")
    add("--groups", type=int, choices=[1, 2], default=1, help="AlexNet: 2 is the paper's two-GPU split")
    add("--no-lrn", action="store_true", help="AlexNet: leave out local response normalisation")
    add("--no-ten-crop", action="store_true", help="skip the ten-crop evaluation at the end")
    add("--distributed", action="store_true",
        help=f"data-parallel training as one rank of an MPI job: mpiexec -n N python {command['prog']} "
             f"--distributed ... (without mpiexec: one process)")
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
    training = not (args.eval_only or args.predict)
    if training and not args.resume and args.model is None:
        raise UsageError(f"--model NAME is required to train (one of: {', '.join(models.names())})")
    if args.out is None:
        args.out = os.path.join("runs", args.model or "classifier")
    if args.warmup_epochs is None:
        args.warmup_epochs = min(DEFAULT_WARMUP_EPOCHS, args.epochs - 1) if args.schedule == "cosine" else 0
    if args.schedule == "cosine" and args.warmup_epochs >= args.epochs:
        raise UsageError(f"--warmup-epochs {args.warmup_epochs} leaves no epoch of the cosine schedule "
                         f"(--epochs {args.epochs})")
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


def _forward_error(model, size, device):
    """None if ``model`` runs on a (1, 3, size, size) input, else the ValueError its layers raise.

    The forward runs the kernels the first training step needs, so that on an empty numba cache
    it compiles nothing that step would not: the graph is recorded (and dropped), where under
    ``no_grad`` the layers would run their inference paths (max pooling's maxima-only loop, for
    the geometries without a kernel of their own: 0.4 CPU-seconds); and convolutions
    take Winograd wherever their shape allows, as a training batch's do, where this one image
    would take im2col (0.7-0.8 CPU-seconds).  A user's own choice of algorithm is kept.  It runs
    in evaluation mode, so that it changes nothing: no dropout draws from the seeded generator,
    no update of batch-norm statistics."""
    from ..kernels import conv2d as conv2d_kernels
    algorithm = "winograd" if conv2d_kernels.get_algorithm() == "auto" else conv2d_kernels.get_algorithm()
    was_training = model.training
    model.eval()
    try:
        with conv2d_kernels.use_algorithm(algorithm):
            model(tinynet.tensor(np.zeros((1, 3, size, size), np.float32), device=device))
        return None
    except ValueError as error:  # a layer's geometry check: kernel larger than its input, ...
        return error
    finally:
        model.train(was_training)


def smallest_input_size(model, device="cpu", start=1, limit=4096):
    """The smallest square crop ``model`` accepts, found by running its forward pass.

    Nothing about the architecture is assumed except that a size that works keeps
    working when it grows (true of convolution and pooling stacks that end in an
    adaptive pool): doubling finds a size that works, bisection the smallest one.
    Returns None when nothing up to ``limit`` works.
    """
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


def check_image_size(model, model_config, image_size, device):
    error = _forward_error(model, image_size, device)
    if error is None:
        return
    smallest = smallest_input_size(model, device, start=image_size)
    accepts = f"accepts crops of at least {smallest} px" if smallest else "accepts no square crop up to 4096 px"
    raise UsageError(f"argument --image-size: {image_size} px is too small: {model_config['name']} {accepts} "
                     f"({image_size} px fails in the model: {error})")


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
def make_loader(dataset, batch_size, shuffle=False, group=None, **options):
    """A DataLoader; in a data-parallel run (``group``) this rank's shard of the same order.

    Training (``shuffle``) shards batch by batch, batch_size / N per rank; evaluation
    shards without padding, so that each photo is counted exactly once.
    """
    if group is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **options)
    if shuffle:
        return DistributedDataLoader(dataset, batch_size // group.world_size, shuffle=True, **options)
    return DistributedDataLoader(dataset, batch_size, even=False, **options)


def scoring_loader(folder_path, indices, config, statistics, classes, crop, device, workers, batch_size=None,
                   group=None):
    """Batches of centre crops, or of ten crops (``crop='ten_crop'``, batch/8 images of 10 crops each), of
    the photos ``indices`` (None: all) of ``folder_path``, in that order, with the run's crop size and colour
    statistics."""
    _, centre, ten = make_transforms(config["image_size"], statistics)
    batch_size = batch_size or config["batch_size"]
    transform, size = (centre, batch_size) if crop == "centre_crop" else (ten, max(1, batch_size // 8))
    folder = open_folder(folder_path, transform, config["max_images"], config["seed"], classes)
    dataset = folder if indices is None else Subset(folder, indices)
    return make_loader(dataset, size, group=group, seed=config["seed"], num_workers=workers, device=device)


def score_split(model, folder_path, indices, config, statistics, classes, device, workers, ten_crop=True,
                batch_size=None, group=None):
    """Centre-crop (and ten-crop) scores of ``model`` on the photos ``indices`` of ``folder_path``."""
    crops = ("centre_crop", "ten_crop") if ten_crop else ("centre_crop",)
    return {crop: with_interval(evaluate(model, scoring_loader(folder_path, indices, config, statistics, classes,
                                                               crop, device, workers, batch_size, group),
                                         crop.replace("_", " "), group=group))
            for crop in crops}


# ----------------------------------------------------------------------------- checkpoints
def load_model(path, device):
    """``(model, state)`` from a checkpoint of this script (best.npz or last.npz)."""
    state = tinynet.load(path)
    if state.get("kind") != CHECKPOINT_KIND:
        raise tinynet.CheckpointError(f"{path} is a tinynet checkpoint but not one of an image classifier "
                                      f"(alexnet_catdog.py, train_classifier.py)")
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
    ("schedule", "schedule", lambda a: a.schedule, REFUSE, "the saved schedule state belongs to it"),
    ("warmup_epochs", "warmup_epochs", lambda a: a.warmup_epochs, REFUSE, "it would change the schedule's curve"),
    ("step_epochs", "step_epochs", lambda a: a.step_epochs, REFUSE, "it would change the schedule's curve"),
    ("init", "init", lambda a: a.init, IGNORE, None),
]
# what a checkpoint without the schedule's keys trained with
SCHEDULE_DEFAULTS = {"schedule": "plateau", "warmup_epochs": 0, "step_epochs": 10}


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
    saved = dict(SCHEDULE_DEFAULTS, **saved)
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
def print_results(say, results):
    head = results["headline"]
    order = [head] + [s for s in ("validation", "test") if s != head and s in results]
    for split in order:
        scores = results[split]
        label = {"test": "test (never seen during training or selection)",
                 "validation": f"validation (picked epoch {results['best_epoch']}, so optimistic)"}[split]
        crops = "; ".join(f"{name.replace('_', ' ')} {describe(scores[name])}"
                          for name in ("centre_crop", "ten_crop") if name in scores)
        say(f"{'HEADLINE ' if split == head else ''}{label}, {scores['images']} images: {crops}")
    if head == "validation":
        say("(no test split: add --test-fraction 0.1 for a figure not used to pick the epoch)")
    sizes = results["checkpoint_megabytes"]
    say(f"checkpoints: best.npz {sizes['best.npz']:.1f} MB (weights and configuration: --eval-only, "
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
                  "init": args.init, "patience": args.patience, "data": os.path.abspath(args.data),
                  "schedule": args.schedule, "warmup_epochs": args.warmup_epochs, "step_epochs": args.step_epochs,
                  "epochs": args.epochs}
        return config, None, []
    if resume_state.get("kind") != CHECKPOINT_KIND or resume_state.get("version") != CHECKPOINT_VERSION:
        raise tinynet.CheckpointError(f"{args.out}/last.npz was not written by this version of tinynet's "
                                      f"image classifier; start a new run")
    config, notes = reconcile_resume_config(args, resume_state["config"], resume_state["model_config"])
    if "data" in args.given and os.path.abspath(args.data) != config["data"]:
        config["data"] = os.path.abspath(args.data)
        notes.append(f"--data {args.data} differs from the checkpoint's {resume_state['config']['data']}: "
                     f"using the new folder (checked to hold the same photos)")
    return config, resume_state["model_config"], notes


def make_scheduler(optimizer, config, epochs):
    schedule = config.get("schedule", "plateau")
    if schedule == "plateau":
        return optim.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=config["patience"])
    if schedule == "cosine":
        return optim.CosineAnnealingLR(optimizer, epochs=config.get("epochs", epochs),
                                       warmup_epochs=config["warmup_epochs"])
    return optim.StepLR(optimizer, step_size=config["step_epochs"], gamma=0.1)


class ImageRun:
    """A training run of an image classifier: the photos, the model and the :class:`Trainer` that
    trains it, with the checkpoint entries evaluation and prediction need."""

    def __init__(self, args, config, model, model_config, folder, split, statistics, group, say):
        self.args, self.config, self.model_config, self.group, self.say = args, config, model_config, group, say
        self.classes, self.split, self.statistics = list(folder.classes), split, statistics
        model = model.to(args.device).train()
        optimizer = optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                              weight_decay=config["weight_decay"])
        scheduler = make_scheduler(optimizer, config, args.epochs)
        train_transform, centre, _ = make_transforms(config["image_size"], statistics)
        self.train_folder = open_folder(config["data"], train_transform, config["max_images"], config["seed"])
        self.val_folder = open_folder(config["data"], centre, config["max_images"], config["seed"])
        train_loader = make_loader(Subset(self.train_folder, split["train"]), config["batch_size"], shuffle=True,
                                   group=group, seed=config["seed"], num_workers=args.workers, device=args.device)
        val_loader = make_loader(Subset(self.val_folder, split["val"]), config["batch_size"], group=group,
                                 seed=config["seed"], num_workers=args.workers, device=args.device)
        title = args.title or os.path.basename(os.path.normpath(config["data"]))
        self.trainer = Trainer(model, optimizer, train_loader, val_loader, epochs=args.epochs, scheduler=scheduler,
                               out=args.out, group=group, checkpoint_state=self.checkpoint_state,
                               title=f"{model_config['name']} on {title} (tinynet)", device=args.device)

    def checkpoint_state(self):
        """What evaluation and prediction need besides the weights: best.npz holds this, last.npz more."""
        return {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "model_config": self.model_config,
                "config": self.config, "classes": self.classes, "statistics": self.statistics, "split": self.split}

    def resume(self, state):
        """Continue from last.npz, with the changes --resume applies (reconcile_resume_config)."""
        trainer = self.trainer
        trainer.load_state_dict(state)
        for group in trainer.optimizer.param_groups:
            for key in ("momentum", "weight_decay"):
                group[key] = self.config[key]
            if self.config["lr"] != state["config"]["lr"]:
                group["lr"] = self.config["lr"]
        if isinstance(trainer.scheduler, optim.ReduceLROnPlateau):
            trainer.scheduler.patience = self.config["patience"]
        elif isinstance(trainer.scheduler, optim.CosineAnnealingLR) and trainer.scheduler.epochs != self.args.epochs:
            self.say(f"--resume: --epochs {self.args.epochs}: the cosine schedule now ends after epoch "
                     f"{self.args.epochs} instead of {trainer.scheduler.epochs} (no longer an exact continuation)")
            trainer.scheduler.epochs = self.args.epochs
            trainer.scheduler.load_state_dict(trainer.scheduler.state_dict())   # the rate of the new curve
        self.config["epochs"] = self.args.epochs

    def fit(self, stop):
        """Train to --epochs; returns an exit code (0, 130 after a stop request, 1 after divergence)."""
        trainer = self.trainer
        try:
            try:
                trainer.fit(stop)
            except Interrupted:   # the trainer has saved last.npz
                self.say(f"\ninterrupted: saved {trainer.last_path} at {trainer.where()}; add --resume to the "
                         f"same command to continue")
                return EXIT_INTERRUPTED
        except Diverged as error:
            self.report_divergence(error)
            return EXIT_DIVERGED
        return 0

    def report_divergence(self, error):
        trainer = self.trainer
        lr = trainer.optimizer.param_groups[0]["lr"]
        if trainer.last_path.exists():
            saved = tinynet.load(trainer.last_path)
            position = describe_position(saved["position"], saved["loader"]["batch"], len(trainer.train_loader))
            kept = (f"No checkpoint was overwritten: {trainer.last_path} still holds the last good state "
                    f"({position}); continue from it with --resume --lr {lr / 10:g}")
        else:
            kept = f"No checkpoint was written; start again with --lr {lr / 10:g}"
        self.say(f"\nstopped: {error}. The weights diverged; the likely cause is a learning rate too high "
                 f"for this model and batch size (the rate was {lr:g}, --lr {self.config['lr']:g}). {kept}.",
                 error=True)

    def final_scores(self):
        """The best checkpoint scored once on validation and (if any) test photos -> results dict."""
        trainer = self.trainer
        best_state = tinynet.load(trainer.best_path)
        model = trainer.model  # training is over: the same network takes the best epoch's weights
        model.load_state_dict(best_state["model"])
        ten_crop = not self.args.no_ten_crop
        common = (self.config, self.statistics, self.classes, self.args.device, self.args.workers, ten_crop)
        results = {"best_checkpoint": str(trainer.best_path), "best_epoch": int(best_state["epoch"]),
                   "epochs": len(trainer.history),
                   "confidence_interval": "95% Wilson score interval for a binomial proportion",
                   "validation": dict(images=int(len(self.split["val"])),
                                      **score_split(model, self.config["data"], self.split["val"], *common,
                                                    group=self.group))}
        if len(self.split["test"]):
            results["test"] = dict(images=int(len(self.split["test"])),
                                   **score_split(model, self.config["data"], self.split["test"], *common,
                                                 group=self.group))
        results["headline"] = "test" if "test" in results else "validation"
        results["checkpoint_megabytes"] = {"best.npz": round(megabytes(trainer.best_path), 1),
                                           "last.npz": round(megabytes(trainer.last_path), 1)}
        return results


def prepare_run(args, group, say):
    """Everything before the first training step, each check before the work it guards."""
    last = Path(args.out) / "last.npz"
    resume_state = tinynet.load(last) if args.resume else None
    config, model_config, notes = run_configuration(args, resume_state)
    if not os.path.isdir(config["data"]):
        raise NoImagesError(f"image folder {config['data']!r} does not exist")

    if group is not None and config["batch_size"] % group.world_size:
        raise UsageError(f"--batch-size {config['batch_size']} (the global batch) must be divisible by the "
                         f"{group.world_size} processes of the run")
    folder = open_folder(config["data"], None, config["max_images"], config["seed"])
    say(f"data: {folder.summary()}")
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
        say(f"--resume: {note}")

    # the model (and with it the smallest crop it accepts) before the first pass over the photos
    tinynet.manual_seed(config["seed"])
    model = build_model(model_config).to(args.device)
    check_image_size(model, model_config, config["image_size"], args.device)
    if statistics is None:
        # colour statistics of the training images only (validation and test photos stay unseen)
        rgb = T.compute_rgb_stats(Subset(folder, split["train"]), max_images=500, seed=config["seed"])
        statistics = {k: rgb[k] for k in ("mean", "std", "eigenvalues", "eigenvectors")}

    run = ImageRun(args, config, model, model_config, folder, split, statistics, group, say)
    if resume_state is not None:
        run.resume(resume_state)
    test_note = f", {len(split['test'])} test" if len(split["test"]) else ""
    say(f"split: {len(split['train'])} training, {len(split['val'])} validation{test_note} images; "
        f"{config['image_size']}px crops, batch {config['batch_size']}, device {args.device}")
    if resume_state is not None:
        say(f"resumed from {last}: {run.trainer.where()}")
    return run


def train(args):
    group = None
    if args.distributed:
        group = dist.init()
        group = group if group.world_size > 1 else None
        if args.device == "gpu":
            dist.use_local_gpu()
    writer = group is None or group.rank == 0

    def say(message, error=False):
        if writer:
            print(message, file=sys.stderr if error else sys.stdout, flush=True)

    if group is not None:
        say(f"data parallel: {group.world_size} processes (rank 0 prints and writes)")
    elif args.device == "cpu":
        # a fresh install compiles the CPU kernels in a background process while this one builds the
        # model and reads photos (kernels/_warm_up.py); with every kernel cached it starts nothing
        tinynet.kernels.warm_up()
    run = prepare_run(args, group, say)
    with StopRequest(args.stop_at) as stop:
        code = run.fit(stop)
    if code != 0:
        return code
    try:
        results = run.final_scores()
    except KeyboardInterrupt:  # training is complete and saved; only the scoring is lost
        say(f"\ninterrupted during the final scoring; {run.trainer.last_path} holds the finished training: the "
            f"same command with --resume scores it again", error=True)
        return EXIT_INTERRUPTED
    if writer:
        write_json(Path(args.out) / "results.json", results)
    print_results(say, results)
    skipped = run.train_folder.skipped + run.val_folder.skipped
    if skipped:
        say(f"{skipped} unreadable image file(s) were skipped (listed in the warnings above)")
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
    return probabilities(model, scoring_loader(data, indices, config, state["statistics"], state["classes"], crop,
                                               device, workers, batch_size))


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


def main(argv=None, command=ALEXNET_CATDOG):
    """Run the command line ``argv`` with the defaults of ``command``; returns the exit code."""
    parser = build_parser(command)
    try:
        args = parse_arguments(argv, parser)
    except SystemExit as exit_:  # argparse has printed its message (or --help)
        return exit_.code
    args.title = command["title"]
    no_data = command["no_data_help"]
    where = os.path.abspath(args.data) if args.data else "(no --data given)"
    try:
        check_arguments(args)
        if args.predict:
            return predict(args)
        if not args.eval_only and not args.resume and not (args.data and os.path.isdir(args.data)):
            print(no_data.format(where=where, default=command["data"]), file=sys.stderr)
            return EXIT_USAGE
        return evaluate_only(args) if args.eval_only else train(args)
    except UsageError as error:
        print(f"{parser.format_usage()}{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except NoImagesError as error:
        print(f"{error}\n\n" + no_data.format(where=where, default=command["data"]), file=sys.stderr)
        return EXIT_USAGE
    except tinynet.CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
