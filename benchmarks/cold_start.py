#!/usr/bin/env python
"""Cold start: from a fresh process to the end of the first training step, empty numba cache.

    python benchmarks/cold_start.py                       # the README's training command, 3 rounds
    python benchmarks/cold_start.py --rounds 5 --no-off-variant
    python benchmarks/cold_start.py --kernels             # AlexNet's first step alone: per-kernel compile CPU-s

Two measurements, each in fresh processes (nothing imported or compiled beforehand):

* ``--example`` (the default): ``python examples/alexnet_catdog.py`` with the README's arguments
  (``--example-args``), from the moment the process is started to the end of its first
  ``optimizer.step()`` -- imports, reading the folder, building the model, the crop-size check,
  the colour statistics (500 photos decoded), the first batch's photos, forward, backward and the
  update.  ``NUMBA_CACHE_DIR`` points at an empty temporary folder (a fresh install), then at the
  same folder again (the second run of the same command).  The example runs in a child process
  that wraps ``SGD.step`` to print the time, lets the background compilation finish (so that the
  second run finds what a finished first run leaves) and exits.  Two variants alternate:
  ``warm_up``, the example as it is -- its training loop calls ``tinynet.kernels.warm_up()``,
  here with the load check off, so that the overlap is measured whatever the load the benchmark
  itself leaves -- and ``off`` (``TINYNET_WARM_UP=0``: each kernel compiled at its first call).
* ``--kernels``: AlexNet's first training step alone (``--batch``, ``--size``) with every numba
  compilation it triggers, in CPU seconds (``time.process_time`` around numba's ``numba:compile``
  events: compiling is single-threaded, and CPU time is less sensitive than wall time to other
  work on the machine), and the cache's hits and misses.

Wall times are medians over ``--rounds`` rounds (the variants alternate within a round); the load
average before and after each round is printed with them.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "alexnet_catdog.py")
README_ARGS = "--data ../shared/data/catdog/train --image-size 128 --epochs 30 --test-fraction 0.1"


def _compile_recorder():
    """Register a numba listener; returns the list it fills with (kernel, CPU seconds), outermost only."""
    import numba.core.event as numba_event
    compiles = []

    class Recorder(numba_event.Listener):
        depth = 0

        def on_start(self, event):
            Recorder.depth += 1
            if Recorder.depth == 1:
                self.begin = time.process_time()

        def on_end(self, event):
            Recorder.depth -= 1
            if Recorder.depth == 0:
                function = getattr(event.data.get("dispatcher"), "py_func", None)
                name = (f"{function.__module__.rsplit('.', 1)[-1]}.{function.__qualname__}" if function
                        else str(event.data.get("dispatcher")))
                compiles.append((name, time.process_time() - self.begin))

    numba_event.register("numba:compile", Recorder())
    return compiles


# ----------------------------------------------------------------- the example, in a child
def example_child(launched, warm_up, example_args):
    import runpy
    compiles = _compile_recorder()
    import tinynet
    import tinynet.optim
    from tinynet.kernels import _warm_up
    if warm_up:
        _warm_up._cores_busy = lambda: False     # the overlap itself, whatever the load
    else:
        os.environ["TINYNET_WARM_UP"] = "0"
    original_step = tinynet.optim.SGD.step

    def step(self, *args, **kwargs):
        original_step(self, *args, **kwargs)
        started = _warm_up._current is not None
        report = {"first_step_end_s": time.time() - launched, "process_cpu_s": time.process_time(),
                  "compile_cpu_s": sum(seconds for _, seconds in compiles), "compiles": len(compiles),
                  "warm_up_started": started, "warm_up_finished": not started or _warm_up._current.finished}
        print("COLD_START " + json.dumps(report), flush=True)
        if started:
            _warm_up._current.join()             # the second run finds what a finished first run leaves
        os._exit(0)
    tinynet.optim.SGD.step = step
    sys.argv = [EXAMPLE] + example_args
    runpy.run_path(EXAMPLE, run_name="__main__")
    raise SystemExit("the example ended before its first training step")


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def run_example(args):
    variants = ["warm_up", "off"] if args.off_variant else ["warm_up"]
    samples = {(variant, cache): [] for variant in variants for cache in ("empty", "warm")}
    out_root = tempfile.mkdtemp(prefix="tinynet-cold-out-")
    example_args = args.example_args.split() + ["--out", os.path.join(out_root, "run")]
    print(f"python examples/alexnet_catdog.py {' '.join(example_args)}  (to the end of the first step)")
    try:
        for round_number in range(args.rounds):
            load_before = _loadavg()
            order = variants if round_number % 2 == 0 else variants[::-1]
            for variant in order:
                cache = tempfile.mkdtemp(prefix="tinynet-numba-cold-")
                try:
                    for state in ("empty", "warm"):
                        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
                        env.pop("TINYNET_WARM_UP", None)      # the child sets it for the off variant
                        command = [sys.executable, os.path.abspath(__file__), "--example-child",
                                   repr(time.time()), "1" if variant == "warm_up" else "0", "--"] + example_args
                        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
                        lines = [line for line in done.stdout.splitlines() if line.startswith("COLD_START ")]
                        if done.returncode != 0 or not lines:
                            sys.stderr.write(done.stderr[-3000:])
                            raise SystemExit(f"the example failed (exit {done.returncode})")
                        report = json.loads(lines[-1][len("COLD_START "):])
                        samples[(variant, state)].append(report)
                        print(f"  round {round_number + 1} {variant:8s} {state:5s} cache: first step ends at "
                              f"{report['first_step_end_s']:5.2f} s; this process {report['process_cpu_s']:5.2f} "
                              f"CPU-s, of which compiling {report['compile_cpu_s']:5.2f} "
                              f"({report['compiles']} compilations)", flush=True)
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
            print(f"  round {round_number + 1}: load average {load_before} before, {_loadavg()} after", flush=True)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    print("\nmedians (wall seconds from process start to the end of the first training step):")
    for (variant, state), reports in samples.items():
        values = [r["first_step_end_s"] for r in reports]
        cpu = [r["compile_cpu_s"] for r in reports]
        print(f"  {variant:8s} {state:5s} cache: {statistics.median(values):5.2f} s "
              f"(range {min(values):.2f}-{max(values):.2f}; compiling in this process "
              f"{statistics.median(cpu):.2f} CPU-s)")
    return 0


# ----------------------------------------------------------------- the first step alone
def kernels_child(args):
    started = time.perf_counter()
    compiles = _compile_recorder()
    import numpy as np

    import tinynet
    import tinynet.models as models
    from tinynet.nn import functional as F
    t1 = time.perf_counter()
    model = models.create("alexnet", num_classes=args.classes)
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
    print(json.dumps({
        "import_s": t1 - started, "build_s": t2 - t1, "first_step_s": first, "second_step_s": second,
        "import_to_first_step_end_s": t2 - started + first,
        "compiles": compiles[:before_second], "compile_cpu_s": sum(s for _, s in compiles[:before_second]),
        "compiles_in_second_step": len(compiles) - before_second,
    }))


def run_kernels(args):
    cache = tempfile.mkdtemp(prefix="tinynet-numba-cold-")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(args.threads)
    command = [sys.executable, os.path.abspath(__file__), "--kernels-child", "--batch", str(args.batch),
               "--size", str(args.size), "--classes", str(args.classes)]
    reports = {}
    try:
        for label in ("empty", "warm"):
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                return done.returncode
            reports[label] = report = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{label:5s} cache: import {report['import_s']:.2f} s, build AlexNet {report['build_s']:.2f} s, "
                  f"first step {report['first_step_s']:.2f} s (numba compiling {report['compile_cpu_s']:.2f} CPU-s "
                  f"in {len(report['compiles'])} compilations), second step {report['second_step_s']:.2f} s",
                  flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print("\ncompilations in the first step with the empty cache (CPU seconds, slowest first; numba's own "
          "overloads such as np.empty compile inside the kernel that uses them and are counted in it):")
    for name, seconds in sorted(reports["empty"]["compiles"], key=lambda item: -item[1]):
        print(f"  {seconds:6.2f}  {name}")
    print(f"\nbatch {args.batch}, {args.size} px, {args.threads} threads; load average {_loadavg()}")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--example-child"]:
        separator = argv.index("--")
        example_child(float(argv[1]), argv[2] == "1", argv[separator + 1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernels", action="store_true", help="AlexNet's first step alone, per-kernel compile times")
    p.add_argument("--kernels-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--example-args", default=README_ARGS, help=f"arguments of alexnet_catdog.py (default: {README_ARGS})")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-off-variant", dest="off_variant", action="store_false",
                   help="only the example as it is (no TINYNET_WARM_UP=0 runs)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=227)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.kernels_child:
        kernels_child(args)
        return 0
    if args.kernels:
        return run_kernels(args)
    return run_example(args)


if __name__ == "__main__":
    sys.exit(main())
