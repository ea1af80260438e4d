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
import os
import sys

from PIL import Image

import tinynet
from tinynet.models.alexnet import load_alexnet
from tinynet.viz import filter_grid, grid_shape


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
