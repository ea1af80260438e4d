"""Image retrieval with AlexNet's FC7 features (section 6.1 and Figure 4 of the paper).

The 4096 activations after FC7's ReLU describe an image in the network's own terms.  "If two
images produce feature activation vectors with a small Euclidean separation, we can say that the
higher levels of the neural network consider them to be similar": for a query image, the images
of a folder whose FC7 vectors are nearest in Euclidean distance are retrieved.  A trained network
finds images of the same kind even when they look different pixel by pixel (other poses, other
colours); an untrained one only matches crude colour and brightness.

    python examples/retrieval.py --checkpoint runs/alexnet_catdog/best.npz \\
        --data ../shared/data/catdog/train --query ../shared/data/catdog/train/cat.1.jpg --k 5

prints the neighbours (distance, path, class) and writes a contact sheet: one row per query, the
query first, then its ``k`` nearest images from nearest to farthest, each with its distance.

Sheet geometry: ``(k+1)`` tiles of ``thumb x thumb`` pixels plus a ``label``-pixel caption band
under each, separated (and surrounded) by ``gap`` pixels:
``width = (k+1)*thumb + (k+2)*gap``, ``height = rows*(thumb+label) + (rows+1)*gap``.

Distances are computed as ``||q - f||^2 = ||q||^2 + ||f||^2 - 2 q.f`` (one matrix product for all
pairs), clipped at 0 against rounding.  A query that is itself in the folder is left out of its own
neighbours.
"""
import argparse
import os
import sys
import warnings

import tinynet  # its thread settings apply in any import order (tinynet/_threads.py)
import numpy as np
from PIL import Image, ImageDraw

from tinynet.data import BadImageError, ImageFolder, load_image
from tinynet.data import transforms as T
from tinynet.models.alexnet import load_alexnet
from tinynet.neighbours import nearest_neighbours

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- features
def make_transform(image_size, statistics=None):
    """Resize the shorter side to ``image_size * 256/227`` (the paper's 256 for 227), centre-crop, normalise."""
    mean = statistics["mean"] if statistics else IMAGENET_MEAN
    std = statistics["std"] if statistics else IMAGENET_STD
    return T.Compose([T.Resize(int(round(image_size * 256 / 227))), T.CenterCrop(image_size),
                      T.ToArray(), T.Normalize(mean, std)])


def fc7_features(model, paths, transform, batch_size=16):
    """``(features (n, 4096) float32, kept paths)``; unreadable images are skipped with a warning."""
    features, kept, batch, batch_paths = [], [], [], []

    def flush():
        if batch:
            out = model.fc7_features(tinynet.tensor(np.stack(batch)))
            features.append(tinynet.backend.to_numpy(out.data).astype(np.float32))
            kept.extend(batch_paths)
            batch.clear()
            batch_paths.clear()

    for path in paths:
        try:
            image = load_image(path, getattr(transform, "decode_hint", None))
        except BadImageError as error:
            warnings.warn(f"skipping {path}: {error}")
            continue
        batch.append(transform(image))
        batch_paths.append(path)
        if len(batch) == batch_size:
            flush()
    flush()
    if not features:
        return np.zeros((0, 4096), dtype=np.float32), []
    return np.concatenate(features), kept


# ----------------------------------------------------------------------------- the contact sheet
def sheet_size(rows, k, thumb=128, gap=4, label=16):
    """``(height, width)`` in pixels of a sheet with ``rows`` queries and ``k`` neighbours each."""
    return rows * (thumb + label) + (rows + 1) * gap, (k + 1) * thumb + (k + 2) * gap


def thumbnail(path, size):
    try:
        image = load_image(path, (size, size))
    except BadImageError:
        return Image.new("RGB", (size, size), (128, 128, 128))
    return T.CenterCrop(size)(T.Resize(size)(image))


