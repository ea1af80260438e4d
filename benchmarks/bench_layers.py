"""AlexNet's layers one by one at their real shapes, forward and backward, tinynet against PyTorch.

A section of ``python benchmarks/run.py`` (``--only layers``).
"""
from __future__ import annotations

from harness import LAYERS, _median, time_fwd_bwd


# ====================================================================== per-layer timings
def layer_input_shapes(torch_model, batch, size):
    """Input shape of every named layer of the torch model at ``batch`` x 3 x size x size."""
    import torch
    shapes = {}
    hooks = []
    for name, module in list(torch_model.features.named_children()) + list(torch_model.classifier.named_children()):
        def record(module, inputs, name=name):
            shapes.setdefault(name, tuple(inputs[0].shape))     # returns None: inputs unchanged
        hooks.append(module.register_forward_pre_hook(record))
    with torch.no_grad():
        torch_model(torch.zeros((1, 3, size, size)))
    for hook in hooks:
        hook.remove()
    return {name: (batch,) + shape[1:] for name, shape in shapes.items()}


def _named_layer(model, name):
    layer = getattr(model.features, name, None)
    return getattr(model.classifier, name) if layer is None else layer


def bench_layers(args, tiny_model, torch_model, table, results):
    import numpy as np

    shapes = layer_input_shapes(torch_model, args.layer_batch, args.size)
    rng = np.random.default_rng(1)
    warmup, reps = args.layer_reps
    batch = args.layer_batch
    results["layers"] = {}
    for name in LAYERS:
        shape = shapes[name]
        x = rng.standard_normal(shape).astype(np.float32)
        needs_input_grad = name != "conv1"
        tiny_layer = _named_layer(tiny_model, name)
        torch_layer = _named_layer(torch_model, name)
        tiny, ref = time_fwd_bwd(tiny_layer, torch_layer, x, needs_input_grad, warmup, reps)
        results["layers"][name] = {"input_shape": shape, "tinynet_s": tiny, "torch_s": ref}
        # issue 13: conv1 >= 1.0x; the other layers keep the earlier rounds' bounds
        bound = 1.0 if name.startswith(("pool", "norm")) or name == "conv1" else 0.8
        shape_text = "x".join(str(s) for s in shape)
        for part in ("fwd", "bwd", "fwd+bwd"):
            t, r = _median(tiny[part]) * 1e3, _median(ref[part]) * 1e3
            table.add(f"{name} {part} b={batch}" + (f" [{shape_text}]" if part == "fwd" else ""),
                      "ms", t, r, r / t, (">=", bound) if part == "fwd+bwd" else None)
        print(f"  {name:9s} fwd+bwd tinynet {_median(tiny['fwd+bwd']) * 1e3:8.1f} ms  "
              f"torch {_median(ref['fwd+bwd']) * 1e3:8.1f} ms", flush=True)
