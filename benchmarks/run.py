#!/usr/bin/env python
"""tinynet against PyTorch on the CPU: AlexNet's layers, the whole net, memory and the data pipeline.

    python benchmarks/run.py --quick          # a few minutes: fewer repeats, net at b=1 (inference), 16, 64
    python benchmarks/run.py                  # the full run (~15-20 min): b=1, 16, 64, 128
    python benchmarks/run.py --quick --smoke  # seconds: tiny shapes, checks that every code path runs

What is timed (both frameworks in one process, 2 threads each unless ``--threads``; each with its own
thread settings: see "Import order and settings" below):

* every AlexNet layer's forward and backward at its real shape (input batch
  ``--layer-batch``, default 64, 227 px): conv1-conv5, pool1/pool2/pool5, norm1/norm2,
  dropout6/dropout7, fc6-fc8.  The backward is ``y.backward(dy)`` through each framework's
  autograd (weight, bias and input gradients; conv1 has no input gradient, as in the net);
* the whole AlexNet (1000 classes, the same weights in both: the torch model's state_dict
  is loaded into tinynet's) -- inference (eval mode, no_grad) and one training step
  (forward + cross-entropy + backward + SGD with momentum 0.9 and weight decay 5e-4);
* one sgemm at conv2's and fc6's shapes (NumPy's BLAS against torch's), a diagnostic;
* the data pipeline (decode + augment + collate, 2 worker threads) on
  ``../shared/data/catdog/train``: tinynet's ImageFolder + DataLoader, and as a reference a
  torchvision-style PIL pipeline in ``torch.utils.data.DataLoader`` (2 worker processes);
* the peak memory of a training step, per framework in a fresh subprocess.

Every measurement alternates tinynet and torch repetition by repetition (the order flips
every repetition), after warm-up repetitions, and reports the median.  ``ratio`` is
torch time / tinynet time (= tinynet img/s / torch img/s): above 1, tinynet is faster.
For memory the ratio is tinynet / torch: below 1, tinynet needs less.

Import order and settings: only the thread counts are set for both frameworks (environment
variables before anything is imported, then each library's own call).  NumPy, PyTorch and tinynet
are then imported in the order ``--import-order`` names: ``numpy-first`` (the default, as user
code does) or ``tinynet-first``; ``both`` runs everything once per order, each in a fresh process,
and merges the tables.  tinynet applies its own OpenBLAS thread timeout and numba wait policy at
import, to its own runtimes (tinynet/_threads.py); PyTorch's OpenMP runtime loads with its
defaults.  The report's first lines say what each runtime got.

The model zoo (``--only zoo``): ResNet-18, ResNet-50 and VGG-16 from tinynet's registry
(examples/models) against the same networks in plain torch.nn (benchmarks/torch_zoo.py) with
tinynet's weights loaded: a training step at ``--zoo-batch`` (32) and ``--zoo-size`` (224), then
BatchNorm and the 1x1, stride-2 3x3 and 7x7-stem convolutions as layers, forward + backward.

Peak memory: the child process builds the model, the optimizer and a batch, runs one
training step at batch 1 (loads or compiles every kernel and allocates the momentum
buffers), drops the gradients, then records its resident set (VmRSS), resets the
kernel's high-water mark (``echo 5 > /proc/self/clear_refs``) and runs two training steps
at the full batch.  ``step peak`` = VmHWM - that VmRSS: everything a training step adds on
top of the weights, momentum and input batch (activations, gradients, workspaces, scratch
buffers, allocator slack), measured the same way (by the OS) for both frameworks.
Where clear_refs is not available a 1 ms sampler thread of VmRSS stands in.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "catdog", "train"))

LAYERS = ["conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5",
          "pool5", "dropout6", "fc6", "dropout7", "fc7", "fc8"]

# ImageNet statistics on the [0, 1] scale (AlexNet's PCA lighting: fb.resnet.torch's values)
PCA_EIGVAL = [0.2175, 0.0188, 0.0045]
PCA_EIGVEC = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


# ====================================================================== arguments, threads
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats; net at b=16, 64 (+ inference b=1)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes and one repeat: only checks that the code paths run")
    p.add_argument("--threads", type=int, default=2, help="threads for BLAS, numba and torch (default 2)")
    p.add_argument("--size", type=int, default=None, help="image size (default 227; smoke 67)")
    p.add_argument("--layer-batch", type=int, default=None, help="batch of the per-layer timings (default 64)")
    p.add_argument("--train-batches", type=str, default=None, help="comma list, e.g. 16,64")
    p.add_argument("--infer-batches", type=str, default=None, help="comma list, e.g. 1,16,64")
    p.add_argument("--memory-batch", type=int, default=None, help="batch of the peak-memory step (default 64)")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--zoo-batch", type=int, default=None, help="batch of the zoo section (default 32; smoke 2)")
    p.add_argument("--zoo-size", type=int, default=None, help="image size of the zoo section (default 224; smoke 32)")
    p.add_argument("--zoo-models", default=None, help="comma list of " + ",".join(ZOO) + " (default all)")
    p.add_argument("--data", default=None, help=f"image folder for the pipeline (default {DEFAULT_DATA})")
    p.add_argument("--data-images", type=int, default=None, help="images per pipeline pass")
    p.add_argument("--workers", type=int, default=2, help="data pipeline workers (default 2)")
    p.add_argument("--only", default=None,
                   help="comma list of sections: layers,net,zoo,gemm,data,memory (default all)")
    p.add_argument("--import-order", choices=sorted(IMPORT_ORDERS) + ["both"], default="numpy-first",
                   help="numpy-first (default: NumPy, PyTorch, then tinynet, as user code does), tinynet-first, "
                        "or both: one fresh process per order, one table")
    p.add_argument("--settle", type=float, default=0.0,
                   help="seconds of idle before every timed call (default 0): lets the other framework's "
                        "threads stop spinning first, so neither is timed against the other's leftovers")
    p.add_argument("--json", default=None, help="write every sample and the machine facts here")
    p.add_argument("--markdown", default=None, help="write the table as Markdown here")
    p.add_argument("--memory-child", choices=["tinynet", "torch"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--memory-steps", type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    def ints(text):
        return [int(t) for t in text.split(",") if t.strip()]

    smoke = args.smoke
    args.size = args.size or (67 if smoke else 227)
    args.layer_batch = args.layer_batch or (2 if smoke else 64)
    args.memory_batch = args.memory_batch or (2 if smoke else 64)
    if args.train_batches:
        args.train_batches = ints(args.train_batches)
    else:
        args.train_batches = [2] if smoke else ([16, 64] if args.quick else [1, 16, 64, 128])
    if args.infer_batches:
        args.infer_batches = ints(args.infer_batches)
    else:
        args.infer_batches = [1, 2] if smoke else ([1, 16, 64] if args.quick else [1, 16, 64, 128])
    args.data_images = args.data_images or (8 if smoke else (512 if args.quick else 2000))
    args.sections = set((args.only or "layers,net,zoo,gemm,data,memory").split(","))
    args.zoo_batch = args.zoo_batch or (2 if smoke else 32)
    args.zoo_size = args.zoo_size or (32 if smoke else 224)
    args.zoo_models = (args.zoo_models or ",".join(ZOO)).split(",")
    unknown = [name for name in args.zoo_models if name not in ZOO]
    if unknown:
        p.error(f"--zoo-models: unknown {unknown}; choose from {ZOO}")
    # (warm-up, repeats) per kind of measurement
    if smoke:
        args.layer_reps, args.net_reps, args.data_reps = (0, 1), (0, 1), (0, 1)
    elif args.quick:
        args.layer_reps, args.net_reps, args.data_reps = (1, 5), (1, 3), (1, 3)
    else:
        args.layer_reps, args.net_reps, args.data_reps = (2, 11), (1, 7), (1, 5)
    args.memory_repeats = 1 if (smoke or args.quick) else 3
    return args


def set_thread_environment(threads):
    """Before NumPy, numba and torch are imported: thread counts for their pools, nothing else.

    Earlier versions also exported tinynet's OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4
    here, which imposed tinynet's wait policy on PyTorch's OpenMP runtime (PyTorch ran 17.0 img/s
    instead of 20.2 with its defaults, issue 13) and hid the cost of the user's import order.  Now
    each framework runs with what it sets itself: tinynet applies its two settings at import, to
    its own runtimes only, whatever was imported first (tinynet/_threads.py); PyTorch's libgomp
    (its own copy, torch/lib) loads with OpenMP's default wait policy.  A value the user exported
    before starting the benchmark is kept and shows in the report's environment line.
    """
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(threads)


IMPORT_ORDERS = {
    # what most programs do: NumPy and PyTorch first, tinynet last
    "numpy-first": ("numpy", "torch", "tinynet"),
    # tinynet before anything else (what the examples do)
    "tinynet-first": ("tinynet", "numpy", "torch"),
}


def import_libraries(order):
    """Import NumPy, PyTorch and tinynet in ``order`` and record what each runtime ended up with."""
    wait_policy_at_torch_import = None
    for name in IMPORT_ORDERS[order]:
        if name == "torch":
            wait_policy_at_torch_import = os.environ.get("OMP_WAIT_POLICY")
        __import__(name)
    return {"import_order": order, "modules": list(IMPORT_ORDERS[order]),
            "OMP_WAIT_POLICY_when_torch_loaded": wait_policy_at_torch_import or "unset (OpenMP default)"}


def thread_settings_report(record):
    """After a numba parallel loop ran: the settings each framework's runtimes actually use."""
    import ctypes

    from tinynet import _threads
    timeouts = {}
    for path, library in _openblas_libraries():
        reader = _symbol(library, ["openblas_thread_timeout"], ctypes.c_uint)
        timeouts[os.path.basename(path)] = reader() if reader else None
    openmp = _threads.loaded_libraries("omp") or []
    record = dict(record)
    record["openblas_thread_timeout"] = timeouts
    record["openmp_runtimes"] = openmp
    record["torch_openmp_separate"] = len({os.path.realpath(p) for p in openmp}) > 1
    return record


