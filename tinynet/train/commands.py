"""What the command lines over the library share besides the loop: their exit on missing data."""
import os
import sys

__all__ = ["main_for_mnist", "MNIST_NO_DATA_HELP"]

MNIST_NO_DATA_HELP = """\
No MNIST files found at {where}.

{prog} reads the four original MNIST files in IDX format (plain or .gz):
  train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte
Put them in one folder (this project expects ../shared/data/mnist from its root) and point --data at it.
"""


def main_for_mnist(run, args, prog):
    """``run(args)``, with the MNIST reader's errors (and bad settings) as a message and exit code 2;
    ``prog`` names the command in the message."""
    from ..data import IDXError, MNISTNotFoundError

    try:
        return run(args)
    except MNISTNotFoundError as error:
        print(f"{error}\n\n" + MNIST_NO_DATA_HELP.format(where=os.path.abspath(args.data), prog=prog), file=sys.stderr)
        return 2
    except IDXError as error:
        print(f"error: a damaged MNIST file: {error}", file=sys.stderr)
        return 2
    except ValueError as error:     # e.g. a --val-size that leaves nothing to train on
        print(f"error: {error}", file=sys.stderr)
        return 2
