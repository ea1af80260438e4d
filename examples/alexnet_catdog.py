"""Train and evaluate AlexNet on Kaggle's Dogs vs. Cats photos with tinynet.

    python examples/alexnet_catdog.py --data ../shared/data/catdog/train --image-size 128 --epochs 30

The recipe follows the paper where a 2-core CPU allows it: resize the shorter
side to 256/227 of the crop size, random crops and horizontal flips, "fancy PCA"
colour noise, per-channel normalisation, SGD with momentum 0.9 and weight decay
5e-4, the learning rate divided by 10 when validation accuracy plateaus, and
ten-crop evaluation (four corners + centre, and their mirrors, softmax averaged).

Everything a run produces lands in ``--out``: ``metrics.csv`` (one row per
epoch), ``curves.png`` (redrawn every epoch), ``last.npz`` and ``best.npz``
(pickle-free checkpoints holding the model, optimizer, scheduler, data order
and random-generator state, so ``--resume`` continues exactly), and
``results.json`` (centre-crop and ten-crop validation accuracy).  Ctrl-C saves
``last.npz`` mid-epoch and exits; ``--resume`` continues from that batch.
"""
import argparse
import csv
import json
import os
import signal
import sys
import time
from pathlib import Path

import tinynet  # before NumPy: it sets OpenBLAS's thread spin, read when NumPy loads it
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tinynet import backend, optim  # noqa: E402
from tinynet.data import DataLoader, ImageFolder, NoImagesError, Subset, train_val_split  # noqa: E402
from tinynet.data import transforms as T  # noqa: E402
from tinynet.nn import functional as F  # noqa: E402

from alexnet import AlexNet  # noqa: E402

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


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description="Train and evaluate AlexNet on Kaggle Dogs vs. Cats with tinynet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("TINYNET_DATA", DEFAULT_DATA),
                        help="folder of training photos (Kaggle's flat train/ layout or one folder per class); "
                             "default $TINYNET_DATA or data/catdog/train")
    parser.add_argument("--epochs", type=int, default=30, help="epochs to train (in total, when resuming)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per SGD step (the paper: 128)")
    parser.add_argument("--lr", type=float, default=0.01, help="initial learning rate")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--image-size", type=int, default=227,
                        help="crop size fed to the network (227 as in the paper; 128 trains ~3x faster on a CPU)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of each class held out for validation")
    parser.add_argument("--max-images", type=int, default=None, help="use a stratified subset of N images (quick runs)")
    parser.add_argument("--workers", type=int, default=2, help="background threads decoding JPEGs")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/alexnet_catdog", help="folder for checkpoints, metrics and plots")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.npz")
    parser.add_argument("--eval-only", action="store_true",
                        help="evaluate --checkpoint on the validation split (centre crop and ten-crop)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint for --eval-only / --predict")
    parser.add_argument("--predict", nargs="+", metavar="IMAGE", help="print class probabilities for these photos")
    parser.add_argument("--init", choices=["paper", "kaiming"], default="kaiming",
                        help="weight initialisation: the paper's N(0, 0.01) or He-normal (trains faster from scratch)")
    parser.add_argument("--patience", type=int, default=3,
                        help="epochs without validation improvement before the learning rate is divided by 10")
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--groups", type=int, choices=[1, 2], default=1, help="2: the paper's two-GPU split")
    parser.add_argument("--no-lrn", action="store_true", help="leave out local response normalisation")
    parser.add_argument("--no-ten-crop", action="store_true", help="skip the ten-crop evaluation at the end")
    return parser.parse_args(argv)


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


def open_folder(path, transform=None, max_images=None, seed=0):
    return ImageFolder(path, transform=transform, max_images=max_images, seed=seed)