def _openblas_libraries():
    """(path, ctypes library) of every OpenBLAS loaded in this process (NumPy's, usually)."""
    import ctypes
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if "/" in line else ""
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    libraries = []
    for path in paths:
        try:
            libraries.append((path, ctypes.CDLL(path)))
        except OSError:
            continue
    return libraries


def _symbol(library, names, restype=None):
    for name in names:
        function = getattr(library, name, None)
        if function is not None:
            if restype is not None:
                function.restype = restype
            return function
    return None


def configure_threads(threads):
    """Set 2 (or ``threads``) threads in every pool now that the libraries are loaded."""
    import ctypes

    import numba
    import numpy  # noqa: F401
    import torch
    torch.set_num_threads(threads)
    try:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ValueError:
        pass
    method = "environment variables"
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(threads)
        method = "threadpoolctl"
    except ImportError:
        for _, library in _openblas_libraries():
            setter = _symbol(library, ["scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                                       "openblas_set_num_threads64_", "openblas_set_num_threads"])
            if setter is not None:
                setter(ctypes.c_int(threads))
                method = "OpenBLAS openblas_set_num_threads (ctypes)"
    return method


def blas_facts():
    """NumPy's BLAS and the kernel it picked, first in the list (threadpoolctl if present, else
    ctypes); other BLAS libraries loaded in the process (SciPy's, pulled in by numba) follow."""
    import ctypes

    import numpy
    numpy_dir = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))
    numpy_libs = os.path.join(numpy_dir, "numpy.libs")
    facts = []
    try:
        import threadpoolctl
        for info in threadpoolctl.threadpool_info():
            if info.get("user_api") != "blas":
                continue
            facts.append({k: info.get(k) for k in ("internal_api", "version", "architecture",
                                                    "num_threads", "filepath", "threading_layer")})
    except ImportError:
        for path, library in _openblas_libraries():
            corename = _symbol(library, ["scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                                         "openblas_get_corename64_", "openblas_get_corename"], ctypes.c_char_p)
            config = _symbol(library, ["scipy_openblas_get_config64_", "scipy_openblas_get_config",
                                       "openblas_get_config64_", "openblas_get_config"], ctypes.c_char_p)
            threads = _symbol(library, ["scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                                        "openblas_get_num_threads64_", "openblas_get_num_threads"])
            facts.append({"internal_api": "openblas", "filepath": path,
                          "architecture": corename().decode() if corename else None,
                          "version": config().decode() if config else None,
                          "num_threads": threads() if threads else None})
    for fact in facts:
        fact["numpy"] = os.path.realpath(fact["filepath"] or "").startswith(os.path.realpath(numpy_libs))
    facts.sort(key=lambda fact: not fact["numpy"])
    return facts


def machine_facts(threads, thread_method):
    import numba
    import numpy
    import torch
    model = "unknown"
    family = cpu_model = None
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model == "unknown":
                    model = value
                elif key == "cpu family" and family is None:
                    family = value
                elif key == "model" and cpu_model is None:
                    cpu_model = value
    except OSError:
        pass
    torch_config = torch.__config__.show()
    torch_blas = "MKL" if "BLAS_INFO=mkl" in torch_config else ("OpenBLAS" if "openblas" in torch_config.lower() else "?")
    onednn = next((line.strip(" -") for line in torch_config.splitlines() if "MKL-DNN" in line or "oneDNN" in line), "")
    return {
        "cpu": f"{model} (family {family}, model {cpu_model})",
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "thread_setting": thread_method,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numpy_blas": blas_facts(),
        "numba": numba.__version__,
        "numba_threading_layer": _numba_threading_layer(),
        "numba_threads": numba.get_num_threads(),
        "torch": torch.__version__,
        "torch_blas": torch_blas,
        "torch_onednn": onednn,
        "torch_threads": torch.get_num_threads(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "environment": {k: v for k, v in sorted(os.environ.items())
                        if k.startswith(("OPENBLAS", "OMP_", "MKL", "NUMBA_", "GOTO", "NVPL"))},
    }


def _numba_threading_layer():
    import numba
    try:
        return numba.threading_layer()
    except ValueError:       # no parallel kernel has run yet
        return f"not yet chosen (config: {numba.config.THREADING_LAYER})"


class CpuLoad:
    """CPU time that *other* processes used while we ran (a noise gauge), and VM steal."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
            ticks = os.sysconf("SC_CLK_TCK")
            user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
            busy = (user + nice + system + irq + softirq) / ticks
            times = os.times()
            own = times.user + times.system + times.children_user + times.children_system
            return time.perf_counter(), busy, steal / ticks, own
        except (OSError, ValueError):
            return None

    def report(self):
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        other = max(0.0, (end[1] - self.start[1]) - (end[3] - self.start[3]))
        steal = end[2] - self.start[2]
        return {"wall_s": wall, "other_cpu_s": other, "other_cores_avg": other / wall if wall else 0.0,
                "steal_cores_avg": steal / wall if wall else 0.0,
                "loadavg": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None}


# ====================================================================== the models
def build_models(classes, size, seed=0):
    """tinynet's AlexNet and a torch model with the same layer names, weights and LRN."""
    import numpy as np
    import torch
    from torch import nn

    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from tinynet.models.alexnet import AlexNet

    torch.manual_seed(seed)
    lrn = dict(size=5, alpha=1e-4 * 5, beta=0.75, k=2.0)  # tinynet's paper convention = torch alpha*size
    features = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 96, 11, stride=4)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(3, 2)),
        ("norm1", nn.LocalResponseNorm(**lrn)),
        ("conv2", nn.Conv2d(96, 256, 5, padding=2)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(3, 2)),
        ("norm2", nn.LocalResponseNorm(**lrn)),
        ("conv3", nn.Conv2d(256, 384, 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(384, 384, 3, padding=1)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(384, 256, 3, padding=1)), ("relu5", nn.ReLU()), ("pool5", nn.MaxPool2d(3, 2))]))
    classifier = nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()), ("dropout6", nn.Dropout(0.5)), ("fc6", nn.Linear(256 * 6 * 6, 4096)),
        ("relu6", nn.ReLU()), ("dropout7", nn.Dropout(0.5)), ("fc7", nn.Linear(4096, 4096)),
        ("relu7", nn.ReLU()), ("fc8", nn.Linear(4096, classes))]))
    torch_model = nn.Sequential(OrderedDict([("features", features), ("avgpool", nn.AdaptiveAvgPool2d(6)),
                                             ("classifier", classifier)]))
    with torch.no_grad():
        for module in torch_model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.normal_(0.0, 0.01)
                module.bias.fill_(0.1)

    tiny_model = AlexNet(num_classes=classes)
    tiny_model.load_state_dict({k: v.detach().numpy() for k, v in torch_model.state_dict().items()})

    # the same function? (eval mode: no dropout)
    import tinynet
    x = np.random.default_rng(seed).standard_normal((2, 3, size, size)).astype(np.float32)
    tiny_model.eval()
    torch_model.eval()
    with tinynet.no_grad():
        a = tiny_model(tinynet.tensor(x)).numpy()
    with torch.no_grad():
        b = torch_model(torch.from_numpy(x)).numpy()
    check = float(np.max(np.abs(a - b)) / max(1e-12, float(np.max(np.abs(b)))))
    tiny_model.train()
    torch_model.train()
    return tiny_model, torch_model, check


