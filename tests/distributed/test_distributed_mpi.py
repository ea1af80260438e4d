"""tinynet.distributed under ``mpiexec -n 2`` (MPICH from the ``mpich`` wheel, mpi4py):
equivalence with one big batch, the GPU paths on the CuPy and NCCL stand-ins, rank-0-only
writes, and ranks that raise, get killed, hang (the others wait the timeout, no less) or are
slow but answer in time (no abort).

Each test starts tests/distributed_worker.py with mpiexec; the test extra installs both
(``pip install -e ".[test]"``).
"""
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mpi import mpiexec, worker_environment

HERE = Path(__file__).resolve().parents[1]   # tests/: the workers and helpers
WORKER = HERE / "distributed_worker.py"


def _run(args, ranks=2, timeout=120, env_extra=None):
    env = worker_environment(env_extra)
    command = ([mpiexec(), "-n", str(ranks)] if ranks else []) + [sys.executable, str(WORKER)] + list(args)
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def _parameters(path):
    data = np.load(path)
    return {k: data[k] for k in data.files if k[0].isdigit()}


_reference = {}


def _one_process_batch_16(model, tmp_path_factory):
    if model not in _reference:
        out = tmp_path_factory.mktemp(f"single-{model}")
        result, _ = _run(["train", str(out), "--batch", "16", "--model", model], ranks=0)
        assert result.returncode == 0, result.stderr[-3000:]
        _reference[model] = _parameters(out / "rank0.npz")
    return _reference[model]


# the GPU paths use a small MLP: convolution kernels are slow under numba's CUDA simulator
@pytest.mark.parametrize("gpu, model", [(None, "cnn"), ("staged", "mlp"), ("nccl", "mlp")])
def test_two_ranks_with_batch_8_train_exactly_like_one_process_with_batch_16(gpu, model, tmp_path,
                                                                             tmp_path_factory):
    expected_parameters = _one_process_batch_16(model, tmp_path_factory)
    args = ["train", str(tmp_path), "--batch", "8", "--model", model, "--bucket-mb", "0.0001"]
    args += ["--gpu", gpu] if gpu else []
    # the host-staged run also polls its MPI requests from the progress thread (off by default)
    result, seconds = _run(args, env_extra={"TINYNET_MPI_PROGRESS_THREAD": "1" if gpu == "staged" else "0"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    assert [int(r["world_size"]) for r in ranks] == [2, 2] and [int(r["steps"]) for r in ranks] == [8, 8]
    assert int(ranks[0]["buckets"]) >= 3           # the tiny bucket cap gives several buckets
    rank0, rank1 = _parameters(tmp_path / "rank0.npz"), _parameters(tmp_path / "rank1.npz")
    assert rank0.keys() == expected_parameters.keys()
    for name, expected in expected_parameters.items():
        np.testing.assert_array_equal(rank0[name], rank1[name])     # the ranks never drift apart
        # the same gradients summed in another order: float32 rounding, nothing more
        np.testing.assert_allclose(rank0[name], expected, rtol=2e-5, atol=2e-6, err_msg=name)
    # rank 0 alone printed and wrote the checkpoint
    assert result.stdout.count("finished 8 steps on 2 rank(s)") == 1
    assert (tmp_path / "checkpoint.npz").exists()
    # the last step (event codes: 0 ready, 1 launch, 2 done): buckets launched in order, the first
    # one before the last bucket was ready (overlap with backward), all waited for at the end
    trace = ranks[0]["trace"].tolist()
    buckets = int(ranks[0]["buckets"])
    assert trace.index([1, 0]) < trace.index([0, buckets - 1])
    assert [b for e, b in trace if e == 1] == list(range(buckets))
    assert [b for e, b in trace if e == 2] == list(range(buckets))
    assert seconds < 60


def test_only_rank_0_writes_and_sharded_counts_add_up(tmp_path):
    result, _ = _run(["writes", str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "metrics.csv").read_text() == "written by rank 0\n"
    assert result.stdout.count("progress line from rank 0") == 1
    # the two ranks share mpiexec's stdout, so their lines may arrive interleaved: find, don't split
    lines = sorted(re.findall(r"rank \d: main_process_only returned \w+; totals \[[^\]]*\]", result.stdout))
    assert lines == ["rank 0: main_process_only returned wrote; totals [10, 45]",
                     "rank 1: main_process_only returned None; totals [10, 45]"]


def test_a_rank_that_raises_stops_every_rank_at_once(tmp_path):
    result, seconds = _run(["raise", str(tmp_path)], timeout=120)
    assert result.returncode != 0
    assert "planted failure on rank 1" in result.stderr
    assert "rank 1 of 2 raised ValueError" in result.stderr and "aborting all ranks" in result.stderr
    assert "finished" not in result.stdout
    assert seconds < 60


def test_a_killed_rank_stops_every_rank(tmp_path):
    result, seconds = _run(["kill", str(tmp_path)], timeout=120)
    assert result.returncode != 0
    assert "finished" not in result.stdout
    assert "signal 9" in result.stdout + result.stderr or "Killed" in result.stdout + result.stderr
    assert seconds < 60


HANG_TIMEOUT = 3.0


def test_a_rank_that_hangs_makes_the_others_abort_after_the_timeout(tmp_path):
    # rank 1 sleeps from step 2 on; rank 0 must wait the whole timeout for step 2's Allreduce, no
    # less (a deadline computed in other units aborts healthy jobs) and not much more
    result, seconds = _run(["hang", str(tmp_path)], timeout=120,
                           env_extra={"TINYNET_DISTRIBUTED_TIMEOUT": f"{HANG_TIMEOUT:g}"})
    assert result.returncode != 0
    assert re.search(r"rank 0 of 2: Allreduce of gradient bucket \d+ \([^)]*step 2\) did not complete "
                     r"within 3 s", result.stderr), result.stderr[-3000:]
    waited = re.search(r"rank 0 waited ([\d.]+) s in step (\d+)", result.stderr)
    assert waited, result.stderr[-3000:]
    assert waited.group(2) == "2"
    assert HANG_TIMEOUT <= float(waited.group(1)) <= HANG_TIMEOUT + 2.0, waited.group(0)
    assert "finished" not in result.stdout
    assert seconds < 60


def test_a_slow_rank_that_answers_within_the_timeout_does_not_abort_the_job(tmp_path):
    # rank 1 pauses 1.5 s at step 2, well inside the 5 s timeout: rank 0 waits for it, and the job
    # finishes with the same parameters on both ranks
    result, _ = _run(["slow", str(tmp_path), "--pause", "1.5"], timeout=120,
                     env_extra={"TINYNET_DISTRIBUTED_TIMEOUT": "5"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.count("finished 8 steps on 2 rank(s)") == 1
    rank0, rank1 = (np.load(tmp_path / f"rank{r}.npz") for r in range(2))
    assert int(rank0["steps"]) == int(rank1["steps"]) == 8
    assert rank0["step_seconds"][2] >= 1.2          # rank 0 did wait for its slow peer
    for name, values in _parameters(tmp_path / "rank0.npz").items():
        np.testing.assert_array_equal(values, _parameters(tmp_path / "rank1.npz")[name])
