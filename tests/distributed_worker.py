"""The program that tests/distributed/test_distributed_mpi.py starts under ``mpiexec -n 2`` (and once without it).

    python tests/distributed_worker.py SCENARIO OUT_DIR [options]

Scenarios:
  train    a tiny CNN for a few SGD steps on synthetic data; each rank writes its final
           parameters and the reducer's trace to OUT_DIR/rank<r>.npz (test instrumentation),
           rank 0 alone writes OUT_DIR/checkpoint.npz through save_checkpoint and prints.
  raise    like train, but rank 1 raises at step 2.
  kill     like train, but rank 1 kills itself with SIGKILL at step 2.
  hang     like train, but rank 1 stops answering (sleeps) at step 2.
  slow     like train, but rank 1 pauses for --pause seconds at step 2, then goes on.

Every rank also stores how long each of its steps took (step_seconds), and a rank that aborts
first prints how long it had been in its current step ("rank 0 waited 4.01 s in step 2"): the
tests check the timeout against those, not against the job's total time.
  writes   rank-0-only output: print0, main_process_only, save_checkpoint, sharded counts.
"""
import argparse
import os
import signal
import sys
import time

if "--gpu" in sys.argv:   # the GPU kernels run under numba's CUDA simulator (see tests/conftest.py)
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

# started by the tests with this checkout first on PYTHONPATH (tests/mpi.py); fake_cupy is a sibling

import numpy as np  # noqa: E402

import tinynet  # noqa: E402
from tinynet import distributed as dist  # noqa: E402
from tinynet import nn  # noqa: E402
from tinynet.data import ArrayDataset  # noqa: E402
from tinynet.data.distributed_sampler import DistributedDataLoader  # noqa: E402
from tinynet.nn import functional as F  # noqa: E402

SAMPLES = 64


def make_dataset():
    rng = np.random.default_rng(1234)
    images = rng.standard_normal((SAMPLES, 3, 8, 8)).astype(np.float32)
    labels = (images[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64)

    def random_flip(image, rng):   # augmentation keyed by (seed, epoch, index): the same on any rank
        return image[:, :, ::-1].copy() if rng.random() < 0.5 else image

    return ArrayDataset(images, labels, transform=random_flip)


def make_model(kind):
    tinynet.manual_seed(7 + dist.rank())   # different on each rank: the broadcast must fix that
    if kind == "mlp":   # no convolution or pooling kernels: quick under numba's CUDA simulator
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                             nn.Linear(8, 2))
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 2))


def install_fake_gpu(kind):
    """Put the model on the NumPy-backed CuPy stand-in; for 'nccl' also a stand-in NCCL."""
    import fake_cupy
    from tinynet import backend
    fake_cupy.install_simulator_bridge()      # as tests/conftest.py does for the gpu_xp fixture
    backend.set_gpu_module(fake_cupy.fake_cupy)
    if kind == "staged":
        return {"gpu_allreduce": "host"}
    from fake_nccl import FakeCuda, FakeNccl
    return {"gpu_allreduce": "nccl", "nccl": FakeNccl(dist.get_group()), "cuda": FakeCuda()}


def train(args):
    group = dist.init()
    device = "cpu"
    ddp_options = {}
    if args.gpu:
        ddp_options = install_fake_gpu(args.gpu)
        device = "gpu"
    model = make_model(args.model).to(device)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb, **ddp_options)
    optimizer = tinynet.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = DistributedDataLoader(make_dataset(), batch_size=args.batch, shuffle=True, seed=0,
                                   device=device)
    step = 0
    traces = []
    step_seconds = []
    step_started = time.monotonic()
    abort = group.abort

    def abort_saying_how_long(message, code=1):
        sys.stderr.write(f"rank {group.rank} waited {time.monotonic() - step_started:.3f} s in step {step}\n")
        abort(message, code)
    group.abort = abort_saying_how_long    # what the timeout calls (the excepthook too)

    for epoch in range(args.epochs):
        for images, labels in loader:
            step_started = time.monotonic()
            if args.scenario != "train" and group.rank == 1 and step == 2:
                if args.scenario == "raise":
                    raise ValueError("planted failure on rank 1 at step 2")
                if args.scenario == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if args.scenario == "hang":
                    time.sleep(3600)
                if args.scenario == "slow":
                    time.sleep(args.pause)
            loss = F.cross_entropy(ddp(tinynet.Tensor(images)), labels)
            optimizer.zero_grad()
            loss.backward()
            ddp.synchronize()   # a no-op here: backward already finished every bucket
            optimizer.step()
            if ddp.reducer is not None:
                traces.append(np.array([(0 if event == "ready" else 1 if event == "launch" else 2, bucket)
                                        for event, bucket in ddp.reducer.trace], dtype=np.int64))
            step_seconds.append(time.monotonic() - step_started)
            step += 1
    params = {name.replace(".", "_"): p.numpy() for name, p in model.named_parameters()}
    np.savez(os.path.join(args.out, f"rank{group.rank}.npz"), steps=step, world_size=group.world_size,
             buckets=len(ddp.reducer.buckets) if ddp.reducer is not None else 0,
             trace=traces[-1] if traces else np.zeros((0, 2), np.int64), step_seconds=step_seconds, **params)
    dist.save_checkpoint({"model": model.state_dict(), "steps": step}, os.path.join(args.out, "checkpoint.npz"))
    dist.print0(f"finished {step} steps on {group.world_size} rank(s)")


def writes(args):
    group = dist.init()
    dist.print0("progress line from rank 0")

    @dist.main_process_only
    def write_metrics(path):
        with open(path, "a") as f:
            f.write(f"written by rank {group.rank}\n")
        return "wrote"

    result = write_metrics(os.path.join(args.out, "metrics.csv"))
    dist.save_checkpoint({"rank_that_wrote": group.rank}, os.path.join(args.out, "last.npz"))
    # every rank can read it right after the barrier inside save_checkpoint
    assert tinynet.load(os.path.join(args.out, "last.npz"))["rank_that_wrote"] == 0
    # sharded evaluation: each of 10 samples counted once, whatever the rank count
    from tinynet.data.distributed_sampler import DistributedSampler
    shard = DistributedSampler(10, shuffle=False, even=False).indices()
    totals = dist.all_reduce([len(shard), int(np.sum(shard))])
    # one write per line: print() may send the text and its newline separately, which interleave
    sys.stdout.write(f"rank {group.rank}: main_process_only returned {result}; totals {totals.tolist()}\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["train", "raise", "kill", "hang", "slow", "writes"])
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--bucket-mb", type=float, default=0.0001)
    parser.add_argument("--gpu", choices=["staged", "nccl"], default=None)
    parser.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds rank 1 pauses at step 2 (slow)")
    args = parser.parse_args()
    if args.scenario == "writes":
        writes(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