# ----------------------------------------------------------------------------- evaluation
def evaluate(model, loader, description="validation"):
    """Mean loss and accuracy; ten-crop batches (N, 10, C, h, w) average the softmax over crops."""
    from tqdm import tqdm

    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with tinynet.no_grad():
        for images, labels in tqdm(loader, desc=description, leave=False, dynamic_ncols=True):
            labels_host = backend.to_numpy(labels)
            if images.ndim == 5:  # ten crops per image
                n, crops = images.shape[:2]
                logits = model(tinynet.Tensor(images.reshape((n * crops,) + images.shape[2:])))
                probabilities = F.softmax(logits, dim=1).numpy().reshape(n, crops, -1).mean(axis=1)
                log_probabilities = np.log(np.maximum(probabilities, 1e-12))
                total_loss += float(-log_probabilities[np.arange(n), labels_host].sum())
                predictions = probabilities.argmax(axis=1)
            else:
                logits = model(tinynet.Tensor(images))
                total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
                predictions = logits.numpy().argmax(axis=1)
            correct += int((predictions == labels_host).sum())
            count += len(labels_host)
    model.train()
    return total_loss / max(count, 1), correct / max(count, 1)


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_state(model, optimizer, scheduler, loader, epoch, running, history, config, statistics,
                     classes, split, best_accuracy):
    return {"kind": "alexnet_catdog", "config": config, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "loader": loader.state_dict(), "epoch": epoch, "running": running, "history": history,
            "generator": backend.generator("cpu").get_state(), "statistics": statistics,
            "classes": classes, "split": split, "best_accuracy": best_accuracy}


