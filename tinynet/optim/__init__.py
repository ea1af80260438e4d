"""tinynet.optim: SGD, Adam and learning-rate schedules."""
from . import lr_scheduler
from .adam import Adam
from .lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau, StepLR
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "StepLR", "ReduceLROnPlateau", "CosineAnnealingLR", "lr_scheduler"]
