#!/usr/bin/env python
"""tinynet and PyTorch each in its own fresh processes: whole networks, inference and training step.

    python benchmarks/separate_processes.py                      # AlexNet, 227 px: inference b=1/64, step b=64
    python benchmarks/separate_processes.py --models resnet18,vgg16 --size 224 --train-batches 32 --infer-batches 1
    python benchmarks/separate_processes.py --smoke              # tiny shapes: the code paths run

Why a second runner besides ``run.py``: run.py times both frameworks in one process, alternating,
and that is not neutral.  After each PyTorch call its OpenMP threads keep spinning (libgomp's
default wait policy, which PyTorch leaves as it is) on the cores tinynet's next call needs, so
tinynet measured ``0.75x`` at batch 1 inside run.py and ``1.1-1.2x`` in a process of its own
(AlexNet inference, 2 cores: 46 ms a batch alone, 71 ms beside PyTorch).  Here each framework runs
the way its users run it: a process that imports NumPy first and then tinynet and never loads
PyTorch, and a process that imports PyTorch alone; thread counts are the only thing set (the same
for both), everything else is each framework's default.  Rounds alternate the two (tinynet then
torch, torch then tinynet, ...), each process warms up (compiled kernels loaded, buffers built) and
then times ``--reps`` calls; the figure is the median over every timed call of every round.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from harness import time_calls  # a sibling module (benchmarks/ is on sys.path when a script here runs)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="alexnet", help="comma list: alexnet, resnet18, resnet50, vgg16")
    parser.add_argument("--size", type=int, default=None, help="image size (default 227 for AlexNet, else 224)")
    parser.add_argument("--infer-batches", default="1,64")
    parser.add_argument("--train-batches", default="64")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="process pairs per framework (alternating)")
    parser.add_argument("--reps", type=int, default=5, help="timed calls per process and measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: checks the code paths")
    parser.add_argument("--json", default=None, help="write every sample here")
    parser.add_argument("--child", choices=["tinynet", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.reps, args.warmup, args.classes = 1, 1, 1, 10
        args.infer_batches, args.train_batches = "2", "2"
    args.infer_batches = [int(b) for b in args.infer_batches.split(",") if b]
    args.train_batches = [int(b) for b in args.train_batches.split(",") if b]
    args.models = [m for m in args.models.split(",") if m]
    return args


def image_size(args, model):
    if args.smoke:
        return 67 if model == "alexnet" else 32
    return args.size or (227 if model == "alexnet" else 224)


# ====================================================================== one framework, one process
def child(args):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    import numpy as np                     # first, as user code does
    if args.child == "tinynet":
        import tinynet
        from tinynet.nn import functional as F
        import tinynet.models as models

        def build(name):
            return models.create(name, num_classes=args.classes)

        def infer(model, x):
            with tinynet.no_grad():
                model(tinynet.Tensor(x))

        def make_step(model):
            optimizer = tinynet.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

            def step(x, labels):
                optimizer.zero_grad()
                F.cross_entropy(model(tinynet.Tensor(x)), labels).backward()
                optimizer.step()
            return step
    else:
        import torch
        torch.set_num_threads(args.threads)
        import torch_zoo     # sibling modules: benchmarks/ is on sys.path when a script here runs
        from bench_memory import _torch_only_model

        def build(name):
            if name == "alexnet":
                return _torch_only_model(args.classes)
            return torch_zoo.create(name, num_classes=args.classes)

        def infer(model, x):
            with torch.no_grad():
                model(torch.from_numpy(x))

        def make_step(model):
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

            def step(x, labels):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(labels)).backward()
                optimizer.step()
            return step

    rng = np.random.default_rng(0)
    results = {}
    for name in args.models:
        size = image_size(args, name)
        model = build(name)
        model.eval()
        for batch in args.infer_batches:
            x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            results[f"{name} inference b={batch} {size}px"] = dict(batch=batch, samples=time_calls(
                lambda: infer(model, x), args.warmup, args.reps * (3 if batch <= 4 else 1)))
        model.train()
        step = make_step(model)
        for batch in args.train_batches:
            x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            labels = rng.integers(0, args.classes, size=batch).astype(np.int64)
            results[f"{name} train_step b={batch} {size}px"] = dict(batch=batch, samples=time_calls(
                lambda: step(x, labels), args.warmup, args.reps))
    loaded = sorted(m for m in ("torch", "tinynet", "numba") if m in sys.modules)
    print(json.dumps({"framework": args.child, "modules_loaded": loaded, "results": results}))
    return 0


# ====================================================================== the parent
def run_child(args, framework, argv):
    command = [sys.executable, os.path.abspath(__file__), "--child", framework] + argv
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {framework} process failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if framework == "tinynet" and "torch" in report["modules_loaded"]:
        raise RuntimeError("the tinynet process loaded PyTorch: the measurement would not be separate")
    return report


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        return child(args)
    samples = {"tinynet": {}, "torch": {}}
    started = time.perf_counter()
    for round_number in range(args.rounds):
        order = ("tinynet", "torch") if round_number % 2 == 0 else ("torch", "tinynet")
        for framework in order:
            report = run_child(args, framework, argv)
            for key, value in report["results"].items():
                entry = samples[framework].setdefault(key, {"batch": value["batch"], "samples": []})
                entry["samples"].extend(value["samples"])
            print(f"round {round_number + 1}/{args.rounds}: {framework} done "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"\neach framework in its own processes ({args.rounds} rounds, alternating; tinynet: NumPy "
          f"imported first, PyTorch never loaded; torch: PyTorch alone), {args.threads} threads each")
    import torch  # noqa: F401  (its facts too; the parent only, never a tinynet child)
    from harness import machine_facts
    facts = machine_facts(args.threads, "OPENBLAS/OMP/MKL/NUMBA_NUM_THREADS, torch.set_num_threads")
    print(f"machine: {facts['cpu']}, {facts['usable_cpus']} usable CPUs; numpy {facts['numpy']}, "
          f"numba {facts['numba']}, torch {facts['torch']} ({facts['torch_capability']})")
    header = f"{'benchmark':<40}{'tinynet img/s':>15}{'torch img/s':>13}{'ratio':>8}"
    print(header + "\n" + "-" * len(header))
    table = []
    for key, entry in samples["tinynet"].items():
        batch = entry["batch"]
        tiny = batch / median(entry["samples"])
        ref = batch / median(samples["torch"][key]["samples"])
        table.append({"benchmark": key, "tinynet_img_s": tiny, "torch_img_s": ref, "ratio": tiny / ref})
        print(f"{key:<40}{tiny:>15.2f}{ref:>13.2f}{tiny / ref:>8.2f}")
    print("ratio = tinynet img/s / torch img/s (>1: tinynet faster); medians over every timed call")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"table": table, "samples": samples, "rounds": args.rounds, "threads": args.threads,
                       "machine": facts}, stream, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
