"""AlexNet now lives in the model zoo, ``examples/models/alexnet.py`` (registry name ``alexnet``).

This alias keeps the old imports working: ``from alexnet import AlexNet`` gives the same class as
``from models.alexnet import AlexNet`` (``python examples/x.py`` has ``examples/`` on the path).
"""
from models.alexnet import AlexNet  # noqa: F401

__all__ = ["AlexNet"]
