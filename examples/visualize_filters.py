"""AlexNet's first-layer filters as an image grid, like Figure 3 of the paper.

CONV1 has 96 filters of size 11x11x3.  Each one is a small RGB image: the input patch that excites
the unit most is the filter itself (scaled), so drawing the weights shows what the first layer
looks for.  After training, the paper's Figure 3 shows oriented edges, gratings and colour blobs;
with the two-GPU split (``groups=2``) the 48 filters of one GPU (the top four rows of the 8x12 grid)
are largely colour-agnostic and the 48 of the other colour-specific.  A fresh (untrained) network
shows noise.

    python examples/visualize_filters.py --checkpoint runs/alexnet_catdog/best.npz --out filters.png
    python examples/visualize_filters.py --out fresh_filters.png          # an untrained AlexNet

Grid geometry: ``rows x cols`` tiles of ``(11*scale) x (11*scale)`` pixels separated (and
surrounded) by ``pad`` pixels of background, so the image is
``cols*11*scale + (cols+1)*pad`` wide and ``rows*11*scale + (rows+1)*pad`` high
(8x12 tiles at scale 4, pad 1: 541 x 361 pixels).

Each filter is mapped to [0, 255] on its own (``--normalize filter``: its smallest weight black,
its largest white, as in the paper's figure) or all with one common scale (``--normalize global``,
which also shows which filters have grown large).
"""
import argparse
import math
import os
import sys

import tinynet  # its thread settings apply in any import order (tinynet/_threads.py)
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tinynet.models.alexnet import AlexNet  # noqa: E402


# ----------------------------------------------------------------------------- the model
def load_alexnet(checkpoint=None, num_classes=2, groups=1, init="paper", seed=0):
    """``(model, info)``: an AlexNet from a checkpoint, or a fresh one (seeded) when ``checkpoint`` is None.

    The checkpoint is a ``tinynet.save``'d dict whose ``"model"`` entry is the state dict
    (``examples/alexnet_catdog.py`` writes one, with ``"config"``, ``"classes"`` and ``"statistics"``);
    a bare state dict works too.  The number of classes comes from ``"classes"`` or
    ``config["num_classes"]`` or FC8's weight, ``groups`` from the config or CONV2's weight.
    ``info`` holds ``config`` (dict), ``statistics`` (dict with ``mean``/``std``, or None) and
    ``classes`` (list or None).
    """
    if checkpoint is None:
        tinynet.manual_seed(seed)
        model = AlexNet(num_classes=num_classes, groups=groups, init=init)
        return model.eval(), {"config": {}, "statistics": None, "classes": None}
    state = tinynet.load(checkpoint)
    weights = state["model"] if isinstance(state.get("model"), dict) else state
    if "classifier.fc8.weight" not in weights or "features.conv2.weight" not in weights:
        raise tinynet.CheckpointError(
            f"{checkpoint}: no AlexNet weights (expected a dict with a 'model' state dict holding "
            f"'features.conv1.weight' ... 'classifier.fc8.weight')")
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    classes = state.get("classes") if isinstance(state.get("classes"), (list, tuple)) else None
    num_classes = (len(classes) if classes else config.get("num_classes")
                   or int(weights["classifier.fc8.weight"].shape[0]))
    groups = config.get("groups") or 96 // int(weights["features.conv2.weight"].shape[1])
    model = AlexNet(num_classes=num_classes, groups=groups, lrn=config.get("lrn", True),
                    dropout=config.get("dropout", 0.5))
    model.load_state_dict(weights)
    statistics = state.get("statistics") if isinstance(state.get("statistics"), dict) else None
    return model.eval(), {"config": config, "statistics": statistics, "classes": classes}


# ----------------------------------------------------------------------------- the grid
def grid_shape(count):
    """Rows and columns for ``count`` tiles: 8x12 for AlexNet's 96 (the paper's layout), else about square."""
    if count == 96:
        return 8, 12
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def grid_size(rows, cols, tile_h, tile_w, scale=4, pad=1):
    """``(height, width)`` in pixels of a grid of ``rows x cols`` tiles of ``tile_h x tile_w`` weights."""
    return rows * tile_h * scale + (rows + 1) * pad, cols * tile_w * scale + (cols + 1) * pad


