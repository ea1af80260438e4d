#!/usr/bin/env python
"""Data-parallel AlexNet on this machine: Allreduce cost, 1 process x 2 threads against
2 processes x 1 thread, and how much of the Allreduce the bucketed overlap hides.

    python benchmarks/distributed.py              # all of it (~2-4 min on 2 busy cores)
    python benchmarks/distributed.py --quick      # 128 px, global batch 8: about a minute, checks it runs
    python benchmarks/distributed.py --json out.json

It starts the measurements itself, each in fresh processes (``mpiexec -n 2`` from the mpich
wheel for the two-rank ones), with the thread count pinned by OMP/OPENBLAS/NUMBA_NUM_THREADS:

* ``allreduce``: 2 ranks sum AlexNet's gradients (the 2-class net of the Dogs-vs-Cats script,
  58.3 M float32 parameters = 233 MB) as DistributedDataParallel sends them: one Iallreduce
  per 25 MB bucket, all in flight, then waited for; and as one 233 MB Allreduce;
* ``step`` runs (synthetic 227 px images, SGD with momentum, dropout on as in training):
  - 1 process x 2 threads, global batch B (no communication at all);
  - 2 processes x 1 thread, B/2 each, 25 MB buckets: Allreduce overlapping backward (and
    the same with the MPI progress thread, TINYNET_MPI_PROGRESS_THREAD=1);
  - 2 processes x 1 thread, one bucket for everything: the Allreduce starts only after
    backward is done (nothing hidden);
  - 2 processes x 1 thread with ``no_sync``: the compute alone, no communication.
  "waits" = the time a step spent waiting for buckets once backward was done.  With one
  bucket nothing overlaps, so its wait is the whole Allreduce as it runs during training;
  hidden = 1 - wait(25 MB buckets) / wait(one bucket) is the share that overlap took away.

Medians over ``--steps`` steps after one warm-up step.  The figures depend on what else runs
on the machine: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mpiexec():
    found = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                           os.environ.get("PATH", "")]))
    if found is None:
        sys.exit("mpiexec not found: pip install -e \".[mpi]\" (mpi4py and the mpich wheel)")
    return found


# ------------------------------------------------------------------ inside the measured processes
def _alexnet_parameters():
    import tinynet
    from tinynet.models.alexnet import AlexNet
    tinynet.manual_seed(0)
    return AlexNet(num_classes=2)


def measure_allreduce(args):
    import numpy as np
    from tinynet import distributed as dist
    from tinynet.distributed.ddp import assign_buckets
    group = dist.init()
    model = _alexnet_parameters()
    buckets = assign_buckets(model.named_parameters(), int(args.bucket_mb * 2 ** 20))
    flats = [np.ones(b.numel, dtype=np.float32) for b in buckets]
    whole = np.ones(sum(b.numel for b in buckets), dtype=np.float32)
    bucketed, single = [], []
    for repeat in range(args.repeats + 1):
        group.barrier()
        started = time.perf_counter()
        works = [group.allreduce_start(f) for f in flats]
        for w in works:
            w.wait()
        elapsed_buckets = time.perf_counter() - started
        group.barrier()
        started = time.perf_counter()
        group.allreduce(whole)
        elapsed_whole = time.perf_counter() - started
        if repeat:   # the first is a warm-up (page faults of fresh buffers)
            bucketed.append(elapsed_buckets)
            single.append(elapsed_whole)
    if group.rank == 0:
        print(json.dumps({"kind": "allreduce", "bytes": int(whole.nbytes), "buckets": len(buckets),
                          "bucketed_s": statistics.median(bucketed), "single_s": statistics.median(single)}))


def measure_step(args):
    import numpy as np
    import tinynet
    from tinynet import distributed as dist
    from tinynet.nn import functional as F
    group = dist.init()
    model = _alexnet_parameters()
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb)
    optimizer = tinynet.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(group.rank)
    images = tinynet.Tensor(rng.standard_normal((args.batch, 3, args.image_size, args.image_size))
                            .astype(np.float32))
    labels = rng.integers(0, 2, args.batch)
    exposed = []
    if ddp.reducer is not None:   # time spent waiting for buckets once backward is done
        finish = ddp.reducer._finish

        def timed_finish():
            started = time.perf_counter()
            finish()
            exposed.append(time.perf_counter() - started)
        ddp.reducer._finish = timed_finish
    step_times = []
    for step in range(args.steps + 1):
        group.barrier()
        started = time.perf_counter()
        if args.no_sync:
            with ddp.no_sync():
                loss = F.cross_entropy(ddp(images), labels)
                optimizer.zero_grad()
                loss.backward()
        else:
            loss = F.cross_entropy(ddp(images), labels)
            optimizer.zero_grad()
            loss.backward()
        ddp.synchronize()
        optimizer.step()
        elapsed = time.perf_counter() - started
        if step:
            step_times.append(elapsed)
    times = dist.all_reduce(np.array(step_times)) / group.world_size   # the ranks' mean per step
    if group.rank == 0:
        print(json.dumps({"kind": "step", "ranks": group.world_size, "batch_per_rank": args.batch,
                          "step_s": float(np.median(times)),
                          "exposed_s": float(np.median(exposed[1:])) if len(exposed) > 1 else 0.0,
                          "buckets": len(ddp.reducer.buckets) if ddp.reducer is not None else 0}))


# ------------------------------------------------------------------ the driver
def _run(mode_args, ranks, threads, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    command = [sys.executable, os.path.abspath(__file__)] + mode_args
    if ranks > 1:
        command = [_mpiexec(), "-n", str(ranks)] + command
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


def drive(args):
    batch, size, steps = (8, 128, 2) if args.quick else (args.global_batch, args.image_size, args.steps)
    common = ["--image-size", str(size), "--steps", str(steps)]
    load_before = os.getloadavg()
    allreduce = _run(["allreduce", "--repeats", str(2 if args.quick else 5)], ranks=2, threads=1)
    one = _run(["step", "--batch", str(batch), "--bucket-mb", "25"] + common, ranks=1, threads=2)
    overlapped = _run(["step", "--batch", str(batch // 2), "--bucket-mb", "25"] + common, ranks=2, threads=1)
    with_thread = _run(["step", "--batch", str(batch // 2), "--bucket-mb", "25"] + common, ranks=2, threads=1,
                       env_extra={"TINYNET_MPI_PROGRESS_THREAD": "1"})
    one_bucket = _run(["step", "--batch", str(batch // 2), "--bucket-mb", "1000"] + common, ranks=2, threads=1)
    compute = _run(["step", "--batch", str(batch // 2), "--no-sync"] + common, ranks=2, threads=1)
    load_after = os.getloadavg()
    t_ar = allreduce["bucketed_s"]
    # With one bucket nothing can overlap: its wait after backward is the whole Allreduce as it
    # runs during training.  The bucketed run's wait is what overlap left exposed.
    hidden = 1 - overlapped["exposed_s"] / one_bucket["exposed_s"] if one_bucket["exposed_s"] > 0 else float("nan")
    hidden_by_step = (one_bucket["step_s"] - overlapped["step_s"]) / one_bucket["exposed_s"]
    hidden_with_thread = 1 - with_thread["exposed_s"] / one_bucket["exposed_s"]
    results = {"allreduce": allreduce, "one_process_2_threads": one, "two_processes_overlap": overlapped,
               "two_processes_overlap_progress_thread": with_thread,
               "hidden_fraction_with_progress_thread": hidden_with_thread,
               "two_processes_one_bucket": one_bucket, "two_processes_compute_only": compute,
               "hidden_fraction": hidden, "hidden_fraction_by_step_time": hidden_by_step, "global_batch": batch, "image_size": size,
               "load_average_before": load_before, "load_average_after": load_after}
    mb = allreduce["bytes"] / 1e6
    print(f"AlexNet (2 classes) gradients: {mb:.0f} MB float32; image {size} px, global batch {batch}; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores)")
    print(f"Allreduce between 2 local ranks: {allreduce['buckets']} buckets of <=25 MB in flight "
          f"{t_ar * 1e3:.0f} ms ({mb / t_ar / 1e3:.2f} GB/s of gradient), one {mb:.0f} MB Allreduce "
          f"{allreduce['single_s'] * 1e3:.0f} ms")
    print(f"{'configuration':48s} {'step s':>7s} {'img/s':>7s} {'waits s':>8s}")
    for name, r, per in (("1 process x 2 threads", one, batch),
                         ("2 processes x 1 thread, 25 MB buckets (overlap)", overlapped, batch),
                         ("  the same with the MPI progress thread", with_thread, batch),
                         ("2 processes x 1 thread, one bucket (no overlap)", one_bucket, batch),
                         ("2 processes x 1 thread, no_sync (compute only)", compute, batch)):
        print(f"{name:48s} {r['step_s']:7.2f} {per / r['step_s']:7.1f} {r['exposed_s']:8.3f}")
    print(f"share of the Allreduce hidden by overlap: {hidden * 100:.0f} % (1 - bucketed wait / one-bucket "
          f"wait after backward); from step times: {hidden_by_step * 100:.0f} % ((one-bucket step - "
          f"bucketed step) / one-bucket wait); with the progress thread: {hidden_with_thread * 100:.0f} %")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="drive", choices=["drive", "allreduce", "step"])
    parser.add_argument("--quick", action="store_true", help="tiny images and batches: checks that it runs")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=227)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="(step) batch per rank")
    parser.add_argument("--bucket-mb", type=float, default=25.0)
    parser.add_argument("--no-sync", action="store_true", help="(step) no communication: compute only")
    parser.add_argument("--repeats", type=int, default=5, help="(allreduce) timed repeats")
    args = parser.parse_args()
    if args.global_batch % 2:
        parser.error(f"--global-batch must be even (split over 2 ranks), got {args.global_batch}")
    {"drive": drive, "allreduce": measure_allreduce, "step": measure_step}[args.mode](args)


if __name__ == "__main__":
    main()
