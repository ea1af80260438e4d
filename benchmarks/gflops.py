#!/usr/bin/env python
"""How close each network's training step comes to the machine's GEMM peak, and where the rest goes.

    python benchmarks/gflops.py                                   # AlexNet b=64 227 px, ResNet-18/50 b=32, VGG-16 b=16
    python benchmarks/gflops.py --models resnet18 --batch 32 --reps 3 --markdown gflops.md
    python benchmarks/gflops.py --smoke                           # tiny shapes: the code paths run

A tinynet-only process (NumPy imported first, PyTorch never loaded):

1. **The peak**: single-precision GEMM through NumPy's BLAS (the library tinynet's convolutions
   and linear layers call) at the same thread count, square n x n x n, best median over sizes.
2. **The step**: zero_grad, forward, cross-entropy, backward, SGD (momentum 0.9, weight decay
   5e-4) -- the median of ``--reps`` timed steps after ``--warmup``.
3. **The work**, counted the textbook way: every convolution and linear layer as its direct
   multiply-adds (``tinynet.summary``'s ``mult_adds``, whatever algorithm the kernel runs:
   Winograd does fewer multiplications, so its layers can pass the GEMM peak), 2 FLOP each, once
   for the forward pass, once for the weight gradient and once for the input gradient (except the
   first layer, whose input needs none).  Achieved GFLOP/s = that count / the step's median time.
4. **Per layer**: every leaf module of the network, timed alone (forward + backward at its own
   input shape, input gradient as in the network), layers of identical shape timed once and
   multiplied by their count.  "rest of the step" is the step's median less the sum of the
   layers: the loss, the residual additions, the optimizer, autograd and Python.  Layers timed
   alone run with warm caches, so that remainder is an estimate.
"""
import argparse
import json
import os
import sys
import time
from collections import OrderedDict

import harness as bench  # thread set-up, machine facts (a sibling module: benchmarks/ is on sys.path)

DEFAULT_BATCH = {"alexnet": 64, "resnet18": 32, "resnet50": 32, "vgg16": 16}
DOT_PRODUCT_LAYERS = ("Conv2d", "Linear")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="alexnet,resnet18,resnet50,vgg16",
                        help="comma list of registry names (tinynet.models.names())")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch for every model (default: alexnet 64, resnet18/50 32, vgg16 16)")
    parser.add_argument("--size", type=int, default=None, help="image size (default 227 for AlexNet, else 224)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5, help="timed training steps (and layer calls)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gemm-sizes", default="1024,2048,4096", help="n of the n x n x n peak GEMMs")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one repetition")
    parser.add_argument("--markdown", default=None, help="append the tables here")
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.reps, args.warmup, args.classes, args.gemm_sizes = 1, 1, 10, "128"
    args.models = [m for m in args.models.split(",") if m]
    args.gemm_sizes = [int(n) for n in args.gemm_sizes.split(",") if n]
    return args


def image_size(args, model):
    if args.smoke:
        return 67 if model == "alexnet" else 32
    return args.size or (227 if model == "alexnet" else 224)


def batch_size(args, model):
    if args.smoke:
        return 2
    return args.batch or DEFAULT_BATCH.get(model, 32)


# ====================================================================== the machine's peak
def gemm_peak(sizes, warmup, reps):
    """{n: GFLOP/s of the median n x n x n float32 matmul} through NumPy's BLAS."""
    import numpy as np
    rng = np.random.default_rng(0)
    rates = {}
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        out = np.empty((n, n), dtype=np.float32)
        seconds = bench._median(bench.time_calls(lambda: np.matmul(a, b, out=out), warmup, max(3, reps)))
        rates[n] = 2.0 * n ** 3 / seconds / 1e9
    return rates


# ====================================================================== one network
def first_dot_product(rows):
    """The name of the network's first convolution or linear layer: its input needs no gradient."""
    return next(row.name for row in rows if row.kind in DOT_PRODUCT_LAYERS and row.mult_adds)


def direct_flops(mult_adds, batch, input_grad):
    """2 FLOP per multiply-add, for the forward pass, the weight gradient and (``input_grad``) dx."""
    return 2 * mult_adds * batch * (3 if input_grad else 2)


def step_flops(rows, batch):
    """Direct FLOPs of one training step: forward + dW + dx of every conv and linear layer (no dx
    for the first)."""
    first = first_dot_product(rows)
    return sum(direct_flops(row.mult_adds, batch, row.name != first)
               for row in rows if row.kind in DOT_PRODUCT_LAYERS)


