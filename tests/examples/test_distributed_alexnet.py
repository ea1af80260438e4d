"""examples/alexnet_catdog.py --distributed under ``mpiexec -n 2``, on 36 noise JPEGs the test writes:
two ranks with batch 4 each take the steps of one process with batch 8, rank 0 alone prints and
writes, evaluation is sharded and counted once, and one process resumes the 2-rank run.

The network is LeNet-5 on 3-channel 32 px crops (``--model lenet5``): the script's data-parallel
path is the same for every network, and LeNet keeps each run to seconds where AlexNet's 57 M
weights take tens of seconds and write 700 MB of checkpoints.  Augmentation is the script's own
(random crops, flips and PCA colour noise, keyed by (seed, epoch, photo), so the same on any number
of ranks); LeNet has no dropout.
"""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tinynet
from mpi import mpiexec, worker_environment

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "alexnet_catdog.py"
# 36 photos: 24 training (3 global batches of 8, 4 per rank), 8 validation, 4 test
QUICK = ["--model", "lenet5", "--model-option", "in_channels=3", "--image-size", "32", "--batch-size", "8",
         "--workers", "1", "--val-fraction", "0.25", "--test-fraction", "0.12", "--no-ten-crop"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Kaggle's flat layout (cat.N.jpg, dog.N.jpg): noise, so a crop, flip or colour offset drawn
    differently changes the pixels, with a class-dependent brightness to learn from."""
    root = tmp_path_factory.mktemp("catdog")
    rng = np.random.default_rng(0)
    for n in range(18):
        for label, shift in (("cat", 40), ("dog", -40)):
            height, width = (int(v) for v in rng.integers(40, 56, size=2))
            pixels = np.clip(rng.integers(0, 256, size=(height, width, 3)) + shift, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"{label}.{n}.jpg", quality=90)
    return root


def _run(arguments, ranks):
    env = worker_environment()
    command = [sys.executable, str(SCRIPT)] + arguments
    if ranks > 1:
        command = [mpiexec(), "-n", str(ranks)] + command
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _weights(out):
    return {name: np.asarray(value) for name, value in tinynet.load(out / "last.npz")["model"].items()}


def _assert_same_training(out, reference):
    """The same weights up to float32 summation order (the ranks sum their halves of each batch's
    gradient separately), and the same training curve."""
    ours, theirs = _weights(out), _weights(reference)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)
    rows = [list(csv.DictReader(open(folder / "metrics.csv"))) for folder in (out, reference)]
    assert [r["epoch"] for r in rows[0]] == [r["epoch"] for r in rows[1]]
    for ours_row, their_row in zip(*rows):
        assert float(ours_row["train_loss"]) == pytest.approx(float(their_row["train_loss"]), rel=1e-5)


def test_two_ranks_train_like_one_process_rank_0_writes_and_one_process_resumes(photos, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    result = _run(["--distributed", "--data", str(photos), "--epochs", "1", "--out", str(two)] + QUICK, ranks=2)
    _run(["--data", str(photos), "--epochs", "1", "--out", str(one)] + QUICK, ranks=1)
    assert result.stdout.count("data parallel: 2 processes") == 1
    assert result.stdout.count("epoch 1: train loss") == 1          # printed by rank 0 alone
    assert result.stdout.count("HEADLINE test") == 1
    assert sorted(p.name for p in two.iterdir()) == ["best.npz", "curves.png", "last.npz", "metrics.csv",
                                                     "results.json"]   # no temporary or per-rank files
    saved = tinynet.load(two / "last.npz")
    assert saved["loader"] == {"seed": 0, "epoch": 1, "batch": 0}
    results = json.loads((two / "results.json").read_text())
    # each rank scored its shard; the counts were added up: all 8 validation and 4 test photos
    assert results["validation"]["centre_crop"]["images"] == 8 and results["test"]["centre_crop"]["images"] == 4
    one_results = json.loads((one / "results.json").read_text())
    for split in ("validation", "test"):
        scores, expected = results[split]["centre_crop"], one_results[split]["centre_crop"]
        assert scores["correct"] == expected["correct"] and scores["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    _assert_same_training(two, one)

    # one process resumes the 2-rank run for a second epoch, as the one-process run does
    resumed = _run(["--resume", "--epochs", "2", "--out", str(two), "--no-ten-crop"], ranks=1)
    assert "resumed from" in resumed.stdout and "after epoch 1" in resumed.stdout
    _run(["--resume", "--epochs", "2", "--out", str(one), "--no-ten-crop"], ranks=1)
    _assert_same_training(two, one)
    assert [row["epoch"] for row in csv.DictReader(open(two / "metrics.csv"))] == ["1", "2"]
