"""The peak memory of a training step, each framework in a fresh child process.

A section of ``python benchmarks/run.py`` (``--only memory``).
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time

from harness import HERE, ROOT, set_thread_environment


# ====================================================================== peak memory
def _proc_status(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


class _RssSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak = _proc_status("VmRSS") or 0
        self.running = True

    def run(self):
        while self.running:
            self.peak = max(self.peak, _proc_status("VmRSS") or 0)
            time.sleep(0.001)


def memory_child(args):
    """In a fresh process: the peak memory one training step adds (see the module docstring)."""
    set_thread_environment(args.threads)
    import numpy as np
    framework = args.memory_child
    batch, size = args.memory_batch, args.size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, args.classes, size=batch).astype(np.int64)
    if framework == "tinynet":
        import tinynet
        from tinynet.nn import functional as F
        from tinynet.models.alexnet import AlexNet
        tinynet.backend.set_num_threads(args.threads)
        model = AlexNet(num_classes=args.classes)
        opt = tinynet.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

        def step(images, targets):
            opt.zero_grad()
            loss = F.cross_entropy(model(tinynet.Tensor(images)), targets)
            loss.backward()
            opt.step()
    else:
        import torch
        import torch.nn.functional as torch_F
        torch.set_num_threads(args.threads)
        model = _torch_only_model(args.classes)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

        def step(images, targets):
            opt.zero_grad()
            loss = torch_F.cross_entropy(model(torch.from_numpy(images)), torch.from_numpy(targets))
            loss.backward()
            opt.step()

    step(x[:1], labels[:1])                  # compile/load kernels, allocate the momentum buffers
    opt.zero_grad()
    gc.collect()
    baseline = _proc_status("VmRSS")
    method = "VmHWM after clear_refs"
    sampler = None
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        method = "1 ms VmRSS sampler"
        sampler = _RssSampler()
        sampler.start()
    for _ in range(args.memory_steps):
        step(x, labels)
    if sampler is None:
        peak = _proc_status("VmHWM")
    else:
        sampler.running = False
        sampler.join()
        peak = sampler.peak
    report = {"framework": framework, "batch": batch, "size": size, "baseline_bytes": baseline,
              "peak_bytes": peak, "step_bytes": peak - baseline, "method": method}
    if framework == "tinynet":
        # the conv kernels' per-thread scratch (columns or Winograd tiles + product), kept between calls
        from tinynet.kernels import _scratch
        report["conv_scratch_bytes"] = _scratch.scratch_bytes()
    print(json.dumps(report))


def _torch_only_model(classes):
    """The torch reference AlexNet without tinynet (for the memory child)."""
    import torch
    from torch import nn
    lrn = dict(size=5, alpha=5e-4, beta=0.75, k=2.0)
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.MaxPool2d(3, 2), nn.LocalResponseNorm(**lrn),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2), nn.LocalResponseNorm(**lrn),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.AdaptiveAvgPool2d(6),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, classes)).to(torch.float32)


def bench_memory(args, table, results, headlines):
    # the two children run at the same time: each measures its own resident set only;
    # the run is repeated (full mode) and the child with the median step peak is kept
    runs = {"tinynet": [], "torch": []}
    for _ in range(args.memory_repeats):
        children = {}
        for framework in ("tinynet", "torch"):
            command = [sys.executable, os.path.join(HERE, "run.py"), "--memory-child", framework,
                       "--memory-batch", str(args.memory_batch), "--size", str(args.size),
                       "--classes", str(args.classes), "--threads", str(args.threads)]
            children[framework] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                   text=True, cwd=ROOT)
        for framework, child in children.items():
            stdout, stderr = child.communicate()
            if child.returncode != 0:
                raise RuntimeError(f"memory child {framework} failed:\n{stderr[-3000:]}")
            runs[framework].append(json.loads(stdout.strip().splitlines()[-1]))
    out = {}
    for framework, reports in runs.items():
        reports.sort(key=lambda report: report["step_bytes"])
        out[framework] = dict(reports[len(reports) // 2],
                              step_bytes_all=[report["step_bytes"] for report in reports])
    results["memory"] = out
    mib = 1024.0 ** 2
    t, r = out["tinynet"]["step_bytes"] / mib, out["torch"]["step_bytes"] / mib
    b, s = args.memory_batch, args.size
    table.add(f"peak memory train_step b={b} {s}px (step)", "MiB", t, r, t / r, ("<=", 1.0),
              note="VmHWM - VmRSS before the step")
    tp, rp = out["tinynet"]["peak_bytes"] / mib, out["torch"]["peak_bytes"] / mib
    table.add(f"peak RSS of the process b={b} {s}px (total)", "MiB", tp, rp, tp / rp,
              note="incl. weights, momentum, libraries")
    scratch = out["tinynet"].get("conv_scratch_bytes")
    if scratch is not None:
        table.add("  of which tinynet conv scratch", "MiB", scratch / mib, None, float("nan"),
                  note="im2col columns or Winograd tiles + GEMM product, kept between calls")
    headlines.append(f"peak memory train_step b={b} {s}px: tinynet {t:.0f} MiB, torch {r:.0f} MiB, "
                     f"ratio {t / r:.2f} (process peak {tp:.0f} vs {rp:.0f} MiB)")
    print("  " + headlines[-1], flush=True)
