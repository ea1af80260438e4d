"""DistributedSampler and DistributedDataLoader: the arguments, sizes and state that the sharding tests
of tests/distributed/test_distributed.py (every sample once, PyTorch's shards, N ranks = one big batch) take for
granted."""
import numpy as np
import pytest

from tinynet.data import ArrayDataset, DataLoader, DistributedDataLoader, DistributedSampler


def _dataset(n):
    return ArrayDataset(np.arange(n, dtype=np.float32).reshape(n, 1), np.arange(n))


def test_the_missing_one_of_num_replicas_and_rank_comes_from_the_process_group():
    # a plain process is rank 0 of 1
    assert (DistributedSampler(10).num_replicas, DistributedSampler(10).rank) == (1, 0)
    only_replicas = DistributedSampler(10, num_replicas=4)
    assert (only_replicas.num_replicas, only_replicas.rank) == (4, 0)
    only_rank = DistributedSampler(10, rank=0)
    assert (only_rank.num_replicas, only_rank.rank) == (1, 0)


@pytest.mark.parametrize("arguments, message", [
    (dict(dataset=10, num_replicas=3, rank=-1), r"rank must be in 0..2 for num_replicas=3, got -1"),
    (dict(dataset=10, num_replicas=3, rank=3), r"rank must be in 0..2 for num_replicas=3, got 3"),
    (dict(dataset=10, num_replicas=-2, rank=0), "num_replicas must be >= 1, got -2"),
    (dict(dataset=-1, num_replicas=1, rank=0), "dataset length must be >= 0, got -1"),
    (dict(dataset=10, num_replicas=1, rank=0, seed=-1), "seed must be >= 0, got -1"),
])
def test_bad_arguments_are_refused_with_the_value(arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        DistributedSampler(**arguments)


def test_the_defaults_are_pytorchs():
    pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    from torch.utils.data.distributed import DistributedSampler as TorchSampler
    ours, theirs = DistributedSampler(10, 2, 1), TorchSampler(range(10), num_replicas=2, rank=1)
    assert (ours.shuffle, ours.seed, ours.drop_last, ours.epoch) == (theirs.shuffle, theirs.seed, theirs.drop_last,
                                                                     theirs.epoch)
    assert ours.even


def test_the_edges_of_the_valid_arguments_are_accepted():
    assert DistributedSampler(0, 1, 0).indices().tolist() == []
    assert DistributedSampler(np.int64(5), 1, 0, seed=0).dataset_length == 5
    assert DistributedSampler(_dataset(7), 3, 2).dataset_length == 7
    assert DistributedSampler(10, 3, 0).rank == 0 and DistributedSampler(10, 3, 2).rank == 2
    # one rank needs no explicit seed: nobody else must draw the same order
    loader = DistributedDataLoader(_dataset(6), 2, shuffle=True, num_replicas=1, rank=0)
    assert sorted(loader.indices().tolist()) == list(range(6))


@pytest.mark.parametrize("n, replicas, rank, drop_last, even, samples, total, batches", [
    (10, 3, 0, False, True, 4, 12, 2),    # padded to 12: 4 per rank, batch 3 -> 2 batches
    (10, 3, 2, True, True, 3, 9, 1),      # cut to 9: 3 per rank, drop the short batch -> 1
    (10, 3, 0, False, False, 4, 10, 2),   # evaluation shards: 0, 3, 6, 9
    (10, 3, 1, False, False, 3, 10, 1),   # 1, 4, 7
    (10, 3, 2, True, False, 3, 10, 1),
    (2, 4, 3, False, True, 1, 4, 1),      # more ranks than samples: the order repeats
])
def test_sizes_per_rank_and_per_epoch(n, replicas, rank, drop_last, even, samples, total, batches):
    sampler = DistributedSampler(n, replicas, rank, shuffle=False, drop_last=drop_last, even=even)
    assert sampler.num_samples == len(sampler) == samples == len(sampler.indices())
    assert sampler.total_size == total
    loader = DistributedDataLoader(_dataset(n), 3, drop_last=drop_last, seed=0, num_replicas=replicas, rank=rank,
                                   even=even)
    assert len(loader) == batches == len(list(loader))


def test_more_ranks_than_samples_repeat_the_order_to_fill_every_rank():
    sampler = DistributedSampler(3, 7, 0, shuffle=True, seed=4)
    order = sampler.global_order()
    assert order.tolist() == np.tile(DataLoader(_dataset(3), shuffle=True, seed=4).indices(0), 3)[:7].tolist()
    assert [DistributedSampler(3, 7, r, shuffle=True, seed=4).indices().tolist() for r in range(7)] == \
        [[int(i)] for i in order]


def test_set_epoch_and_iteration_follow_the_loaders_order_of_that_epoch():
    sampler = DistributedSampler(12, 2, 1, shuffle=True, seed=5)
    one_process = DataLoader(_dataset(12), shuffle=True, seed=5)
    assert list(sampler) == one_process.indices(0)[1::2].tolist()
    sampler.set_epoch(3)
    assert sampler.epoch == 3
    assert list(sampler) == one_process.indices(3)[1::2].tolist() == sampler.indices(3).tolist()
    assert sampler.indices(0).tolist() == one_process.indices(0)[1::2].tolist()   # an explicit epoch wins


def test_the_loader_resumes_with_the_saved_seed_whatever_seed_it_was_built_with():
    saved = DistributedDataLoader(_dataset(12), 2, shuffle=True, seed=8, num_replicas=2, rank=1)
    iterator = iter(saved)
    next(iterator)
    state = saved.state_dict()
    rest = [y.tolist() for _, y in iterator]
    resumed = DistributedDataLoader(_dataset(12), 2, shuffle=True, seed=1, num_replicas=2, rank=1)
    resumed.load_state_dict(state)
    assert resumed.seed == resumed.sampler.seed == 8
    assert [y.tolist() for _, y in resumed] == rest


def test_repr_names_the_shard():
    assert repr(DistributedSampler(10, 2, 1, seed=3)) == (
        "DistributedSampler(n=10, rank=1/2, shuffle=True, drop_last=False, even=True, seed=3)")
    loader = DistributedDataLoader(_dataset(10), 4, shuffle=True, seed=3, num_replicas=2, rank=1)
    assert repr(loader) == "DistributedDataLoader(n=10, rank=1/2, batch_size=4, shuffle=True, seed=3, epoch=0)"


def test_the_loaders_defaults_are_the_plain_loaders_and_its_epoch_drives_the_sampler():
    plain, sharded = DataLoader(_dataset(6)), DistributedDataLoader(_dataset(6), seed=0, num_replicas=1, rank=0)
    for key in ("batch_size", "shuffle", "drop_last"):
        assert getattr(sharded, key) == getattr(plain, key), key
    assert sharded.sampler.even and not sharded.sampler.drop_last
    loader = DistributedDataLoader(_dataset(12), 2, shuffle=True, seed=6, num_replicas=2, rank=1)
    assert loader.indices(3).tolist() == loader.sampler.indices(3).tolist()
    loader.set_epoch(2)
    assert loader.indices().tolist() == loader.sampler.indices(2).tolist() != loader.sampler.indices(0).tolist()
