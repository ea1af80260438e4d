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
and merges the tables.  tinynet applies its own OpenBLAS thread timeout at import and runs its
kernels on its own threads (tinynet/_threads.py); PyTorch's OpenMP runtime loads with its
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
import subprocess
import sys
import tempfile
import time

import harness
from harness import (DEFAULT_DATA, IMPORT_ORDERS, ROOT, CpuLoad, Table, _median, build_models, configure_threads,
                     import_libraries, machine_facts, set_thread_environment, thread_settings_report)
from bench_data import bench_data
from bench_gemm import bench_gemm
from bench_layers import bench_layers
from bench_memory import bench_memory, memory_child
from bench_net import bench_net
from bench_zoo import ZOO, bench_zoo


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
    p.add_argument("--classes", type=int, default=None, help="classes of AlexNet (default 1000; smoke 10)")
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
    args.classes = args.classes or (10 if smoke else 1000)
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
    # smoke: ResNet-18 alone (ResNet-50 and VGG-16 run the same code, with 25 M and 138 M weights to draw)
    args.zoo_models = (args.zoo_models or (ZOO[0] if smoke else ",".join(ZOO))).split(",")
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
    harness.SETTLE_SECONDS = args.settle
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
    # after the first kernels ran: which runtimes are loaded
    results["machine"] = machine_facts(args.threads, thread_method)
    results["thread_settings"] = settings = thread_settings_report(import_record)
    print(f"  import order {args.import_order} ({', '.join(settings['modules'])}); PyTorch's OpenMP loaded with "
          f"OMP_WAIT_POLICY {settings['OMP_WAIT_POLICY_when_torch_loaded']}"
          f"; OpenMP/TBB runtimes in the process: {[os.path.basename(p) for p in settings['openmp_runtimes']]}; "
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
          f"numba {machine['numba']} (its threading layer: {machine['numba_threading_layer']}); tinynet kernel "
          f"threads {machine['tinynet_threads']}")
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