def model_from_checkpoint(path, device):
    state = tinynet.load(path)
    if state.get("kind") != "alexnet_catdog":
        raise tinynet.CheckpointError(f"{path} is a tinynet checkpoint but not one written by alexnet_catdog.py")
    config = state["config"]
    model = AlexNet(num_classes=len(state["classes"]), groups=config["groups"], lrn=config["lrn"],
                    dropout=config["dropout"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


# ----------------------------------------------------------------------------- plots and metrics
METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_second",
                 "epoch_seconds"]


def append_metrics(path, row):
    new = not path.exists()
    with open(path, "a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=METRIC_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in METRIC_FIELDS})


def draw_curves(path, history):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = [h["epoch"] for h in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    left.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    left.set_xlabel("epoch"), left.set_ylabel("cross-entropy loss"), left.legend(), left.grid(alpha=0.3)
    right.plot(epochs, [100 * h["train_accuracy"] for h in history], "o-", label="train")
    right.plot(epochs, [100 * h["val_accuracy"] for h in history], "o-", label="validation")
    right.set_xlabel("epoch"), right.set_ylabel("accuracy (%)"), right.legend(), right.grid(alpha=0.3)
    figure.suptitle("AlexNet on Dogs vs. Cats (tinynet)")
    figure.tight_layout()
    temporary = path.with_name(".tmp-" + path.name)
    figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
    os.replace(temporary, path)
    return True


# ----------------------------------------------------------------------------- modes
def predict(args):
    model, state = model_from_checkpoint(args.checkpoint, args.device)
    *_, ten_crop = make_transforms(state["config"]["image_size"], state["statistics"])
    from tinynet.data import BadImageError, load_image
    for path in args.predict:
        try:
            image = load_image(path)
        except (BadImageError, OSError) as error:
            print(f"{path}: cannot read this image ({error})")
            continue
        crops = ten_crop(image, np.random.default_rng(0))
        with tinynet.no_grad():
            logits = model(tinynet.tensor(crops, device=args.device))
            probabilities = F.softmax(logits, dim=1).numpy().mean(axis=0)
        ranked = ", ".join(f"{name} {p:.3f}" for name, p in sorted(zip(state["classes"], probabilities),
                                                                   key=lambda item: -item[1]))
        print(f"{path}: {ranked}")
    return 0


def evaluate_only(args):
    model, state = model_from_checkpoint(args.checkpoint, args.device)
    config = state["config"]
    _, centre, ten_crop = make_transforms(config["image_size"], state["statistics"])
    val_indices = np.asarray(state["split"]["val"])
    results = {}
    for name, transform in (("centre_crop", centre), ("ten_crop", ten_crop)):
        folder = open_folder(args.data, transform, config["max_images"], config["seed"])
        loader = DataLoader(Subset(folder, val_indices), batch_size=max(1, args.batch_size // 4),
                            num_workers=args.workers, device=args.device, seed=config["seed"])
        loss, accuracy = evaluate(model, loader, name.replace("_", " "))
        results[name] = {"loss": loss, "accuracy": accuracy}
        print(f"{name.replace('_', ' ')}: validation accuracy {100 * accuracy:.2f}% (loss {loss:.4f}) "
              f"on {len(val_indices)} images")
    return 0


def train(args):
    from tqdm import tqdm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.npz", out / "best.npz"
    if args.resume and not last_path.exists():
        print(f"--resume: no checkpoint at {last_path} (start without --resume)", file=sys.stderr)
        return 2
    resume_state = tinynet.load(last_path) if args.resume else None

    config = resume_state["config"] if resume_state else {
        "image_size": args.image_size, "batch_size": args.batch_size, "lr": args.lr, "momentum": args.momentum,
        "weight_decay": args.weight_decay, "val_fraction": args.val_fraction, "max_images": args.max_images,
        "seed": args.seed, "init": args.init, "patience": args.patience, "dropout": args.dropout,
        "groups": args.groups, "lrn": not args.no_lrn, "data": os.path.abspath(args.data)}
    tinynet.manual_seed(config["seed"])

    folder = open_folder(args.data, None, config["max_images"], config["seed"])
    classes = folder.classes
    print(f"data: {folder.summary()}")
    if resume_state:
        split = {k: np.asarray(v) for k, v in resume_state["split"].items()}
        statistics = {k: np.asarray(v) for k, v in resume_state["statistics"].items()}
    else:
        train_indices, val_indices = train_val_split(folder, config["val_fraction"], seed=config["seed"])
        split = {"train": np.asarray(train_indices), "val": np.asarray(val_indices)}
        # colour statistics of the training images only (the validation images stay unseen)
        rgb = T.compute_rgb_stats(Subset(folder, split["train"]), max_images=500, seed=config["seed"])
        statistics = {k: rgb[k] for k in ("mean", "std", "eigenvalues", "eigenvectors")}
    train_transform, centre, _ = make_transforms(config["image_size"], statistics)
    train_folder = open_folder(args.data, train_transform, config["max_images"], config["seed"])
    val_folder = open_folder(args.data, centre, config["max_images"], config["seed"])
    train_loader = DataLoader(Subset(train_folder, split["train"]), batch_size=config["batch_size"], shuffle=True,
                              drop_last=False, seed=config["seed"], num_workers=args.workers, device=args.device)
    val_loader = DataLoader(Subset(val_folder, split["val"]), batch_size=config["batch_size"],
                            seed=config["seed"], num_workers=args.workers, device=args.device)
    print(f"split: {len(split['train'])} training, {len(split['val'])} validation images; "
          f"{config['image_size']}px crops, batch {config['batch_size']}, device {args.device}")

    model = AlexNet(num_classes=len(classes), groups=config["groups"], lrn=config["lrn"],
                    dropout=config["dropout"], init=config["init"]).to(args.device)
    optimizer = optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                          weight_decay=config["weight_decay"])
    scheduler = optim.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=config["patience"])
    start_epoch, history, best_accuracy = 0, [], -1.0
    running = {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
    if resume_state:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        train_loader.load_state_dict(resume_state["loader"])
        backend.generator("cpu").set_state(resume_state["generator"])
        start_epoch, history = resume_state["epoch"], list(resume_state["history"])
        running, best_accuracy = dict(resume_state["running"]), resume_state["best_accuracy"]
        print(f"resumed from {last_path}: epoch {start_epoch + 1}, batch {train_loader.state_dict()['batch']}")

    def save(path, epoch):
        tinynet.save(checkpoint_state(model, optimizer, scheduler, train_loader, epoch, running, history, config,
                                      statistics, classes, split, best_accuracy), path)

    # Ctrl-C only raises a flag: the step in flight finishes, so the checkpoint written at the batch
    # boundary is consistent and --resume continues exactly.  A second Ctrl-C stops at once.
    interrupted = []

    def request_stop(signum, frame):
        interrupted.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous_handler = signal.signal(signal.SIGINT, request_stop)
    try:
        for epoch in range(start_epoch, args.epochs):
            model.train()
            done_batches = train_loader.state_dict()["batch"]
            progress = tqdm(train_loader, desc=f"epoch {epoch + 1}/{args.epochs}", dynamic_ncols=True,
                            initial=done_batches, total=len(train_loader))
            started = time.perf_counter()
            for images, labels in progress:
                logits = model(tinynet.Tensor(images))
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                batch = len(labels)
                running["loss"] += loss.item() * batch
                running["correct"] += int((logits.numpy().argmax(axis=1) == backend.to_numpy(labels)).sum())
                running["count"] += batch
                seconds = running["seconds"] + time.perf_counter() - started
                progress.set_postfix(loss=f"{running['loss'] / running['count']:.4f}",
                                     acc=f"{100 * running['correct'] / running['count']:.1f}%",
                                     img_s=f"{running['count'] / max(seconds, 1e-9):.1f}")
                if interrupted:
                    running["seconds"] += time.perf_counter() - started
                    save(last_path, epoch)
                    progress.close()
                    print(f"\ninterrupted: saved {last_path} at epoch {epoch + 1}, batch "
                          f"{train_loader.state_dict()['batch']}; add --resume to the same command to continue")
                    return 130
            running["seconds"] += time.perf_counter() - started
            val_loss, val_accuracy = evaluate(model, val_loader)
            row = {"epoch": epoch + 1, "train_loss": running["loss"] / max(running["count"], 1),
                   "train_accuracy": running["correct"] / max(running["count"], 1), "val_loss": val_loss,
                   "val_accuracy": val_accuracy, "lr": optimizer.param_groups[0]["lr"],
                   "images_per_second": running["count"] / max(running["seconds"], 1e-9),
                   "epoch_seconds": running["seconds"]}
            scheduler.step(val_accuracy)
            history.append(row)
            append_metrics(out / "metrics.csv", row)
            draw_curves(out / "curves.png", history)
            print(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.1f}% | "
                  f"val loss {val_loss:.4f} acc {100 * val_accuracy:.1f}% | lr {row['lr']:.3g} | "
                  f"{row['images_per_second']:.1f} img/s")
            running = {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
            if val_accuracy > best_accuracy:
                best_accuracy = val_accuracy
                save(best_path, epoch + 1)
            save(last_path, epoch + 1)
    finally:
        signal.signal(signal.SIGINT, previous_handler)

    if history and not args.no_ten_crop:
        best_model, _ = model_from_checkpoint(best_path, args.device)
        *_, ten_crop = make_transforms(config["image_size"], statistics)
        ten_folder = open_folder(args.data, ten_crop, config["max_images"], config["seed"])
        ten_loader = DataLoader(Subset(ten_folder, split["val"]), batch_size=max(1, config["batch_size"] // 8),
                                seed=config["seed"], num_workers=args.workers, device=args.device)
        centre_loss, centre_accuracy = evaluate(best_model, val_loader, "centre crop")
        ten_loss, ten_accuracy = evaluate(best_model, ten_loader, "ten-crop")
        results = {"best_checkpoint": str(best_path), "validation_images": int(len(split["val"])),
                   "centre_crop_accuracy": centre_accuracy, "ten_crop_accuracy": ten_accuracy,
                   "centre_crop_loss": centre_loss, "ten_crop_loss": ten_loss, "epochs": len(history)}
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"best checkpoint: validation accuracy {100 * centre_accuracy:.2f}% (centre crop), "
              f"{100 * ten_accuracy:.2f}% (ten-crop) on {len(split['val'])} images")
    skipped = train_folder.skipped + val_folder.skipped
    if skipped:
        print(f"{skipped} unreadable image file(s) were skipped (listed in the warnings above)")
    return 0


def main(argv=None):
    args = parse_arguments(argv)
    if (args.eval_only or args.predict) and not args.checkpoint:
        print("--eval-only and --predict need --checkpoint PATH (e.g. runs/alexnet_catdog/best.npz)",
              file=sys.stderr)
        return 2
    if args.device == "gpu" and not tinynet.gpu_available():
        print("--device gpu: no usable GPU (CuPy with a CUDA device); install the [gpu] extra or use --device cpu",
              file=sys.stderr)
        return 2
    try:
        if args.predict:
            return predict(args)
        if not os.path.isdir(args.data):
            print(NO_DATA_HELP.format(where=os.path.abspath(args.data), default=DEFAULT_DATA), file=sys.stderr)
            return 2
        return evaluate_only(args) if args.eval_only else train(args)
    except NoImagesError as error:
        print(f"{error}\n\n" + NO_DATA_HELP.format(where=os.path.abspath(args.data), default=DEFAULT_DATA),
              file=sys.stderr)
        return 2
    except tinynet.CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
