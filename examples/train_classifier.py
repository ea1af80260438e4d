"""Train and evaluate any network of ``tinynet.models`` on a folder of labelled photos.

    python examples/train_classifier.py --model resnet18 --data my_photos/ --image-size 128 \\
        --batch-size 32 --lr 0.02 --schedule cosine --warmup-epochs 2 --epochs 30 --test-fraction 0.1

``--data`` holds one sub-folder per class (my_photos/cat/*.jpg, my_photos/dog/*.jpg, ...) or flat
files named CLASS.N.jpg; ``--out`` defaults to runs/MODEL.  The flags, outputs and checkpoints are
those of ``examples/alexnet_catdog.py`` (``--help``; ``tinynet.train.images``).  The same command
is ``python -m tinynet.train``.
"""
import sys

from tinynet.train.images import GENERIC, main

if __name__ == "__main__":
    sys.exit(main(command=GENERIC))
