"""What every benchmark shares: thread set-up, the machine's facts, timing by alternation, the table.

Imported by the section modules of ``run.py`` (bench_*.py) and by the other benchmark scripts as a
sibling module: running ``python benchmarks/<script>.py`` puts benchmarks/ first on ``sys.path``.
It imports nothing heavy at its top (NumPy, PyTorch and tinynet are imported inside the functions,
after the thread environment is set).
"""
from __future__ import annotations

import gc
import os
import platform
import sys
import statistics
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


def set_thread_environment(threads):
    """Before NumPy, numba and torch are imported: thread counts for their pools, nothing else.

    Each framework runs with what it sets itself: tinynet applies OPENBLAS_THREAD_TIMEOUT at
    import, whatever was imported first (tinynet/_threads.py), and its kernels run on its own
    threads; PyTorch's libgomp (its own copy, torch/lib) loads with OpenMP's defaults.  Exporting a
    wait policy here would impose it on PyTorch (OMP_WAIT_POLICY=PASSIVE made PyTorch's AlexNet
    step 17.0 img/s instead of 20.2, issue 13).  A value the user exported before starting the
    benchmark is kept and shows in the report's environment line.
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
    """After the kernels ran: OpenBLAS's thread timeout, and the OpenMP/TBB runtimes in the process
    (PyTorch's own; tinynet starts none)."""
    import ctypes

    from tinynet import _threads
    timeouts = {}
    for path, library in _openblas_libraries():
        reader = _symbol(library, ["openblas_thread_timeout"], ctypes.c_uint)
        timeouts[os.path.basename(path)] = reader() if reader else None
    runtimes = [path for fragment in ("libgomp", "libiomp", "libomp", "libtbb")
                for path in _threads.loaded_libraries(fragment) or []]
    record = dict(record)
    record["openblas_thread_timeout"] = timeouts
    record["openmp_runtimes"] = runtimes
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

    import numpy  # noqa: F401

    import tinynet
    if "torch" in sys.modules:     # a tinynet-only process (profile_step.py) never loads PyTorch
        sys.modules["torch"].set_num_threads(threads)
    tinynet.backend.set_num_threads(threads)     # tinynet's kernel threads (its own pool, not numba's)
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

    import tinynet
    torch = sys.modules.get("torch")       # facts about PyTorch only where it is loaded already
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
    torch_config = torch.__config__.show() if torch else ""
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
        "tinynet_threads": tinynet.backend.get_num_threads(),
        "torch": torch.__version__ if torch else "not loaded",
        "torch_blas": torch_blas,
        "torch_onednn": onednn,
        "torch_threads": torch.get_num_threads() if torch else None,
        "torch_capability": torch.backends.cpu.get_cpu_capability() if torch else None,
        "environment": {k: v for k, v in sorted(os.environ.items())
                        if k.startswith(("OPENBLAS", "OMP_", "MKL", "NUMBA_", "GOTO", "NVPL"))},
    }


def _numba_threading_layer():
    """tinynet's kernels run on tinynet's own threads (kernels/_numba.py); numba's layer stays
    unstarted unless something else in the process runs a ``parallel=True`` function."""
    import numba.np.ufunc.parallel as parallel
    if not parallel._is_initialized:
        return "not started"
    import numba
    return numba.threading_layer()


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

    x = np.random.default_rng(seed).standard_normal((2, 3, size, size)).astype(np.float32)
    return tiny_model, torch_model, twin_difference(tiny_model, torch_model, x)


def twin_difference(tiny_model, torch_model, x):
    """Largest difference of the two models' outputs on ``x``, relative to torch's largest output, in
    eval mode (no dropout, running statistics): are the twins the same function?  Both are left in
    training mode."""
    import numpy as np
    import tinynet
    import torch
    tiny_model.eval()
    torch_model.eval()
    with tinynet.no_grad():
        a = tiny_model(tinynet.tensor(x)).numpy()
    with torch.no_grad():
        b = torch_model(torch.from_numpy(x)).numpy()
    tiny_model.train()
    torch_model.train()
    return float(np.max(np.abs(a - b)) / max(1e-12, float(np.max(np.abs(b)))))


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


def time_calls(call, warmup, reps):
    """Call ``call()`` ``warmup`` times, then ``reps`` times more; the seconds of each timed call."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
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


def sgd_pair(tiny_model, torch_model):
    """The benchmarks' optimizer in each framework: SGD, momentum 0.9, weight decay 5e-4."""
    import tinynet
    import torch
    return (tinynet.optim.SGD(tiny_model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4),
            torch.optim.SGD(torch_model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4))


def training_step_pair(tiny_model, tiny_opt, torch_model, torch_opt, x, labels):
    """Two runners for :func:`_alternate`: one training step (zero_grad, forward, cross-entropy,
    backward, update) of each framework on the same batch, each returning ``{"s": seconds}``."""
    import tinynet
    import torch
    import torch.nn.functional as torch_F
    from tinynet.nn import functional as F
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

    return run_tiny, run_torch


def time_fwd_bwd(tiny_layer, torch_layer, x, needs_input_grad, warmup, reps, seed=4):
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