def contact_sheet(rows, k, thumb=128, gap=4, label=16):
    """Draw ``rows``: a list of ``[(path, caption), ...]`` (query first, then up to ``k`` neighbours)."""
    height, width = sheet_size(len(rows), k, thumb, gap, label)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, tiles in enumerate(rows):
        top = gap + r * (thumb + label + gap)
        for c, (path, caption) in enumerate(tiles[:k + 1]):
            left = gap + c * (thumb + gap)
            sheet.paste(thumbnail(path, thumb), (left, top))
            if c == 0:   # frame the query
                draw.rectangle([left - 1, top - 1, left + thumb, top + thumb], outline=(200, 0, 0))
            if label:
                draw.text((left + 2, top + thumb + 2), caption[:max(1, thumb // 6)], fill=(0, 0, 0))
    return sheet


def class_from_name(path, folder):
    """The class of an image outside the folder, read the folder's way: 'cat.1.jpg' or '.../cat/x.jpg'."""
    if folder.layout == "flat":
        name = os.path.basename(path).split(".", 1)[0]
    else:
        name = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return name if name in folder.class_to_idx else None


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="FC7 features of a folder of images, and for each query image its nearest neighbours by "
                    "Euclidean distance (AlexNet paper, section 6.1), as a list and a PNG contact sheet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of images (flat 'label.N.jpg' or one folder per class)")
    parser.add_argument("--query", nargs="+", default=None, metavar="IMAGE",
                        help="query image(s); default: the first image of the folder")
    parser.add_argument("--k", type=int, default=5, help="neighbours per query")
    parser.add_argument("--checkpoint", default=None,
                        help="a tinynet.save'd checkpoint (e.g. from alexnet_catdog.py); default: a fresh AlexNet")
    parser.add_argument("--image-size", type=int, default=None,
                        help="crop size fed to the network (default: the checkpoint's, else 128; at least 63)")
    parser.add_argument("--max-images", type=int, default=None,
                        help="use a stratified subset of N images of the folder")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="retrieval.png", help="contact sheet PNG to write")
    parser.add_argument("--thumb", type=int, default=128, help="thumbnail size on the sheet, in pixels")
    parser.add_argument("--seed", type=int, default=0, help="fresh model and --max-images subset seed")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be >= 1")
    if args.image_size is not None and args.image_size < 63:
        parser.error("--image-size must be at least 63 (AlexNet's smallest input)")
    return args


def main(argv=None):
    args = parse_args(argv)
    model, info = load_alexnet(args.checkpoint, seed=args.seed)
    image_size = args.image_size or info["config"].get("image_size") or 128
    transform = make_transform(image_size, info["statistics"])

    folder = ImageFolder(args.data, max_images=args.max_images, seed=args.seed)
    paths = [path for path, _ in folder.samples]
    label_of = {os.path.realpath(path): folder.classes[label] for path, label in folder.samples}
    features, paths = fc7_features(model, paths, transform, args.batch_size)
    if not paths:
        print(f"no readable images in {args.data}", file=sys.stderr)
        return 1
    index_of = {os.path.realpath(path): i for i, path in enumerate(paths)}
    queries = args.query or [paths[0]]
    query_features, query_paths = fc7_features(model, queries, transform, args.batch_size)
    if not query_paths:
        print("no readable query image", file=sys.stderr)
        return 1
    source = args.checkpoint or f"a fresh AlexNet (seed {args.seed})"
    print(f"FC7 features (4096-d) of {len(paths)} images in {args.data} at {image_size} px, from {source}")

    sheet_rows = []
    for query, feature in zip(query_paths, query_features):
        key = os.path.realpath(query)
        order, distances = nearest_neighbours(feature, features, args.k, exclude=index_of.get(key))
        query_class = label_of.get(key) or class_from_name(query, folder)
        print(f"\nquery: {query}" + (f" ({query_class})" if query_class else ""))
        same = 0
        tiles = [(query, "query" + (f" {query_class}" if query_class else ""))]
        for rank, (i, distance) in enumerate(zip(order, distances), start=1):
            neighbour_class = label_of.get(os.path.realpath(paths[i]), "")
            same += bool(query_class) and neighbour_class == query_class
            suffix = f" ({neighbour_class})" if neighbour_class else ""
            print(f"  {rank:2d}. distance {distance:10.4f}  {paths[i]}{suffix}")
            tiles.append((paths[i], f"{rank}: {distance:.3g}"))
        if query_class:
            print(f"  {same} of {len(order)} neighbours share the query's class ({query_class})")
        sheet_rows.append(tiles)

    sheet = contact_sheet(sheet_rows, args.k, args.thumb)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    sheet.save(args.out)
    print(f"\ncontact sheet: {len(sheet_rows)} row(s) of 1 query + {args.k} neighbours, "
          f"{sheet.width}x{sheet.height} px -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
