#!/usr/bin/env python
"""Cold start: from ``import tinynet`` to the end of the first AlexNet training step.

    python benchmarks/cold_start.py                 # empty numba cache, then the warm cache, 2 processes
    python benchmarks/cold_start.py --batch 64      # the issue's figure (b=64, 227 px)

Each measurement runs in a fresh process, so nothing is imported or compiled beforehand:

* ``fresh``: ``NUMBA_CACHE_DIR`` points at an empty temporary folder (a fresh install, a fresh
  clone, or a read-only install whose per-user cache is still empty);
* ``warm``: the same folder again, now holding what the first process compiled.

Reported per process: the import time, building AlexNet, the first and second training steps
(forward + cross-entropy + backward + SGD with momentum), and every numba compilation the
first step triggered (numba's ``numba:compile`` events: kernel, seconds), with the numba cache's
hits and misses.  The second step's time is the steady state the first one is compared with.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

KERNEL_MODULES = {name[:-3] for name in os.listdir(os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "kernels")) if name.endswith(".py")}
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def child(args):
    started = t0 = time.perf_counter()   # the import time includes numba's, imported first here
    import numba.core.event as numba_event
    compiles = []

    class Recorder(numba_event.Listener):
        def on_start(self, event):
            self.begin = time.process_time()   # CPU seconds: compiling is single-threaded, and
            # on a shared machine wall time mostly measures the other processes

        def on_end(self, event):
            dispatcher = event.data.get("dispatcher")
            name = getattr(getattr(dispatcher, "py_func", None), "__qualname__", str(dispatcher))
            module = getattr(getattr(dispatcher, "py_func", None), "__module__", "")
            compiles.append((f"{module.rsplit('.', 1)[-1]}.{name}", time.process_time() - self.begin))

    numba_event.register("numba:compile", Recorder())
    import numpy as np
    import tinynet
    from tinynet.nn import functional as F
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from tinynet.models.alexnet import AlexNet
    t1 = time.perf_counter()
    model = AlexNet(num_classes=args.classes)
    optimizer = tinynet.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    t2 = time.perf_counter()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    labels = rng.integers(0, args.classes, size=args.batch)

    def step():
        begin = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(model(tinynet.Tensor(x)), labels).backward()
        optimizer.step()
        return time.perf_counter() - begin

    first = step()
    before_second = len(compiles)
    second = step()
    compiled_in_first = compiles[:before_second]
    # numba's compile events nest (np.empty's implementation compiles inside the kernel using it), so
    # the total counts the outermost events only: one per kernel of tinynet
    print(json.dumps({
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "import_s": t1 - t0, "build_s": t2 - t1, "first_step_s": first, "second_step_s": second,
        "import_to_first_step_end_s": t2 - t0 + first, "process_s": time.perf_counter() - started,
        "compiles": compiled_in_first, "compiles_total_s": sum(s for name, s in compiled_in_first if name.split(".")[0] in KERNEL_MODULES),
        "compiles_in_second_step": len(compiles) - before_second,
    }))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=227)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=None, help="numba cache folder (default: a fresh temporary one)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    cache = args.cache_dir or tempfile.mkdtemp(prefix="tinynet-numba-cold-")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(args.threads)
    command = [sys.executable, os.path.abspath(__file__), "--child", "--batch", str(args.batch),
               "--size", str(args.size), "--classes", str(args.classes)]
    reports = {}
    for label in ("fresh", "warm"):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            return done.returncode
        reports[label] = report = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{label:5s} cache: import {report['import_s']:.2f} s, build AlexNet {report['build_s']:.2f} s, "
              f"first step {report['first_step_s']:.2f} s (numba compiling {report['compiles_total_s']:.2f} CPU-s "
              f"in {len(report['compiles'])} compilations), second step {report['second_step_s']:.2f} s; "
              f"import to end of first step {report['import_to_first_step_end_s']:.2f} s", flush=True)
    print("\ncompilations in the first step with the fresh cache (CPU seconds, slowest first; numba's own "
          "overloads such as np.empty compile inside the kernel that uses them and are counted in it):")
    for name, seconds in sorted(reports["fresh"]["compiles"], key=lambda item: -item[1]):
        print(f"  {seconds:6.2f}  {name}")
    print(f"\nbatch {args.batch}, {args.size} px, {args.threads} threads; cache folder {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
