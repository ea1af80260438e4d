"""See the math run: a layer-by-layer explainer page of a network on your own photo.

    python examples/explain.py --checkpoint runs/alexnet_catdog/best.npz ../shared/data/catdog/train/cat.1.jpg
    python examples/explain.py --model alexnet PHOTO --out explain/             # fresh (untrained) weights
    python examples/explain.py --model vgg16 --image-size 224 PHOTO
    python examples/explain.py --model lenet5 --mnist ../shared/data/mnist --digit 0
    python examples/explain.py --checkpoint runs/lenet/best.npz --mnist ../shared/data/mnist --digit 7

writes ``explain/index.html`` and its images (open the file in a browser: no server, no
network).  The page shows the photo, the class probabilities, the network's totals, and for
every layer its ``tinynet.summary`` row, its output channels, their statistics, the gradient
of the loss that reached them, and the step-by-step arithmetic of the units you pick (forward
and backward), with tinynet's own numbers.  docs/explainer.md says how to read it.

The work is the library's: ``tinynet.trace`` records the pass, ``tinynet.trace.page`` writes
the page; this script reads the arguments and the input.
"""
import argparse
import os
import sys
import time

import tinynet  # noqa: F401  (its thread settings apply in any import order)
import tinynet.models as models
from tinynet.trace import trace
from tinynet.trace.inputs import digit_input, load_model, photo_input
from tinynet.trace.page import write_page


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", nargs="?", help="the photo to explain (JPEG, PNG...)")
    parser.add_argument("--checkpoint", help="a best.npz of examples/alexnet_catdog.py or lenet_mnist.py")
    parser.add_argument("--model", help=f"a registry name with fresh weights: {', '.join(models.names())}")
    parser.add_argument("--num-classes", type=int, default=2, help="classes of a fresh --model (default 2)")
    parser.add_argument("--classes", help="comma-separated class names (a checkpoint brings its own)")
    parser.add_argument("--image-size", type=int, help="crop size (default: the checkpoint's, else 227)")
    parser.add_argument("--mnist", help="MNIST folder: explain a test digit instead of a photo (LeNet-5)")
    parser.add_argument("--digit", type=int, default=0, help="which MNIST test digit (default 0)")
    parser.add_argument("--target", type=int, help="class whose loss is differentiated (default: the predicted one)")
    parser.add_argument("--channels", type=int, default=16, help="channels explained per layer (16)")
    parser.add_argument("--grid", type=int, default=3, help="explained positions per channel: grid x grid (3)")
    parser.add_argument("--map-channels", type=int, default=96, help="channels drawn per layer (96)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a fresh --model's weights")
    parser.add_argument("--out", default="explain", help="output folder (default explain/)")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (args.model is None):
        parser.error("give exactly one of --checkpoint and --model")
    if args.mnist is None and args.photo is None:
        parser.error("give a PHOTO, or --mnist FOLDER for a digit")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    started = time.perf_counter()
    model, info = load_model(args.checkpoint, args.model, num_classes=args.num_classes, seed=args.seed)
    classes = args.classes.split(",") if args.classes else info["classes"]
    if args.mnist:
        from tinynet.data.mnist import load_mnist

        images, labels = load_mnist(args.mnist, "test")
        x, shown = digit_input(images[args.digit], info["digit_scaling"])
        classes = classes or [str(d) for d in range(10)]
        subtitle = f"MNIST test digit {args.digit} (label {labels[args.digit]})"
    else:
        size = args.image_size or info["image_size"] or 227
        x, shown = photo_input(args.photo, size, info["statistics"])
        subtitle = f"{os.path.basename(args.photo)}, centre crop {size}x{size}"
    source = args.checkpoint or f"fresh {args.model} (seed {args.seed})"
    t = trace(model, x, target=args.target)
    traced = time.perf_counter() - started
    result = write_page(t, args.out, photo_rgb=shown, classes=classes,
                        title=f"{info['config']['name']}: the math of one pass", subtitle=f"{subtitle}; {source}",
                        channels=args.channels, grid=args.grid, map_channels=args.map_channels)
    total = time.perf_counter() - started
    print(f"{result['path']}: {result['bytes'] / 1024 ** 2:.1f} MiB with its images "
          f"(HTML {result['html_bytes'] / 1024 ** 2:.1f} MiB); trace {traced:.1f} s, page {result['seconds']:.1f} s, "
          f"total {total:.1f} s")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
