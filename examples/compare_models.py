"""The comparison lecture's table, computed from the models: AlexNet, VGG-16/19, GoogLeNet, ResNet-18...152.

    python examples/compare_models.py                      # the table (about a minute on 2 cores)
    python examples/compare_models.py --models alexnet,resnet50
    python examples/compare_models.py --notes vgg16        # the notes' per-layer table of VGG-16
    python examples/compare_models.py --summary googlenet  # tinynet.summary of one network

Each network is built from the registry (``examples/models``) with fresh weights and run once, at
its paper input size, on a zero image; the depth, layer counts, kernel sizes, parameters,
multiply-adds and activation memory are read from ``tinynet.summary`` and the autograd graph.  The
top-5 errors are the published ones, cited with their source (see models/compare.py).
"""
import argparse
import sys
import time

import tinynet  # noqa: F401  (its thread settings apply in any import order)

import tinynet.models as models
from tinynet.models.compare import NETWORKS, comparison_table, describe, notes_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(NETWORKS),
                        help=f"comma-separated subset of {', '.join(NETWORKS)} (default: all)")
    parser.add_argument("--notes", metavar="NAME", help="print NAME's layers in the notes' VGG-16 format")
    parser.add_argument("--summary", metavar="NAME", help="print tinynet.summary of NAME at its paper size")
    args = parser.parse_args(argv)

    if args.notes or args.summary:
        name = args.notes or args.summary
        if name not in NETWORKS:
            parser.error(f"unknown network {name!r}; choose from {', '.join(NETWORKS)}")
        _, registry_name, options, size, *_ = NETWORKS[name]
        tinynet.manual_seed(0)
        model = models.create(registry_name, **options)
        if args.notes:
            lines, _ = notes_table(model, (3, size, size))
            print("\n".join(lines))
        else:
            print(tinynet.summary(model, (3, size, size)))
        return 0

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        parser.error(f"unknown network(s) {', '.join(unknown)}; choose from {', '.join(NETWORKS)}")
    rows = []
    for name in names:
        start = time.perf_counter()
        rows.append(describe(name))
        print(f"  {NETWORKS[name][0]}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(comparison_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
