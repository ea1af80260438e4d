"""Train and evaluate AlexNet on Kaggle's Dogs vs. Cats photos with tinynet.

    python examples/alexnet_catdog.py --data ../shared/data/catdog/train --image-size 128 --epochs 30 \\
        --test-fraction 0.1

AlexNet and the photos are this command's defaults; everything else -- the recipe (crops, flips,
PCA colour noise, SGD with momentum and weight decay, the learning-rate schedule, ten-crop
evaluation), the three splits with the test split scored once, checkpoints with exact
``--resume``, ``--eval-only``, ``--predict``, ensembles, ``--distributed`` -- is
``tinynet.train.images`` (its docstring and ``--help`` say all) over the one training loop,
``tinynet.train.Trainer``.  ``--model NAME`` trains another network of ``tinynet.models``; the
same command without AlexNet in its name is ``examples/train_classifier.py``.

    python examples/alexnet_catdog.py --model resnet18 --image-size 128 --batch-size 32 --lr 0.02 \\
        --test-fraction 0.1 --out runs/resnet18
    python examples/alexnet_catdog.py --eval-only --checkpoint runs/alexnet_catdog/best.npz runs/resnet18/best.npz
    mpiexec -n 2 python examples/alexnet_catdog.py --distributed --data ... --batch-size 64
"""
import sys

from tinynet.train.images import ALEXNET_CATDOG, main

if __name__ == "__main__":
    sys.exit(main(command=ALEXNET_CATDOG))
