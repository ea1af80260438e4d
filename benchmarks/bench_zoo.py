"""ResNet-18/50 and VGG-16 (tinynet's registry against benchmarks/torch_zoo.py) and their characteristic layers.

A section of ``python benchmarks/run.py`` (``--only zoo``).
"""
from __future__ import annotations

import gc

from harness import _alternate, _median, sgd_pair, time_fwd_bwd, training_step_pair, twin_difference


# ====================================================================== the model zoo
ZOO = ["resnet18", "resnet50", "vgg16"]
ZOO_TARGETS = {"resnet18": 1.2, "resnet50": 1.2, "vgg16": 1.5}


def zoo_layer_cases(batch, size):
    """The new networks' characteristic layers at ResNet's shapes (56 px = size / 4 at 224)."""
    from torch import nn as torch_nn
    from tinynet import nn
    mid = max(4, size // 4)
    return [
        # (label, tinynet layer, torch layer, input shape, input gradient?, target)
        ("batchnorm2d 64ch (train)", nn.BatchNorm2d(64), torch_nn.BatchNorm2d(64), (batch, 64, mid, mid), True, 1.0),
        ("conv 1x1 256->64", nn.Conv2d(256, 64, 1, bias=False), torch_nn.Conv2d(256, 64, 1, bias=False),
         (batch, 256, mid, mid), True, None),
        ("conv 1x1 stride 2 256->512", nn.Conv2d(256, 512, 1, stride=2, bias=False),
         torch_nn.Conv2d(256, 512, 1, stride=2, bias=False), (batch, 256, mid, mid), True, None),
        ("conv 3x3 stride 2 64->128", nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False),
         torch_nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False), (batch, 64, mid, mid), True, None),
        ("conv 7x7 stride 2 stem 3->64", nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
         torch_nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), (batch, 3, size, size), False, None),
    ]


def _copy_into_torch(tiny_module, torch_module):
    """Load tinynet's weights (and BatchNorm statistics) into the torch module with the same names."""
    import numpy as np
    import torch
    torch_module.load_state_dict({name: torch.from_numpy(np.array(value))
                                  for name, value in tiny_module.state_dict().items()})


def bench_zoo(args, table, results, headlines):
    """ResNet-18, ResNet-50, VGG-16 (tinynet's registry vs benchmarks/torch_zoo.py): training steps;
    then BatchNorm and the 1x1, stride-2 3x3 and 7x7-stem convolutions as layers."""
    import numpy as np
    import tinynet
    import tinynet.models as models
    import torch_zoo     # a sibling module (benchmarks/ is on sys.path when a script here runs)

    batch, size = args.zoo_batch, args.zoo_size
    rng = np.random.default_rng(5)
    results["zoo"] = {"batch": batch, "size": size, "networks": {}, "layers": {}}
    warmup, reps = args.net_reps
    for name in args.zoo_models:
        tinynet.manual_seed(0)
        tiny_model = models.create(name, num_classes=args.classes)
        torch_model = torch_zoo.create(name, args.classes)
        _copy_into_torch(tiny_model, torch_model)
        check = twin_difference(tiny_model, torch_model, rng.standard_normal((2, 3, size, size)).astype(np.float32))
        tiny_opt, torch_opt = sgd_pair(tiny_model, torch_model)
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        labels = rng.integers(0, args.classes, size=batch).astype(np.int64)
        run_tiny, run_torch = training_step_pair(tiny_model, tiny_opt, torch_model, torch_opt, x, labels)
        tiny, ref = _alternate([run_tiny, run_torch], warmup, reps)
        t, r = batch / _median(tiny["s"]), batch / _median(ref["s"])
        results["zoo"]["networks"][name] = {"same_function_check": check, "tinynet_s": tiny["s"], "torch_s": ref["s"]}
        table.add(f"{name} train_step b={batch} {size}px", "img/s", t, r, t / r, (">=", ZOO_TARGETS[name]),
                  note=f"same weights: max |logit diff| / max |logit| {check:.0e}")
        headlines.append(f"{name} train_step b={batch} {size}px: tinynet {t:.2f} img/s, torch {r:.2f} img/s, "
                         f"ratio {t / r:.2f}")
        print("  " + headlines[-1], flush=True)
        del tiny_model, torch_model, tiny_opt, torch_opt
        gc.collect()

    warmup, reps = args.layer_reps
    for label, tiny_layer, torch_layer, shape, needs_input_grad, target in zoo_layer_cases(batch, size):
        _copy_into_torch(tiny_layer, torch_layer)
        x = rng.standard_normal(shape).astype(np.float32)
        tiny, ref = time_fwd_bwd(tiny_layer, torch_layer, x, needs_input_grad, warmup, reps)
        results["zoo"]["layers"][label] = {"input_shape": shape, "tinynet_s": tiny, "torch_s": ref}
        t, r = _median(tiny["fwd+bwd"]) * 1e3, _median(ref["fwd+bwd"]) * 1e3
        table.add(f"{label} fwd+bwd [{'x'.join(map(str, shape))}]", "ms", t, r, r / t,
                  None if target is None else (">=", target))
        print(f"  {label:30s} fwd+bwd tinynet {t:8.1f} ms  torch {r:8.1f} ms", flush=True)
