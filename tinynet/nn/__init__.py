"""tinynet.nn: Module, Parameter, layers, functional forms and initialisers.

Every public Module class defined in ``layers.py`` is exported here by name, so
a new layer class written there is ``nn.<Name>`` without an edit to this file.
"""
from . import functional, init, layers
from .module import Module
from .parameter import Parameter

_LAYERS = {name: value for name, value in vars(layers).items()
           if isinstance(value, type) and issubclass(value, Module) and not name.startswith("_")
           and value.__module__ == layers.__name__}
globals().update(_LAYERS)

__all__ = ["Module", "Parameter", "functional", "init"] + sorted(_LAYERS)
