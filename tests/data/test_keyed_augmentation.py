"""Every random augmentation of a sample is drawn from a generator keyed by (seed, epoch, sample index).

So the crop, flip and PCA colour noise a photo gets do not depend on the number of ranks, the number
of decoding threads, or where a run was interrupted and resumed -- and 2 MPI ranks with augmentation
on train like one process at the same global batch (tests/keyed_augmentation_worker.py).  The photos
are noise JPEGs (tests/keyed_augmentation_worker.write_jpegs): no two windows of one are equal, so a
crop one pixel off, a flip drawn for another sample or another colour offset changes the pixels.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tinynet
from mpi import mpiexec, worker_environment
from tinynet.data import DataLoader, DistributedDataLoader, sample_rng

from keyed_augmentation_worker import training_set, write_jpegs

HERE = Path(__file__).resolve().parents[1]   # tests/: the workers and helpers
WORKER = HERE / "keyed_augmentation_worker.py"
SEED = 3
GLOBAL_BATCH = 6      # 18 training photos: 3 global batches per epoch


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    write_jpegs(root)
    return root


@pytest.fixture(scope="module")
def dataset(photos):
    data = training_set(photos)
    assert len(data) == 18
    return data


def keyed(dataset, epoch, indices):
    """The images the key (SEED, epoch, index) gives, computed one sample at a time without a loader."""
    return np.stack([dataset.get(int(i), sample_rng(SEED, epoch, int(i)))[0] for i in indices])


def loaders(dataset, ranks, workers=0):
    """The training loaders of the ranks of an N-rank run (a plain DataLoader in one process)."""
    if ranks == 1:
        return [DataLoader(dataset, GLOBAL_BATCH, shuffle=True, seed=SEED, num_workers=workers)]
    return [DistributedDataLoader(dataset, GLOBAL_BATCH // ranks, shuffle=True, seed=SEED, num_workers=workers,
                                  num_replicas=ranks, rank=rank) for rank in range(ranks)]


def global_batches(rank_loaders, epochs=None):
    """The global batches the ranks' loaders yield, rank r's samples at positions r, r+N, ..."""
    ranks = len(rank_loaders)
    streams = []
    for loader in rank_loaders:
        if epochs is None:
            streams.append([batch for batch in loader])
        else:
            stream = []
            for epoch in epochs:
                loader.set_epoch(epoch)
                stream += [batch for batch in loader]
            streams.append(stream)
    assert len({len(stream) for stream in streams}) == 1
    batches = []
    for per_rank in zip(*streams):
        images = np.empty((sum(len(b[1]) for b in per_rank),) + per_rank[0][0].shape[1:], np.float32)
        labels = np.empty(len(images), np.int64)
        for rank, (x, y) in enumerate(per_rank):
            images[rank::ranks], labels[rank::ranks] = x, y
        batches.append((images, labels))
    return batches


def test_the_key_changes_the_crop_flip_and_colour_noise(dataset):
    """Guards the equalities below against a key that ignores the epoch or the index."""
    first = keyed(dataset, 0, range(18))
    np.testing.assert_array_equal(keyed(dataset, 0, range(18)), first)
    assert all(not np.array_equal(a, b) for a, b in zip(first, keyed(dataset, 1, range(18))))
    # sample 5 with the keys of samples 0..17: 18 distinct augmentations of one photo
    one_photo = np.stack([dataset.get(5, sample_rng(SEED, 0, i))[0] for i in range(18)])
    assert len({image.tobytes() for image in one_photo}) == 18


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_a_photo_gets_the_augmentation_of_its_key_on_any_number_of_ranks(dataset, ranks):
    for rank, loader in enumerate(loaders(dataset, ranks)):
        for epoch in range(2):
            loader.set_epoch(epoch)
            order = loader.indices(epoch)
            for k, (images, labels) in enumerate(loader):
                indices = order[k * loader.batch_size:(k + 1) * loader.batch_size]
                np.testing.assert_array_equal(images, keyed(dataset, epoch, indices),
                                              err_msg=f"{ranks} ranks, rank {rank}, epoch {epoch}, batch {k}")


@pytest.mark.parametrize("ranks", [2, 3])
def test_n_ranks_see_the_global_batches_of_one_process_pixel_for_pixel(dataset, ranks):
    one = global_batches(loaders(dataset, 1), epochs=range(2))
    sharded = global_batches(loaders(dataset, ranks), epochs=range(2))
    assert len(one) == len(sharded) == 6
    for (x1, y1), (xn, yn) in zip(one, sharded):
        np.testing.assert_array_equal(yn, y1)
        np.testing.assert_array_equal(xn, x1)


@pytest.mark.parametrize("ranks", [1, 2])
def test_one_or_two_decoding_threads_give_the_same_augmentation(dataset, ranks):
    reference = global_batches(loaders(dataset, ranks, workers=0), epochs=range(2))
    for workers in (1, 2):
        threaded = global_batches(loaders(dataset, ranks, workers=workers), epochs=range(2))
        for (x0, y0), (xw, yw) in zip(reference, threaded):
            np.testing.assert_array_equal(yw, y0)
            np.testing.assert_array_equal(xw, x0)


@pytest.mark.parametrize("before, after", [(2, 1), (1, 3), (3, 2)])
def test_an_interruption_and_a_resume_with_another_rank_count_change_no_augmentation(dataset, before, after):
    """Stopped at epoch 1, batch 1 by ``before`` ranks; resumed by ``after`` ranks (and 2 threads) with a
    PyTorch-style loop that calls set_epoch at the start of each epoch, the resumed one included."""
    uninterrupted = global_batches(loaders(dataset, 1), epochs=range(2))
    interrupted = loaders(dataset, before)
    for loader in interrupted:
        for _ in loader:                  # epoch 0
            pass
        iterator = iter(loader)           # epoch 1: one batch, then the run stops
        next(iterator)
    state = interrupted[0].state_dict()
    assert state == {"seed": SEED, "epoch": 1, "batch": 1}
    resumed = loaders(dataset, after, workers=2)
    for loader in resumed:
        loader.load_state_dict(state)
    rest = global_batches(resumed, epochs=range(state["epoch"], 2))
    assert len(rest) == 2
    for (x1, y1), (xr, yr) in zip(uninterrupted[4:], rest):
        np.testing.assert_array_equal(yr, y1)
        np.testing.assert_array_equal(xr, x1)


def test_set_epoch_keeps_a_restored_position_and_restarts_any_other_epoch(dataset):
    loader = loaders(dataset, 1)[0]
    loader.load_state_dict({"seed": SEED, "epoch": 1, "batch": 2})
    loader.set_epoch(1)
    assert loader.state_dict() == {"seed": SEED, "epoch": 1, "batch": 2}
    assert len(list(loader)) == 1
    loader.load_state_dict({"seed": SEED, "epoch": 1, "batch": 2})
    loader.set_epoch(0)
    assert loader.state_dict() == {"seed": SEED, "epoch": 0, "batch": 0}
    assert len(list(loader)) == 3
    loader.set_epoch(0)                   # an epoch already run starts again at its first batch
    assert len(list(loader)) == 3


# ---------------------------------------------------------------------- under mpiexec
def _train(photos, out, ranks, *options, checkpoint="last.npz"):
    env = worker_environment()
    command = ([mpiexec(), "-n", str(ranks)] if ranks > 1 else []) + [
        sys.executable, str(WORKER), str(photos), str(out), "--batch", str(GLOBAL_BATCH)] + list(options)
    os.makedirs(out, exist_ok=True)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return tinynet.load(os.path.join(out, checkpoint))


def _assert_same_weights(state, reference, what):
    """Equal up to float32 summation order: largest difference <= 1e-5 of the tensor's largest value."""
    assert state["model"].keys() == reference["model"].keys()
    for name, expected in reference["model"].items():
        expected, got = np.asarray(expected, np.float64), np.asarray(state["model"][name], np.float64)
        relative = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
        assert relative <= 1e-5, f"{what}: {name} differs by {relative:.3g} (relative to its largest value)"