def normalize_filters(weight, mode="filter"):
    """Map weights (O, C, kh, kw) to [0, 1]: per filter (its min -> 0, max -> 1) or with one global scale.

    A constant filter (nothing to show) becomes mid grey.
    """
    w = np.asarray(weight, dtype=np.float64)
    if mode == "filter":
        low = w.min(axis=(1, 2, 3), keepdims=True)
        high = w.max(axis=(1, 2, 3), keepdims=True)
    elif mode == "global":
        low, high = w.min(), w.max()
    else:
        raise ValueError(f"normalize must be 'filter' or 'global', got {mode!r}")
    span = np.asarray(high - low)
    scaled = np.where(span > 0, (w - low) / np.where(span > 0, span, 1.0), 0.5)
    return scaled


def filter_grid(weight, rows=None, cols=None, scale=4, pad=1, normalize="filter", background=255):
    """An (H, W, 3) uint8 image of the filters of ``weight`` (O, C, kh, kw), one tile per filter, row by row.

    C = 3 is drawn as RGB, C = 1 as grey; other channel counts show the mean over channels in grey.
    """
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"expected a convolution weight (O, C, kh, kw), got shape {weight.shape}")
    count, channels, kh, kw = weight.shape
    if rows is None or cols is None:
        rows, cols = grid_shape(count)
    if rows * cols < count:
        raise ValueError(f"a {rows}x{cols} grid has no room for {count} filters")
    tiles = normalize_filters(weight, normalize)
    if channels != 3:
        tiles = np.repeat(tiles.mean(axis=1, keepdims=True), 3, axis=1)
    tiles = np.round(tiles.transpose(0, 2, 3, 1) * 255).astype(np.uint8)     # (O, kh, kw, 3)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)                 # nearest-neighbour zoom
    height, width = grid_size(rows, cols, kh, kw, scale, pad)
    image = np.full((height, width, 3), background, dtype=np.uint8)
    th, tw = kh * scale, kw * scale
    for index in range(count):
        r, c = divmod(index, cols)
        top, left = pad + r * (th + pad), pad + c * (tw + pad)
        image[top:top + th, left:left + tw] = tiles[index]
    return image


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Draw AlexNet's CONV1 filters (96 of 11x11x3) as an 8x12 image grid, like Figure 3 "
                    "of the paper.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", default=None,
                        help="a tinynet.save'd checkpoint (e.g. from alexnet_catdog.py); default: a fresh AlexNet")
    parser.add_argument("--out", default="conv1_filters.png", help="PNG file to write")
    parser.add_argument("--scale", type=int, default=4, help="screen pixels per weight")
    parser.add_argument("--pad", type=int, default=1, help="background pixels between tiles")
    parser.add_argument("--normalize", choices=["filter", "global"], default="filter",
                        help="stretch each filter to [0, 255] on its own, or all with one scale")
    parser.add_argument("--groups", type=int, choices=[1, 2], default=1, help="fresh model: the two-GPU split")
    parser.add_argument("--init", choices=["paper", "kaiming"], default="paper", help="fresh model: initialisation")
    parser.add_argument("--seed", type=int, default=0, help="fresh model: random seed")
    args = parser.parse_args(argv)
    if args.scale < 1 or args.pad < 0:
        parser.error("--scale must be >= 1 and --pad >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    model, _ = load_alexnet(args.checkpoint, groups=args.groups, init=args.init, seed=args.seed)
    weight = tinynet.backend.to_numpy(model.features.conv1.weight.data)
    image = filter_grid(weight, scale=args.scale, pad=args.pad, normalize=args.normalize)
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(image).save(args.out)
    rows, cols = grid_shape(weight.shape[0])
    source = args.checkpoint or f"a fresh AlexNet (init={args.init}, seed={args.seed})"
    print(f"{weight.shape[0]} CONV1 filters of {weight.shape[2]}x{weight.shape[3]}x{weight.shape[1]} from "
          f"{source}: {rows}x{cols} grid, {image.shape[1]}x{image.shape[0]} px -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
