"""``tinynet.trace``: watch the math run inside a network, layer by layer, on one input.

    >>> from tinynet.trace import trace
    >>> t = trace(model, x)            # forward + backward, every layer recorded
    >>> t["CONV1"].output.shape, t["CONV1"].grad_output.shape, t["CONV1"].weight_grads["weight"].shape

:mod:`tinynet.trace.recorder` records the pass (forward hooks and tensor hooks, no layer
changed); :mod:`tinynet.trace.units` writes out the arithmetic of single units with the
recorded numbers; :mod:`tinynet.trace.images` draws channel grids, filters and saliency maps;
:mod:`tinynet.trace.page` builds the static explainer page of ``examples/explain.py``.
"""
from .recorder import Geometry, LayerRecord, Trace, trace

__all__ = ["trace", "Trace", "LayerRecord", "Geometry"]
