#!/usr/bin/env python
"""Where a tinynet AlexNet training step spends its time, kernel by kernel.

    python benchmarks/profile_step.py                      # b=64, 227 px, 2 threads, 3 steps
    python benchmarks/profile_step.py --batch 16 --cprofile 25

Every kernel entry point is wrapped in a timer (module attributes are patched, so the code
that runs is unchanged), and the GEMMs are caught by handing the conv and linear kernels an
array module whose ``matmul`` is timed (everything else is NumPy itself).  Timers nest: each
category gets its *exclusive* time, so "conv: layout + bias" is conv2d.forward/backward minus
the im2col, col2im and GEMMs inside it.  What no timer covers -- the autograd walk, Tensor
and Function objects, module calls, reshapes -- is "Python / autograd / untimed".

Categories: GEMM (conv), GEMM (FC), im2col, col2im, conv layout + bias (the (O, N, HW) <->
(N, O, HW) transposing copies, bias add, bias gradient), LRN, max pool, adaptive avg pool,
ReLU, dropout (with its random draws), cross-entropy, FC bias, grad accumulation into
``.grad``, SGD update, zero_grad.  The step is forward (model + loss), backward and the
optimizer; the table splits each category into its forward and backward parts.
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import io
import pstats
import sys
import time
from collections import defaultdict

import harness as bench  # thread set-up and machine facts (a sibling module: benchmarks/ is on sys.path)

GROUPS = {
    "GEMM (conv)": "compute (BLAS)", "GEMM (FC)": "compute (BLAS)",
    "im2col": "im2col/col2im", "col2im": "im2col/col2im", "Winograd transforms": "im2col/col2im",
    "conv layout + bias": "data movement", "FC bias": "data movement",
    "grad accumulation": "data movement", "SGD update": "data movement", "zero_grad": "data movement",
    "LRN": "LRN", "max pool": "pooling", "adaptive avg pool": "pooling",
    "ReLU": "elementwise", "dropout (incl. RNG)": "elementwise", "cross-entropy": "elementwise",
    "Python / autograd / untimed": "Python overhead",
}


class Timers:
    """Exclusive wall time per (phase, category), with nesting."""

    def __init__(self):
        self.phase = "forward"
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.flops = defaultdict(float)
        self.gemms = defaultdict(lambda: [0.0, 0.0])     # (phase, category, m, k, n, layout) -> [s, flops]
        self._children = []

    def wrap(self, category, function):
        timers = self

        @functools.wraps(function)
        def timed(*args, **kwargs):
            timers._children.append(0.0)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = timers._children.pop()
                key = (timers.phase, category)
                timers.seconds[key] += elapsed - inner
                timers.calls[key] += 1
                if timers._children:
                    timers._children[-1] += elapsed
        return timed

    def reset(self):
        self.seconds.clear()
        self.calls.clear()
        self.flops.clear()
        self.gemms.clear()


class TimedArrayModule:
    """NumPy, except that ``matmul`` is timed (and its FLOPs counted) under ``category``."""

    def __init__(self, numpy_module, timers, category):
        self._numpy = numpy_module
        self._timers = timers
        self._category = category
        self._matmul = timers.wrap(category, numpy_module.matmul)

    def __getattr__(self, name):
        return getattr(self._numpy, name)

    def matmul(self, a, b, *args, **kwargs):
        k = a.shape[-1]
        m = a.size // k if k else 0
        n = b.shape[-1] if b.ndim > 1 else 1
        flops = 2.0 * m * k * n
        self._timers.flops[(self._timers.phase, self._category)] += flops
        start = time.perf_counter()
        try:
            return self._matmul(a, b, *args, **kwargs)
        finally:
            # per shape: "NT" when B is a transposed view (BLAS reads it transposed)
            layout = ("T" if a.ndim == 2 and not a.flags.c_contiguous else "N") + \
                     ("T" if b.ndim == 2 and not b.flags.c_contiguous else "N")
            key = (self._timers.phase, self._category, m, k, n, layout)
            self._timers.gemms[key][0] += time.perf_counter() - start
            self._timers.gemms[key][1] += flops


def instrument(timers):
    """Patch the kernel entry points with timers; returns an undo function."""
    import numpy
    import tinynet
    from tinynet import kernels, optim
    from tinynet import backend
    from tinynet.kernels import (adaptive_avg_pool2d, conv2d, conv2d_winograd, dropout, linear, local_response_norm,
                                 max_pool2d, relu)
    from tinynet.ops import loss as op_loss

    patches = []

    def patch(owner, name, category):
        original = getattr(owner, name)
        setattr(owner, name, timers.wrap(category, original))
        patches.append((owner, name, original))

    def set_attr(owner, name, value):
        patches.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def array_module_for(module, category):
        timed = TimedArrayModule(numpy, timers, category)
        original = module.get_array_module

        def get_array_module(*arrays):
            xp = original(*arrays)
            return timed if xp is numpy else xp
        set_attr(module, "get_array_module", get_array_module)
        return timed

    conv_xp = array_module_for(conv2d, "GEMM (conv)")
    set_attr(conv2d, "numpy", conv_xp)       # keeps _scratch's "xp is numpy" test true
    array_module_for(conv2d_winograd, "GEMM (conv)")
    array_module_for(linear, "GEMM (FC)")
    patch(conv2d_winograd, "_transform_tiles_cpu", "Winograd transforms")
    patch(conv2d_winograd, "_output_tiles_cpu", "Winograd transforms")
    patch(conv2d_winograd, "_transform_filters", "Winograd transforms")
    patch(conv2d_winograd, "_filter_gradient", "Winograd transforms")
    patch(conv2d, "im2col_into", "im2col")
    patch(conv2d, "col2im", "col2im")
    patch(conv2d, "forward", "conv layout + bias")
    patch(conv2d, "backward", "conv layout + bias")
    patch(linear, "linear_forward", "FC bias")
    patch(linear, "linear_backward", "FC bias")
    patch(local_response_norm, "local_response_norm_forward", "LRN")
    patch(local_response_norm, "local_response_norm_backward", "LRN")
    patch(max_pool2d, "max_pool2d_forward", "max pool")
    patch(max_pool2d, "max_pool2d_backward", "max pool")
    patch(adaptive_avg_pool2d, "adaptive_avg_pool2d_forward", "adaptive avg pool")
    patch(adaptive_avg_pool2d, "adaptive_avg_pool2d_backward", "adaptive avg pool")
    patch(relu, "relu_forward", "ReLU")
    patch(relu, "relu_backward", "ReLU")
    patch(dropout, "dropout_forward", "dropout (incl. RNG)")
    patch(dropout, "dropout_backward", "dropout (incl. RNG)")
    patch(backend._CPUGenerator, "uniform", "dropout (incl. RNG)")
    patch(op_loss.CrossEntropy, "forward", "cross-entropy")
    patch(op_loss.CrossEntropy, "backward", "cross-entropy")
    patch(tinynet.Tensor, "_accumulate", "grad accumulation")
    patch(optim.SGD, "step", "SGD update")
    patch(optim.Optimizer, "zero_grad", "zero_grad")
    assert kernels.conv2d is conv2d

    def undo():
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)
    return undo


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=227)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=3, help="profiled steps after one warm-up step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cprofile", type=int, default=0, metavar="N",
                   help="also run one step under cProfile and print the top N functions by own time")
    p.add_argument("--markdown", default=None, help="write the table as Markdown here")
    args = p.parse_args(argv)

    bench.set_thread_environment(args.threads)
    import numpy as np
    import tinynet
    from tinynet.nn import functional as F
    from tinynet.models.alexnet import AlexNet
    method = bench.configure_threads(args.threads)
    load = bench.CpuLoad()

    model = AlexNet(num_classes=args.classes)
    model.train()
    opt = tinynet.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    labels = rng.integers(0, args.classes, size=args.batch).astype(np.int64)
    timers = Timers()
    phases = defaultdict(float)

    def step(record):
        t0 = time.perf_counter()
        timers.phase = "optimizer"
        opt.zero_grad()
        timers.phase = "forward"
        t1 = time.perf_counter()
        loss = F.cross_entropy(model(tinynet.Tensor(x)), labels)
        timers.phase = "backward"
        t2 = time.perf_counter()
        loss.backward()
        timers.phase = "optimizer"
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if record:
            phases["forward"] += t2 - t1
            phases["backward"] += t3 - t2
            phases["optimizer"] += (t4 - t3) + (t1 - t0)
            phases["step"] += t4 - t0

    undo = instrument(timers)
    try:
        step(record=False)                                     # warm-up: kernels, scratch, momentum
        timers.reset()
        for _ in range(args.steps):
            step(record=True)
    finally:
        undo()

    machine = bench.machine_facts(args.threads, method)
    blas = machine["numpy_blas"][0] if machine["numpy_blas"] else {}
    n = n_steps = args.steps
    step_ms = phases["step"] / n * 1e3
    categories = sorted({c for _, c in timers.seconds}, key=lambda c: -sum(
        timers.seconds[(ph, c)] for ph in ("forward", "backward", "optimizer")))
    timed = sum(timers.seconds.values())
    untimed = phases["step"] - timed
    rows = []
    for c in categories:
        f, b, o = (timers.seconds[(ph, c)] / n * 1e3 for ph in ("forward", "backward", "optimizer"))
        calls = sum(timers.calls[(ph, c)] for ph in ("forward", "backward", "optimizer")) // n
        flops = sum(timers.flops[(ph, c)] for ph in ("forward", "backward", "optimizer")) / n
        rate = f"{flops / ((f + b + o) / 1e3) / 1e9:.0f} GFLOP/s" if flops else ""
        rows.append((c, f, b, o, f + b + o, calls, rate))
    rows.append(("Python / autograd / untimed", float("nan"), float("nan"), float("nan"),
                 untimed / n * 1e3, 0, ""))
    rows.sort(key=lambda r: -r[4])

    print(f"tinynet AlexNet training step, b={args.batch} {args.size}px, {args.classes} classes, "
          f"{args.threads} threads, {n} steps after 1 warm-up")
    print(f"machine: {machine['cpu']}; numpy BLAS {blas.get('internal_api')} kernel "
          f"{blas.get('architecture')} threads {blas.get('num_threads')}; tinynet "
          f"kernel threads {machine['tinynet_threads']}")
    cl = load.report()
    if cl:
        print(f"noise: other processes used {cl['other_cores_avg']:.2f} cores on average "
              f"(steal {cl['steal_cores_avg']:.2f}); loadavg {cl['loadavg']}")
    print(f"step {step_ms:.0f} ms = {args.batch / (step_ms / 1e3):.1f} img/s: forward "
          f"{phases['forward'] / n * 1e3:.0f} ms, backward {phases['backward'] / n * 1e3:.0f} ms, "
          f"optimizer (zero_grad + SGD) {phases['optimizer'] / n * 1e3:.0f} ms")
    head = f"{'category':30s} {'group':16s} {'fwd ms':>8s} {'bwd ms':>8s} {'opt ms':>7s} {'total':>8s} {'%':>6s} {'calls':>6s}  rate"
    print(head)
    print("-" * len(head))

    def fmt(v, width):
        return f"{'':>{width}s}" if v != v or v == 0 else f"{v:{width}.1f}"

    markdown = ["| category | group | fwd ms | bwd ms | opt ms | total ms | % of step | calls | rate |",
                "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    group_totals = defaultdict(float)
    for c, f, b, o, total, calls, rate in rows:
        share = 100.0 * total / step_ms
        group_totals[GROUPS.get(c, "other")] += share
        print(f"{c:30s} {GROUPS.get(c, 'other'):16s} {fmt(f, 8)} {fmt(b, 8)} {fmt(o, 7)} {total:8.1f} "
              f"{share:6.1f} {calls or '':>6}  {rate}")
        markdown.append(f"| {c} | {GROUPS.get(c, 'other')} | {fmt(f, 1).strip()} | {fmt(b, 1).strip()} | "
                        f"{fmt(o, 1).strip()} | {total:.1f} | {share:.1f} | {calls or ''} | {rate} |")
    print("by group: " + ", ".join(f"{g} {v:.1f}%" for g, v in sorted(group_totals.items(), key=lambda kv: -kv[1])))

    print()
    print("GEMMs by shape (m x k) @ (k x n), slowest first; layout N/T: operand read as stored / transposed")
    gemm_head = f"{'phase':9s} {'kind':12s} {'m':>6s} {'k':>7s} {'n':>7s} {'layout':>6s} {'ms':>8s} {'GFLOP/s':>8s}"
    print(gemm_head)
    gemm_lines = []
    for (phase, category, m, k, n, layout), (seconds, flops) in sorted(
            timers.gemms.items(), key=lambda kv: -kv[1][0]):
        line = (f"{phase:9s} {category[6:-1]:12s} {m:6d} {k:7d} {n:7d} {layout:>6s} "
                f"{seconds / n_steps * 1e3:8.1f} {flops / seconds / 1e9 if seconds else 0:8.1f}")
        gemm_lines.append(line)
        print(line)

    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"step {step_ms:.0f} ms ({args.batch / (step_ms / 1e3):.1f} img/s), b={args.batch} "
                    f"{args.size}px\n\n" + "\n".join(markdown) + "\n\nby group: " +
                    ", ".join(f"{g} {v:.1f}%" for g, v in sorted(group_totals.items(), key=lambda kv: -kv[1]))
                    + "\n\nGEMMs by shape:\n\n```\n" + gemm_head + "\n" + "\n".join(gemm_lines) + "\n```\n")

    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        step(record=False)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.cprofile)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