# ====================================================================== timing helpers
SETTLE_SECONDS = 0.0      # --settle: idle time before each timed call


def _alternate(runners, warmup, reps):
    """Run each ``runner()`` (returning a dict of seconds) warmup+reps times, alternating the
    order every repetition; returns {runner index: {key: [samples]}}."""
    samples = [dict() for _ in runners]
    for rep in range(warmup + reps):
        order = list(range(len(runners)))
        if rep % 2:
            order.reverse()
        for index in order:
            gc.collect()
            if SETTLE_SECONDS:
                time.sleep(SETTLE_SECONDS)
            result = runners[index]()
            if rep >= warmup:
                for key, value in result.items():
                    samples[index].setdefault(key, []).append(value)
    return samples


def _median(values):
    return statistics.median(values) if values else float("nan")


class Table:
    def __init__(self):
        self.rows = []

    def add(self, name, unit, tiny, torch_value, ratio, target=None, note=""):
        ok = None
        if target is not None and ratio == ratio:
            op, bound = target
            ok = ratio >= bound if op == ">=" else ratio <= bound
        self.rows.append(dict(name=name, unit=unit, tinynet=tiny, torch=torch_value, ratio=ratio,
                              target=None if target is None else f"{target[0]}{target[1]}",
                              ok=ok, note=note))

    @staticmethod
    def _fmt(value):
        if value is None or value != value:
            return "-"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"

    def lines(self):
        head = f"{'benchmark':46s} {'unit':7s} {'tinynet':>9s} {'torch':>9s} {'ratio':>6s} {'target':>7s}"
        out = [head, "-" * len(head)]
        for r in self.rows:
            status = "" if r["ok"] is None else ("  ok" if r["ok"] else "  MISS")
            out.append(f"{r['name']:46s} {r['unit']:7s} {self._fmt(r['tinynet']):>9s} "
                       f"{self._fmt(r['torch']):>9s} {self._fmt(r['ratio']):>6s} "
                       f"{r['target'] or '':>7s}{status}{('  ' + r['note']) if r['note'] else ''}")
        return out

    def markdown(self):
        out = ["| benchmark | unit | tinynet | torch | ratio | target |", "|---|---|---:|---:|---:|---|"]
        for r in self.rows:
            status = "" if r["ok"] is None else (" ok" if r["ok"] else " **MISS**")
            target = (r["target"] or "") + status
            note = f" ({r['note']})" if r["note"] else ""
            out.append(f"| {r['name']}{note} | {r['unit']} | {self._fmt(r['tinynet'])} | "
                       f"{self._fmt(r['torch'])} | {self._fmt(r['ratio'])} | {target} |")
        return out


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
    import tinynet
    import torch

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
        tiny_params = list(tiny_layer.parameters())
        torch_params = list(torch_layer.parameters())
        with torch.no_grad():
            out_shape = tuple(torch_layer(torch.from_numpy(x)).shape)
        dy = rng.standard_normal(out_shape).astype(np.float32)
        dy_torch = torch.from_numpy(dy)

        def run_tiny():
            for p in tiny_params:
                p.grad = None
            xt = tinynet.Tensor(x, requires_grad=needs_input_grad)
            t0 = time.perf_counter()
            y = tiny_layer(xt)
            t1 = time.perf_counter()
            y.backward(dy)
            t2 = time.perf_counter()
            return {"fwd": t1 - t0, "bwd": t2 - t1}

        def run_torch():
            for p in torch_params:
                p.grad = None
            xt = torch.from_numpy(x).requires_grad_(needs_input_grad)
            t0 = time.perf_counter()
            y = torch_layer(xt)
            t1 = time.perf_counter()
            y.backward(dy_torch)
            t2 = time.perf_counter()
            return {"fwd": t1 - t0, "bwd": t2 - t1}

        tiny, ref = _alternate([run_tiny, run_torch], warmup, reps)
        tiny["fwd+bwd"] = [f + b for f, b in zip(tiny["fwd"], tiny["bwd"])]
        ref["fwd+bwd"] = [f + b for f, b in zip(ref["fwd"], ref["bwd"])]
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