def layer_table(model, rows, batch, warmup, reps):
    """Each leaf module's forward + backward alone, identical shapes timed once (see the docstring)."""
    import numpy as np
    import tinynet
    modules = dict(model.named_modules())
    groups = OrderedDict()      # (kind, description, input shape) -> entry
    first = first_dot_product(rows)
    for row in rows:
        module = modules.get(row.name) if row.name else None
        if module is None or any(True for _ in module.children()):
            continue
        key = (row.kind, row.description, tuple(row.input_shape))
        entry = groups.setdefault(key, {"kind": row.kind, "description": row.description,
                                        "input_shape": tuple(row.input_shape), "names": [], "module": module,
                                        "mult_adds": row.mult_adds, "input_grad": row.name != first})
        entry["names"].append(row.name)
    rng = np.random.default_rng(1)
    for entry in groups.values():
        module = entry["module"]
        x = rng.standard_normal((batch,) + entry["input_shape"]).astype(np.float32)
        parameters = list(module.parameters())
        out_shape = module(tinynet.Tensor(x)).shape
        dy = rng.standard_normal(out_shape).astype(np.float32)
        times = {"fwd": [], "bwd": []}

        def call():
            for p in parameters:
                p.grad = None
            xt = tinynet.Tensor(x, requires_grad=entry["input_grad"])
            t0 = time.perf_counter()
            y = module(xt)
            t1 = time.perf_counter()
            if y.requires_grad:
                y.backward(dy)
            times["fwd"].append(t1 - t0)
            times["bwd"].append(time.perf_counter() - t1)

        bench.time_calls(call, warmup, reps)
        entry["fwd_s"] = bench._median(times["fwd"][warmup:])
        entry["bwd_s"] = bench._median(times["bwd"][warmup:])
        entry["flops"] = direct_flops(entry["mult_adds"], batch, entry["input_grad"])
        del entry["module"]
    return list(groups.values())


def measure_network(name, args):
    import numpy as np
    import tinynet
    import tinynet.models as models
    from tinynet.nn import functional as F
    size, batch = image_size(args, name), batch_size(args, name)
    tinynet.manual_seed(0)
    model = models.create(name, num_classes=args.classes)
    rows = tinynet.summary(model, (3, size, size)).rows
    model.train()
    optimizer = tinynet.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, args.classes, size=batch).astype(np.int64)

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(tinynet.Tensor(x)), labels).backward()
        optimizer.step()

    step_s = bench._median(bench.time_calls(step, args.warmup, args.reps))
    flops = step_flops(rows, batch)
    layers = layer_table(model, rows, batch, args.warmup, args.reps)
    return {"model": name, "batch": batch, "size": size, "step_s": step_s, "img_s": batch / step_s,
            "direct_flops": flops, "gflop_s": flops / step_s / 1e9, "layers": layers}


# ====================================================================== report
def _shape(shape):
    return "x".join(str(s) for s in shape)


def network_lines(result, peak):
    step = result["step_s"]
    out = [f"### {result['model']}, training step, batch {result['batch']}, {result['size']} px",
           "",
           f"step {step * 1e3:.0f} ms ({result['img_s']:.2f} img/s); direct work "
           f"{result['direct_flops'] / 1e9:.1f} GFLOP; **{result['gflop_s']:.1f} GFLOP/s, "
           f"{100 * result['gflop_s'] / peak:.0f} % of the GEMM peak ({peak:.1f} GFLOP/s)**",
           "",
           "| layer (count x) | input | fwd ms | bwd ms | fwd+bwd ms, all | share of step | direct GFLOP/s |",
           "|---|---|---:|---:|---:|---:|---:|"]
    layers = sorted(result["layers"], key=lambda e: -(e["fwd_s"] + e["bwd_s"]) * len(e["names"]))
    accounted = 0.0
    for entry in layers:
        count = len(entry["names"])
        total = (entry["fwd_s"] + entry["bwd_s"]) * count
        accounted += total
        rate = entry["flops"] / (entry["fwd_s"] + entry["bwd_s"]) / 1e9 if entry["flops"] else None
        label = entry["names"][0] + (f" (+{count - 1})" if count > 1 else "")
        layer = f"{entry['kind']} {entry['description']}".strip()
        out.append(f"| {label}: {layer} | {_shape(entry['input_shape'])} | "
                   f"{entry['fwd_s'] * 1e3:.1f} | {entry['bwd_s'] * 1e3:.1f} | {total * 1e3:.1f} | "
                   f"{100 * total / step:.1f} % | {'-' if rate is None else f'{rate:.1f}'} |")
    rest = step - accounted
    out.append(f"| rest of the step (loss, residual adds, SGD, autograd, Python) | | | | {rest * 1e3:.1f} | "
               f"{100 * rest / step:.1f} % | |")
    return out


def main(argv=None):
    args = parse_args(argv)
    bench.set_thread_environment(args.threads)
    import numpy  # noqa: F401  (first, as user code does)
    import tinynet  # noqa: F401
    method = bench.configure_threads(args.threads)
    facts = bench.machine_facts(args.threads, method)
    peaks = gemm_peak(args.gemm_sizes, args.warmup, args.reps)
    peak = max(peaks.values())
    lines = [f"CPU {facts['cpu']}, {args.threads} threads, NumPy {facts['numpy']} "
             f"({(facts['numpy_blas'] or [{}])[0].get('internal_api', '?')}), numba {facts['numba']}, "
             f"load average {' '.join(open('/proc/loadavg').read().split()[:3]) if os.path.exists('/proc/loadavg') else '?'}",
             "",
             "sgemm peak through NumPy: " + ", ".join(f"n={n} {rate:.1f} GFLOP/s" for n, rate in peaks.items()),
             ""]
    print("\n".join(lines), flush=True)
    results = []
    for name in args.models:
        result = measure_network(name, args)
        results.append(result)
        block = network_lines(result, peak) + [""]
        print("\n".join(block), flush=True)
        lines += block
    if "torch" in sys.modules:
        raise RuntimeError("gflops.py must run without PyTorch in the process")
    if args.markdown:
        with open(args.markdown, "a") as handle:
            handle.write("\n".join(lines) + "\n")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": facts, "gemm_peak": peaks, "networks": results}, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