def test_two_ranks_with_augmentation_train_like_one_process_also_across_a_resume(photos, tmp_path):
    """The headline: 2 ranks with batch 3 against 1 process with batch 6, AlexNet's augmentation on, no
    dropout, 2 epochs of 3 steps; then the state the 2 ranks saved after 4 steps (mid-epoch, what a
    stop there leaves) resumed by one process with 2 decoding threads, and the state one process
    saved after 2 steps resumed by 2 ranks."""
    started = time.monotonic()
    one = _train(photos, tmp_path / "one", 1, "--save-after", "2")
    two = _train(photos, tmp_path / "two", 2, "--save-after", "4")
    assert int(one["steps"]) == int(two["steps"]) == 6 and int(two["world_size"]) == 2
    _assert_same_weights(two, one, "2 ranks vs 1 process")

    stopped = tinynet.load(tmp_path / "two" / "step4.npz")
    assert int(stopped["steps"]) == 4 and stopped["loader"] == {"seed": 0, "epoch": 1, "batch": 1}
    resumed = _train(photos, tmp_path / "resumed", 1, "--resume", str(tmp_path / "two" / "step4.npz"),
                     "--workers", "2")
    assert int(resumed["steps"]) == 6 and int(resumed["world_size"]) == 1
    _assert_same_weights(resumed, one, "2 ranks stopped after 4 steps, resumed by 1 process")

    assert tinynet.load(tmp_path / "one" / "step2.npz")["loader"] == {"seed": 0, "epoch": 0, "batch": 2}
    resumed = _train(photos, tmp_path / "resumed_by_two", 2, "--resume", str(tmp_path / "one" / "step2.npz"))
    assert int(resumed["steps"]) == 6 and int(resumed["world_size"]) == 2
    _assert_same_weights(resumed, one, "1 process stopped after 2 steps, resumed by 2 ranks")
    assert time.monotonic() - started < 120