# ====================================================================== the whole net
def bench_net(args, tiny_model, torch_model, table, results, headlines):
    import numpy as np
    import tinynet
    import torch
    import torch.nn.functional as torch_F
    from tinynet.nn import functional as F

    rng = np.random.default_rng(2)
    size = args.size
    results["net"] = {"inference": {}, "train_step": {}}

    # --- inference: eval mode, no graph
    tiny_model.eval()
    torch_model.eval()
    for batch in args.infer_batches:
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        x_torch = torch.from_numpy(x)

        def run_tiny():
            t0 = time.perf_counter()
            with tinynet.no_grad():
                tiny_model(tinynet.Tensor(x))
            return {"s": time.perf_counter() - t0}

        def run_torch():
            t0 = time.perf_counter()
            with torch.no_grad():
                torch_model(x_torch)
            return {"s": time.perf_counter() - t0}

        warmup, reps = args.net_reps
        if batch <= 4 and not args.smoke:
            reps *= 5                       # cheap: more repeats steady the median
        tiny, ref = _alternate([run_tiny, run_torch], warmup, reps)
        t, r = batch / _median(tiny["s"]), batch / _median(ref["s"])
        results["net"]["inference"][batch] = {"tinynet_s": tiny["s"], "torch_s": ref["s"]}
        target = {1: (">=", 1.2), 64: (">=", 1.0)}.get(batch)     # issue 13: b=1 >= 1.2x
        table.add(f"alexnet inference b={batch} {size}px", "img/s", t, r, t / r, target)
        headlines.append(f"alexnet inference b={batch} {size}px: tinynet {t:.1f} img/s, "
                         f"torch {r:.1f} img/s, ratio {t / r:.2f}")
        print("  " + headlines[-1], flush=True)

    # --- training step: forward + cross-entropy + backward + SGD (momentum, weight decay)
    tiny_model.train()
    torch_model.train()
    tiny_opt = tinynet.optim.SGD(tiny_model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    torch_opt = torch.optim.SGD(torch_model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    for batch in args.train_batches:
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        labels = rng.integers(0, args.classes, size=batch).astype(np.int64)
        x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)

        def run_tiny():
            t0 = time.perf_counter()
            tiny_opt.zero_grad()
            loss = F.cross_entropy(tiny_model(tinynet.Tensor(x)), labels)
            loss.backward()
            tiny_opt.step()
            return {"s": time.perf_counter() - t0}

        def run_torch():
            t0 = time.perf_counter()
            torch_opt.zero_grad()
            loss = torch_F.cross_entropy(torch_model(x_torch), labels_torch)
            loss.backward()
            torch_opt.step()
            return {"s": time.perf_counter() - t0}

        warmup, reps = args.net_reps
        if batch >= 128 and not args.smoke:
            reps = max(3, reps - 2)
        tiny, ref = _alternate([run_tiny, run_torch], warmup, reps)
        t, r = batch / _median(tiny["s"]), batch / _median(ref["s"])
        results["net"]["train_step"][batch] = {"tinynet_s": tiny["s"], "torch_s": ref["s"]}
        target = (">=", 1.3) if batch == 64 else None                # issue 13
        table.add(f"alexnet train_step b={batch} {size}px", "img/s", t, r, t / r, target)
        headlines.append(f"alexnet train_step b={batch} {size}px: tinynet {t:.1f} img/s, "
                         f"torch {r:.1f} img/s, ratio {t / r:.2f}")
        print("  " + headlines[-1], flush=True)


# ====================================================================== the model zoo
ZOO = ["resnet18", "resnet50", "vgg16"]
ZOO_TARGETS = {"resnet18": 1.2, "resnet50": 1.2, "vgg16": 1.5}


def _time_fwd_bwd(tiny_layer, torch_layer, x, needs_input_grad, warmup, reps, seed=4):
    """Forward and backward (``y.backward(dy)``) of one layer in each framework, alternating."""
    import numpy as np
    import tinynet
    import torch
    tiny_params, torch_params = list(tiny_layer.parameters()), list(torch_layer.parameters())
    with torch.no_grad():
        out_shape = tuple(torch_layer(torch.from_numpy(x)).shape)
    dy = np.random.default_rng(seed).standard_normal(out_shape).astype(np.float32)
    dy_torch = torch.from_numpy(dy)

    def run_tiny():
        for p in tiny_params:
            p.grad = None
        xt = tinynet.Tensor(x, requires_grad=needs_input_grad)
        t0 = time.perf_counter()
        y = tiny_layer(xt)
        t1 = time.perf_counter()
        y.backward(dy)
        return {"fwd": t1 - t0, "bwd": time.perf_counter() - t1}

    def run_torch():
        for p in torch_params:
            p.grad = None
        xt = torch.from_numpy(x).requires_grad_(needs_input_grad)
        t0 = time.perf_counter()
        y = torch_layer(xt)
        t1 = time.perf_counter()
        y.backward(dy_torch)
        return {"fwd": t1 - t0, "bwd": time.perf_counter() - t1}

    tiny, ref = _alternate([run_tiny, run_torch], warmup, reps)
    for samples in (tiny, ref):
        samples["fwd+bwd"] = [f + b for f, b in zip(samples["fwd"], samples["bwd"])]
    return tiny, ref


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
    import torch
    import torch.nn.functional as torch_F
    from tinynet.nn import functional as F
    for path in (os.path.join(ROOT, "examples"), HERE):
        if path not in sys.path:
            sys.path.insert(0, path)
    import tinynet.models as models
    import torch_zoo

    batch, size = args.zoo_batch, args.zoo_size
    rng = np.random.default_rng(5)
    results["zoo"] = {"batch": batch, "size": size, "networks": {}, "layers": {}}
    warmup, reps = args.net_reps
    for name in args.zoo_models:
        tinynet.manual_seed(0)
        tiny_model = models.create(name, num_classes=args.classes)
        torch_model = torch_zoo.create(name, args.classes)
        _copy_into_torch(tiny_model, torch_model)
        x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
        tiny_model.eval()
        torch_model.eval()
        with tinynet.no_grad():
            a = tiny_model(tinynet.tensor(x)).numpy()
        with torch.no_grad():
            b = torch_model(torch.from_numpy(x)).numpy()
        check = float(np.max(np.abs(a - b)) / max(1e-12, float(np.max(np.abs(b)))))
        tiny_model.train()
        torch_model.train()
        tiny_opt = tinynet.optim.SGD(tiny_model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        torch_opt = torch.optim.SGD(torch_model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        labels = rng.integers(0, args.classes, size=batch).astype(np.int64)
        x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)

        def run_tiny():
            t0 = time.perf_counter()
            tiny_opt.zero_grad()
            F.cross_entropy(tiny_model(tinynet.Tensor(x)), labels).backward()
            tiny_opt.step()
            return {"s": time.perf_counter() - t0}

        def run_torch():
            t0 = time.perf_counter()
            torch_opt.zero_grad()
            torch_F.cross_entropy(torch_model(x_torch), labels_torch).backward()
            torch_opt.step()
            return {"s": time.perf_counter() - t0}

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
        tiny, ref = _time_fwd_bwd(tiny_layer, torch_layer, x, needs_input_grad, warmup, reps)
        results["zoo"]["layers"][label] = {"input_shape": shape, "tinynet_s": tiny, "torch_s": ref}
        t, r = _median(tiny["fwd+bwd"]) * 1e3, _median(ref["fwd+bwd"]) * 1e3
        table.add(f"{label} fwd+bwd [{'x'.join(map(str, shape))}]", "ms", t, r, r / t,
                  None if target is None else (">=", target))
        print(f"  {label:30s} fwd+bwd tinynet {t:8.1f} ms  torch {r:8.1f} ms", flush=True)


# ====================================================================== BLAS diagnostic
def bench_gemm(args, table, results):
    """NumPy's sgemm against torch's at AlexNet's shapes (what conv and FC rest on).

    Each case is (m, k, n, layout): "NN" is A (m, k) @ B (k, n); "NT" is A (m, k) @ B.T with
    B stored (n, k) -- the form of conv2d_backward's dW = dY @ cols.T, where k = N*OH*OW is
    long; "TN'" computes the same dW as (cols @ dY.T).T, an alternative for the kernel.
    """
    import numpy as np
    import torch
    b, s = args.layer_batch, args.size
    conv1_out = (s - 11) // 4 + 1
    pool1_out = (conv1_out - 3) // 2 + 1
    k1 = b * conv1_out * conv1_out
    cases = [
        ("sgemm conv2 fwd W@cols", 256, 96 * 25, b * pool1_out * pool1_out, "NN"),
        ("sgemm conv1 dW dY@cols.T", 96, k1, 3 * 11 * 11, "NT"),
        ("sgemm conv1 dW (cols@dY.T).T", 96, k1, 3 * 11 * 11, "TN'"),
        ("sgemm fc6 fwd x@W.T", b, 9216, 4096, "NT"),
        ("sgemm fc8 fwd x@W.T", b, 4096, args.classes, "NT"),
    ]
    rng = np.random.default_rng(3)
    results["gemm"] = {}
    warmup, reps = args.layer_reps
    for name, m, k, n, layout in cases:
        a = rng.standard_normal((m, k)).astype(np.float32)
        bt = rng.standard_normal((n, k)).astype(np.float32) if layout != "NN" else None
        bn = rng.standard_normal((k, n)).astype(np.float32) if layout == "NN" else None
        ta = torch.from_numpy(a)
        tb = torch.from_numpy(bn if layout == "NN" else bt)

        def run_numpy():
            t0 = time.perf_counter()
            if layout == "NN":
                np.matmul(a, bn)
            elif layout == "NT":
                np.matmul(a, bt.T)
            else:
                np.matmul(bt, a.T).T
            return {"s": time.perf_counter() - t0}

        def run_torch():
            t0 = time.perf_counter()
            torch.matmul(ta, tb if layout == "NN" else tb.T)
            return {"s": time.perf_counter() - t0}

        tiny, ref = _alternate([run_numpy, run_torch], warmup, max(3, reps))
        flops = 2.0 * m * k * n
        t, r = flops / _median(tiny["s"]) / 1e9, flops / _median(ref["s"]) / 1e9
        results["gemm"][name] = {"m": m, "k": k, "n": n, "layout": layout,
                                 "numpy_s": tiny["s"], "torch_s": ref["s"]}
        table.add(f"{name} ({m}x{k}x{n})", "GFLOP/s", t, r, t / r,
                  note="numpy BLAS vs torch BLAS" + ("; torch: dY@cols.T" if layout == "TN'" else ""))


# ====================================================================== data pipeline
class TorchStylePipeline:
    """The torchvision recipe without torchvision: PIL decode (full size), Resize(256),
    RandomCrop(227), RandomHorizontalFlip, ToTensor, PCA lighting, Normalize."""

    def __init__(self, files, size, seed=0):
        self.files, self.size, self.seed = files, size, seed

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        import numpy as np
        import torch
        from PIL import Image
        path, label = self.files[index]
        rng = np.random.default_rng((self.seed, index))
        with Image.open(path) as img:
            img = img.convert("RGB")
        short = max(self.size, int(round(self.size * 256 / 227)))
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.Resampling.BILINEAR)
        w, h = img.size
        left, top = int(rng.integers(0, w - self.size + 1)), int(rng.integers(0, h - self.size + 1))
        img = img.crop((left, top, left + self.size, top + self.size))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(255.0)
        alpha = rng.normal(0.0, 0.1, size=3)
        offset = np.asarray(PCA_EIGVEC) @ (alpha * np.asarray(PCA_EIGVAL))
        x.add_(torch.from_numpy(offset.astype(np.float32)).view(3, 1, 1))
        x.sub_(torch.tensor(MEAN).view(3, 1, 1)).div_(torch.tensor(STD).view(3, 1, 1))
        return x, label


def _synthetic_folder(count, size):
    """A temporary flat Kaggle-style folder of ``count`` JPEGs (smoke runs need no data)."""
    import numpy as np
    from PIL import Image
    folder = tempfile.mkdtemp(prefix="tinynet-bench-")
    rng = np.random.default_rng(0)
    for k in range(count):
        pixels = rng.integers(0, 256, size=(size + 40, size + 60, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{'cat' if k % 2 else 'dog'}.{k}.jpg"), quality=90)
    return folder


def bench_data(args, table, results, headlines):
    import torch
    from tinynet.data import DataLoader, ImageFolder
    from tinynet.data import transforms as T

    root = args.data or DEFAULT_DATA
    synthetic = None
    if args.smoke and args.data is None or not os.path.isdir(root):
        if not args.smoke:
            print(f"  data folder {root} not found: using synthetic JPEGs", flush=True)
        root = synthetic = _synthetic_folder(max(args.data_images, 4), 300)
    size = args.size
    resize = max(size, int(round(size * 256 / 227)))
    train_tf = T.Compose([T.Resize(resize), T.RandomCrop(size), T.RandomHorizontalFlip(), T.ToArray(),
                          T.PCAColorAugmentation(PCA_EIGVAL, PCA_EIGVEC), T.Normalize(MEAN, STD)])
    dataset = ImageFolder(root, transform=train_tf, max_images=args.data_images, seed=0)
    batch = 4 if args.smoke else 64
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=args.workers, seed=0)
    for path, _ in dataset.samples:          # page cache: time decoding, not the disk
        with open(path, "rb") as f:
            f.read()

    torch_set = TorchStylePipeline(dataset.samples, size)
    torch_loader = torch.utils.data.DataLoader(
        torch_set, batch_size=batch, shuffle=True, num_workers=args.workers,
        persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(0))

    def run_tiny():
        t0 = time.perf_counter()
        n = 0
        for images, labels in loader:
            n += len(labels)
        return {"s": time.perf_counter() - t0, "n": n}

    def run_torch():
        t0 = time.perf_counter()
        n = 0
        for images, labels in torch_loader:
            n += len(labels)
        return {"s": time.perf_counter() - t0, "n": n}

    warmup, reps = args.data_reps
    tiny, ref = _alternate([run_tiny, run_torch], warmup, reps)
    del torch_loader
    t = _median([n / s for n, s in zip(tiny["n"], tiny["s"])])
    r = _median([n / s for n, s in zip(ref["n"], ref["s"])])
    results["data"] = {"root": root, "images": len(dataset), "batch": batch, "workers": args.workers,
                       "tinynet_img_per_s": [n / s for n, s in zip(tiny["n"], tiny["s"])],
                       "torch_img_per_s": [n / s for n, s in zip(ref["n"], ref["s"])]}
    label = "catdog" if synthetic is None else "synthetic"
    table.add(f"data pipeline {label} {size}px ({args.workers} workers)", "img/s", t, r, t / r,
              note="torch = PIL torchvision-style, worker processes")
    line = (f"data pipeline {label} decode+augment {size}px: tinynet {t:.1f} img/s, torch {r:.1f} img/s, "
            f"ratio {t / r:.2f}")
    step = results.get("net", {}).get("train_step", {})
    key = 64 if 64 in step else (max(step) if step else None)
    if key is not None:
        train_rate = key / _median(step[key]["tinynet_s"])
        cover = t / train_rate
        results["data"]["over_train_step"] = {"batch": key, "train_img_per_s": train_rate, "factor": cover}
        table.add(f"data pipeline / tinynet train_step b={key}", "x", cover, None, cover, (">=", 3.0),
                  note="pipeline img/s over training img/s")
        line += f"; {cover:.1f}x tinynet's train_step b={key} ({train_rate:.1f} img/s)"
    headlines.append(line)
    print("  " + line, flush=True)
    if synthetic is not None:
        import shutil
        shutil.rmtree(synthetic, ignore_errors=True)


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
        sys.path.insert(0, os.path.join(ROOT, "examples"))
        from tinynet.models.alexnet import AlexNet
        import numba
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
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
            command = [sys.executable, os.path.abspath(__file__), "--memory-child", framework,
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


# ====================================================================== main
def _without_options(argv, names):
    """``argv`` without the options in ``names`` (``--x v`` and ``--x=v`` forms)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        if token in names:
            skip = True
            continue
        if token.split("=", 1)[0] in names:
            continue
        out.append(token)
    return out


def run_both_orders(args, argv):
    """``--import-order both``: one fresh process per import order (each framework's runtimes read
    their settings once per process), alternating nothing across processes; one merged table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    base = _without_options(argv, {"--import-order", "--json", "--markdown"})
    table, merged, headlines = Table(), {"mode": "both import orders", "runs": {}}, []
    with tempfile.TemporaryDirectory(prefix="tinynet-bench-") as folder:
        for order in IMPORT_ORDERS:
            report = os.path.join(folder, f"{order}.json")
            command = [sys.executable, os.path.abspath(__file__)] + base + ["--import-order", order,
                                                                            "--json", report]
            print(f"=== import order {order}: {' '.join(IMPORT_ORDERS[order])} (fresh process)", flush=True)
            done = subprocess.run(command, cwd=ROOT)
            if done.returncode != 0:
                raise RuntimeError(f"the {order} run failed (exit {done.returncode})")
            with open(report) as f:
                results = json.load(f)
            merged["runs"][order] = results
            for row in results["table"]:
                table.rows.append(dict(row, name=f"{row['name']} [{order}]"))
            headlines.extend(f"[{order}] {line}" for line in results["headlines"])
    print("\nboth import orders (each in its own process; ratio = torch time / tinynet time):")
    print("\n".join(table.lines()))
    print()
    for line in headlines:
        print(line)
    merged["table"], merged["headlines"] = table.rows, headlines
    if args.json:
        with open(args.json, "w") as f:
            json.dump(merged, f, indent=1, default=str)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(table.markdown()) + "\n\n" + "\n".join(headlines) + "\n")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return 0
    if args.import_order == "both":
        return run_both_orders(args, argv)
    global SETTLE_SECONDS
    SETTLE_SECONDS = args.settle
    set_thread_environment(args.threads)
    import_record = import_libraries(args.import_order)   # after the thread environment
    thread_method = configure_threads(args.threads)
    load = CpuLoad()
    started = time.perf_counter()
    mode = "smoke" if args.smoke else ("quick" if args.quick else "full")
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"tinynet vs torch, {mode} run, {args.threads} threads each, {args.size}px"
          + (f", {args.settle:g} s idle before each timed call" if args.settle else ""), flush=True)

    table, results, headlines = Table(), {"mode": mode, "command": command.strip()}, []
    tiny_model, torch_model, check = build_models(args.classes, args.size)
    results["same_weights_check"] = check
    print(f"  same weights: max |logit difference| / max |logit| = {check:.1e}", flush=True)
    # the first numba call picks the threading layer; record machine facts after one kernel ran
    results["machine"] = machine_facts(args.threads, thread_method)
    results["thread_settings"] = settings = thread_settings_report(import_record)
    print(f"  import order {args.import_order} ({', '.join(settings['modules'])}); PyTorch's OpenMP loaded with "
          f"OMP_WAIT_POLICY {settings['OMP_WAIT_POLICY_when_torch_loaded']}"
          f"{' (its own libgomp)' if settings['torch_openmp_separate'] else ' (one OpenMP runtime shared with numba)'}; "
          f"OpenBLAS thread timeout {settings['openblas_thread_timeout']}", flush=True)

    if "layers" in args.sections:
        print(f"layers (b={args.layer_batch}, median of {args.layer_reps[1]}):", flush=True)
        bench_layers(args, tiny_model, torch_model, table, results)
    if "net" in args.sections:
        print("whole net:", flush=True)
        bench_net(args, tiny_model, torch_model, table, results, headlines)
    if "gemm" in args.sections:
        bench_gemm(args, table, results)
    del tiny_model, torch_model
    gc.collect()
    if "zoo" in args.sections:
        print(f"model zoo (b={args.zoo_batch}, {args.zoo_size}px):", flush=True)
        bench_zoo(args, table, results, headlines)
    if "data" in args.sections:
        print("data pipeline:", flush=True)
        bench_data(args, table, results, headlines)
    if "memory" in args.sections:
        print("peak memory (fresh subprocesses):", flush=True)
        bench_memory(args, table, results, headlines)

    if "layers" in args.sections:
        layer_ratios = {name: _median(v["torch_s"]["fwd+bwd"]) / _median(v["tinynet_s"]["fwd+bwd"])
                        for name, v in results["layers"].items()}
        worst = min(layer_ratios, key=layer_ratios.get)
        below = [n for n, v in layer_ratios.items()
                 if v < (1.0 if n.startswith(("pool", "norm")) else 0.8)]
        headlines.append(f"kernels fwd+bwd b={args.layer_batch} {args.size}px: worst ratio "
                         f"{layer_ratios[worst]:.2f} ({worst}); below target: {', '.join(below) or 'none'}")

    results["elapsed_s"] = time.perf_counter() - started
    results["cpu_load"] = load.report()
    results["table"] = table.rows
    results["headlines"] = headlines

    machine = results["machine"]
    blas = machine["numpy_blas"][0] if machine["numpy_blas"] else {}
    print()
    print(f"machine: {machine['cpu']}, {machine['usable_cpus']} usable CPUs; numpy {machine['numpy']} "
          f"BLAS {blas.get('internal_api')} {blas.get('version')} kernel {blas.get('architecture')} "
          f"threads {blas.get('num_threads')}; torch {machine['torch']} ({machine['torch_blas']}, "
          f"{machine['torch_onednn']}, {machine['torch_capability']}) threads {machine['torch_threads']}; "
          f"numba {machine['numba']} ({machine['numba_threading_layer']}) threads {machine['numba_threads']}")
    if results["cpu_load"]:
        cl = results["cpu_load"]
        print(f"noise: other processes used {cl['other_cores_avg']:.2f} cores on average "
              f"(steal {cl['steal_cores_avg']:.2f}) over {cl['wall_s']:.0f} s; loadavg {cl['loadavg']}")
    print("ratio = torch time / tinynet time (>1: tinynet faster); memory: tinynet / torch (<1: smaller)")
    print("\n".join(table.lines()))
    print()
    for line in headlines:
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(table.markdown()) + "\n\n" + "\n".join(headlines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
