"""AlexNet in the registry (``models.create("alexnet", num_classes=2, groups=2)``).

The class still lives in ``examples/alexnet.py`` while that file is being extended (paper-layout
options); this module registers it by importing it from there, so the registry and the existing
``from alexnet import AlexNet`` imports build the same network.
"""
from alexnet import AlexNet


def alexnet(num_classes=1000, **options):
    """AlexNet (Krizhevsky et al., 2012); options are AlexNet's keyword arguments (groups, lrn, ...)."""
    return AlexNet(num_classes=num_classes, **options)


MODELS = {"alexnet": alexnet}
