"""examples/alexnet_catdog.py --distributed under ``mpiexec -n 2``, on 36 of the shared photos:
rank 0 alone prints and writes, and the run resumes in one process (another rank count)."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tinynet

ROOT = Path(__file__).resolve().parents[1]
CATDOG = ROOT.parent / "shared" / "data" / "catdog" / "train"
SCRIPT = ROOT / "examples" / "alexnet_catdog.py"
# 36 photos: 22 training (3 global batches of 8, 4 per rank), 8 validation, 6 test
QUICK = ["--data", str(CATDOG), "--max-images", "36", "--image-size", "67", "--batch-size", "8", "--workers", "1",
         "--val-fraction", "0.25", "--test-fraction", "0.15", "--no-ten-crop"]


def _run(arguments, ranks):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_"))}
    env.update({name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")})
    command = [sys.executable, str(SCRIPT)] + arguments
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                                 os.environ.get("PATH", "")]))
        assert mpiexec, "mpiexec not found: install the test extra (it brings the mpich wheel)"
        command = [mpiexec, "-n", str(ranks)] + command
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.mark.skipif(not CATDOG.is_dir(), reason=f"real Dogs-vs-Cats sample not found at {CATDOG}")
def test_two_ranks_train_rank_0_writes_and_one_process_resumes(tmp_path):
    out = tmp_path / "run"
    result = _run(["--distributed", "--epochs", "1", "--out", str(out)] + QUICK, ranks=2)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.count("data parallel: 2 processes") == 1
    assert result.stdout.count("epoch 1: train loss") == 1          # printed by rank 0 alone
    assert result.stdout.count("HEADLINE test") == 1
    assert sorted(p.name for p in out.iterdir()) == ["best.npz", "curves.png", "last.npz", "metrics.csv",
                                                     "results.json"]   # no temporary or per-rank files
    saved = tinynet.load(out / "last.npz")
    assert saved["loader"] == {"seed": 0, "epoch": 1, "batch": 0}
    results = json.loads((out / "results.json").read_text())
    # each rank scored its shard; the counts were added up: all 8 validation and 6 test photos
    assert results["validation"]["centre_crop"]["images"] == 8 and results["test"]["centre_crop"]["images"] == 6

    resumed = _run(["--resume", "--epochs", "2", "--out", str(out), "--no-ten-crop"], ranks=1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "after epoch 1" in resumed.stdout
    with open(out / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["epoch"] for row in rows] == ["1", "2"]
