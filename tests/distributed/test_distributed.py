"""tinynet.distributed without mpiexec: the single-process fallback, the sampler's sharding,
the bucket/overlap bookkeeping of the gradient reducer (with a pretend second rank), the
gradient-accumulation hook, and the GPU helpers on the CuPy stand-in.

The runs under ``mpiexec -n 2`` are in tests/distributed/test_distributed_mpi.py.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinynet
from tinynet import distributed as dist
from tinynet import nn
from tinynet.data import ArrayDataset, DataLoader
from tinynet.data.distributed_sampler import DistributedDataLoader, DistributedSampler
from tinynet.distributed.ddp import DistributedDataParallel, GradientReducer, assign_buckets
from tinynet.distributed.runtime import ProcessGroup, launched_by_mpi
from tinynet.nn import functional as F

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- single-process fallback
def test_a_plain_process_is_rank_0_of_1_and_never_imports_mpi():
    code = ("import sys, tinynet.distributed as d\n"
            "g = d.init()\n"
            "print(type(g).__name__, d.rank(), d.world_size(), d.local_rank(), d.is_main_process(),\n"
            "      d.all_reduce([3, 4]).tolist(), 'mpi4py' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
                        "MPI_LOCALRANKID")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SingleProcessGroup", "0", "1", "0", "True", "[3,", "4]", "False"]


def test_launcher_detection_reads_the_launchers_variables():
    assert launched_by_mpi({"PMI_RANK": "0", "PMI_SIZE": "2"})           # MPICH's hydra
    assert launched_by_mpi({"OMPI_COMM_WORLD_SIZE": "4"})                 # Open MPI
    assert not launched_by_mpi({"PATH": "/usr/bin"})


def test_bad_backend_and_timeout_are_rejected(monkeypatch):
    monkeypatch.setattr(dist, "_group", None)
    with pytest.raises(ValueError, match="'auto', 'mpi' or 'single'"):
        dist.init(backend="nccl")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        dist.init(backend="single", timeout=0)
    monkeypatch.setenv("TINYNET_DISTRIBUTED_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TINYNET_DISTRIBUTED_TIMEOUT must be a number"):
        dist.init(backend="single")


def _tiny_model(seed=0):
    tinynet.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


def test_wrapper_at_world_size_1_trains_exactly_like_the_bare_model():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    results = []
    for wrap in (False, True):
        model = _tiny_model()
        runner = DistributedDataParallel(model, group=dist.SingleProcessGroup()) if wrap else model
        optimizer = tinynet.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            loss = F.cross_entropy(runner(tinynet.Tensor(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results.append([p.numpy().copy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_rank_0_helpers_in_one_process(tmp_path, capsys):
    @dist.main_process_only
    def write(path):
        Path(path).write_text("metrics")
        return "written"

    assert write(tmp_path / "m.csv") == "written"
    dist.print0("hello from rank 0")
    dist.save_checkpoint({"epoch": 3}, tmp_path / "last.npz")
    assert tinynet.load(tmp_path / "last.npz")["epoch"] == 3
    assert capsys.readouterr().out == "hello from rank 0\n"


# ---------------------------------------------------------------------- the sampler
def _torch_style_shards(order, replicas, drop_last):
    """PyTorch's DistributedSampler.__iter__, written out, applied to a given order."""
    n = len(order)
    if drop_last and n % replicas:
        per_rank = int(np.ceil((n - replicas) / replicas))
    else:
        per_rank = int(np.ceil(n / replicas))
    total = per_rank * replicas
    order = list(order)
    if not drop_last:
        padding = total - n
        if padding <= n:
            order += order[:padding]
        else:
            order += (order * int(np.ceil(padding / n)))[:padding]
    else:
        order = order[:total]
    return [order[r:total:replicas] for r in range(replicas)]


@settings(max_examples=150)
@given(n=st.integers(1, 70), replicas=st.integers(1, 9), shuffle=st.booleans(), drop_last=st.booleans(),
       seed=st.integers(0, 2 ** 32), epoch=st.integers(0, 5))
def test_every_sample_once_per_epoch_with_the_padding_accounted(n, replicas, shuffle, drop_last, seed, epoch):
    shards = [DistributedSampler(n, replicas, r, shuffle=shuffle, seed=seed, drop_last=drop_last).indices(epoch)
              for r in range(replicas)]
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1, "every rank must get the same number of samples (else Allreduce would hang)"
    seen = np.concatenate(shards)
    counts = np.bincount(seen, minlength=n)
    order = DataLoader(ArrayDataset(np.zeros((n, 1)), np.zeros(n)), shuffle=shuffle, seed=seed).indices(epoch)
    if drop_last:
        kept = (n // replicas) * replicas
        assert len(seen) == kept
        assert set(seen.tolist()) == set(order[:kept].tolist())   # the tail of this epoch's order is cut
        assert counts.max() <= 1
    else:
        padding = -n % replicas
        assert len(seen) == n + padding
        assert counts.min() >= 1                                   # nobody is left out
        extra = np.bincount(np.tile(order, padding // n + 1)[:padding], minlength=n)
        np.testing.assert_array_equal(counts, 1 + extra)           # the padding repeats the order's head
    # PyTorch's rule, applied to tinynet's order
    for mine, theirs in zip(shards, _torch_style_shards(order.tolist(), replicas, drop_last)):
        assert mine.tolist() == theirs


@settings(max_examples=40)
@given(n=st.integers(0, 40), replicas=st.integers(1, 6), drop_last=st.booleans())
def test_unshuffled_shards_match_pytorchs_distributed_sampler(n, replicas, drop_last):
    torch = pytest.importorskip("torch")
    from torch.utils.data.distributed import DistributedSampler as TorchSampler
    for rank in range(replicas):
        theirs = list(TorchSampler(range(n), num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last))
        mine = DistributedSampler(n, replicas, rank, shuffle=False, drop_last=drop_last).indices(0).tolist()
        assert mine == theirs
    assert torch is not None


@settings(max_examples=60)
@given(n=st.integers(1, 60), replicas=st.integers(1, 5), per_rank=st.integers(1, 6), seed=st.integers(0, 999))
def test_n_ranks_with_batch_b_see_the_batches_of_one_process_with_batch_n_times_b(n, replicas, per_rank, seed):
    dataset = ArrayDataset(np.zeros((n, 1)), np.zeros(n))
    loaders = [DistributedDataLoader(dataset, per_rank, shuffle=True, seed=seed, num_replicas=replicas, rank=r)
               for r in range(replicas)]
    single = DataLoader(dataset, per_rank * replicas, shuffle=True, seed=seed)
    sampler = loaders[0].sampler
    padded = sampler.global_order(2)
    per_rank_batches = [loader.batch_indices(2) for loader in loaders]
    assert len({len(b) for b in per_rank_batches}) == 1
    for k, global_batch in enumerate(single.batch_indices(2)):
        together = np.concatenate([batches[k] for batches in per_rank_batches])
        # the same samples as the single process's k-th batch, in the padded order's positions
        assert sorted(together.tolist()) == sorted(padded[k * per_rank * replicas:
                                                          (k + 1) * per_rank * replicas].tolist())
        if len(global_batch) == per_rank * replicas:   # a full batch: exactly the single process's
            assert sorted(together.tolist()) == sorted(global_batch.tolist())


@settings(max_examples=40)
@given(n=st.integers(0, 50), replicas=st.integers(1, 7))
def test_evaluation_shards_count_each_sample_exactly_once(n, replicas):
    shards = [DistributedSampler(n, replicas, r, shuffle=False, even=False).indices(0) for r in range(replicas)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_sampler_and_loader_refuse_bad_arguments():
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        DistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be >= 1"):
        DistributedSampler(10, num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="explicit seed"):
        DistributedDataLoader(ArrayDataset(np.zeros((4, 1)), np.zeros(4)), 2, num_replicas=2, rank=0)


def test_loader_batches_use_the_same_augmentation_as_one_process():
    rng = np.random.default_rng(3)
    images = rng.standard_normal((12, 1, 2, 2)).astype(np.float32)
    dataset = ArrayDataset(images, np.arange(12),
                           transform=lambda image, g: image + np.float32(g.standard_normal()))
    single = {int(label): image for images_, labels in DataLoader(dataset, 6, shuffle=True, seed=5)
              for image, label in zip(images_, labels)}
    for rank in range(2):
        for images_, labels in DistributedDataLoader(dataset, 3, shuffle=True, seed=5, num_replicas=2, rank=rank):
            for image, label in zip(images_, labels):
                np.testing.assert_array_equal(image, single[int(label)])


def test_resume_with_another_rank_count_continues_at_the_same_samples():
    """State saved by 2 ranks with batch 4 (global 8) after 2 batches; resumed by 4 ranks with
    batch 2 (global 8): the rest of the epoch covers exactly the samples not seen yet."""
    dataset = ArrayDataset(np.zeros((40, 1), np.float32), np.arange(40))
    seen = []
    for rank in range(2):
        iterator = iter(DistributedDataLoader(dataset, 4, shuffle=True, seed=9, num_replicas=2, rank=rank))
        for _ in range(2):
            seen += next(iterator)[1].tolist()
    loader = DistributedDataLoader(dataset, 4, shuffle=True, seed=9, num_replicas=2, rank=0)
    iterator = iter(loader)
    next(iterator), next(iterator)
    state = loader.state_dict()
    assert state == {"seed": 9, "epoch": 0, "batch": 2}
    rest = []
    for rank in range(4):
        resumed = DistributedDataLoader(dataset, 2, shuffle=True, seed=0, num_replicas=4, rank=rank)
        resumed.load_state_dict(state)
        rest += [int(label) for _, labels in resumed for label in labels]
    assert sorted(seen + rest) == list(range(40))


# ---------------------------------------------------------------------- the gradient hook
def test_post_accumulate_grad_hook_runs_once_per_contribution_and_can_be_removed():
    w = tinynet.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append(t.grad.numpy().copy()))
    ((w * 3.0).sum() + (w * w).sum()).backward()   # three uses (w*w is two): three contributions
    assert len(calls) == 3
    np.testing.assert_allclose(calls[-1], 3.0 + 2 * np.array([1.0, 2.0]))
    handle.remove()
    (w * 1.0).sum().backward()
    assert len(calls) == 3
    with pytest.raises(TypeError, match="expects a callable"):
        w.register_post_accumulate_grad_hook("not a function")


# ---------------------------------------------------------------------- buckets and the reducer
class PretendPeerGroup(ProcessGroup):
    """Rank 0 of a world of 2 whose other rank's gradient is ``own + position`` in each bucket.

    An Allreduce adds the peer's share only when waited on (so results read before the wait
    are wrong), and every call is recorded.
    """
    world_size = 2
    backend = "pretend"

    def __init__(self):
        self.started = []
        self.progress_calls = 0

    def allreduce_start(self, array, description="Allreduce"):
        group = self
        snapshot = array.copy()
        group.started.append((array, snapshot))

        class Work:
            done = False

            def test(self):
                return self.done

            def wait(self, what=None):
                assert not self.done, "a bucket was waited for twice"
                array[...] = snapshot + (snapshot + np.arange(array.size, dtype=array.dtype))
                self.done = True
        return Work()

    def allreduce(self, array, description="Allreduce"):
        array += array     # the peer has the same flags
        return array

    def progress(self):
        self.progress_calls += 1


def _params(sizes, dtype=np.float32):
    return [(f"p{i}", nn.Parameter(np.zeros(size, dtype=dtype))) for i, size in enumerate(sizes)]


def test_buckets_fill_in_reverse_registration_order_up_to_the_cap():
    named = _params([10, 10, 300, 5, 5])                    # 40, 40, 1200, 20, 20 bytes
    buckets = assign_buckets(named, bucket_cap_bytes=80)
    assert [b.names for b in buckets] == [["p4", "p3", "p2"], ["p1", "p0"]]   # closed once >= 80 bytes
    mixed = named[:2] + [("h", nn.Parameter(np.zeros(3, dtype=np.float64)))]
    assert [b.names for b in assign_buckets(mixed, 10 ** 6)] == [["h"], ["p1", "p0"]]   # one dtype per bucket
    with pytest.raises(ValueError, match="bucket size must be > 0"):
        assign_buckets(named, 0)


@settings(max_examples=80)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=7), cap=st.integers(4, 120),
       data=st.data())
def test_every_gradient_is_reduced_exactly_once_in_any_completion_order(sizes, cap, data):
    named = _params(sizes)
    group = PretendPeerGroup()
    reducer = GradientReducer(named, group, bucket_cap_mb=cap / 2 ** 20)
    contributions = data.draw(st.lists(st.integers(1, 3), min_size=len(sizes), max_size=len(sizes)))
    per_parameter = {reducer.names[i]: contributions[i] for i in range(len(sizes))}
    reducer.prepare([per_parameter[name] for name in reducer.names])
    events = [name for name, count in per_parameter.items() for _ in range(count)]
    events = data.draw(st.permutations(events))
    rng = np.random.default_rng(len(events))
    own = {name: np.zeros(p.shape, np.float32) for name, p in named}
    by_name = dict(named)
    for name in events:
        p = by_name[name]
        g = rng.standard_normal(p.shape).astype(np.float32)
        own[name] += g
        p.grad = tinynet.Tensor(own[name].copy())   # what Tensor._accumulate leaves
        for hook in list(p.__dict__["_post_accumulate_grad_hooks"].values()):
            hook(p)
        # buckets start as soon as they and all earlier ones are ready, and never out of order
        leading_ready = 0
        while leading_ready < len(reducer.buckets) and reducer.ready[leading_ready]:
            leading_ready += 1
        started = [e for e in reducer.trace if e[0] == "launch"]
        assert [b for _, b in started] == list(range(len(started)))
        assert len(started) == leading_ready
    assert not reducer.active, "the last contribution must finish the step"
    assert len(group.started) == len(reducer.buckets)       # one Allreduce per bucket, no more
    for bucket in reducer.buckets:
        for p, name, offset, size in zip(bucket.parameters, bucket.names, bucket.offsets, bucket.sizes):
            peer = own[name].reshape(-1) + np.arange(offset, offset + size, dtype=np.float32)
            np.testing.assert_allclose(p.grad.numpy().reshape(-1), (own[name].reshape(-1) + peer) / 2,
                                       rtol=1e-6, atol=1e-6)
    assert group.progress_calls == len(events)


def test_backward_starts_allreduces_before_it_ends():
    model = _tiny_model()
    group = PretendPeerGroup()
    ddp = DistributedDataParallel.__new__(DistributedDataParallel)
    nn.Module.__init__(ddp)
    ddp.module = model
    object.__setattr__(ddp, "group", group)
    object.__setattr__(ddp, "broadcast_buffers", False)
    object.__setattr__(ddp, "_sync_enabled", True)
    object.__setattr__(ddp, "reducer", GradientReducer(model.named_parameters(), group, bucket_cap_mb=40 / 2 ** 20))
    order = []
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda t, order=order: order.append(len(group.started)))
    x = tinynet.Tensor(np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32))
    F.cross_entropy(ddp(x), np.array([0, 1, 2, 0])).backward()
    assert len(ddp.reducer.buckets) >= 3
    # an Allreduce was already running while later gradients were still being computed
    assert order[0] == 0 and 0 < order[len(order) // 2] < len(ddp.reducer.buckets)
    assert not ddp.reducer.active and len(group.started) == len(ddp.reducer.buckets)


def _reducer_model(find_unused):
    tinynet.manual_seed(0)

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 3)
            self.used_head = nn.Linear(3, 2)
            self.idle_head = nn.Linear(3, 2)

        def forward(self, x):
            return self.used_head(self.body(x).relu())

    model = TwoHeads()
    group = PretendPeerGroup()
    ddp = DistributedDataParallel.__new__(DistributedDataParallel)
    nn.Module.__init__(ddp)
    ddp.module = model
    for name, value in (("group", group), ("broadcast_buffers", False), ("_sync_enabled", True),
                        ("reducer", GradientReducer(model.named_parameters(), group, 25, find_unused))):
        object.__setattr__(ddp, name, value)
    return model, ddp


def test_a_parameter_that_takes_no_part_is_named_in_the_error():
    model, ddp = _reducer_model(find_unused=False)
    with pytest.raises(RuntimeError, match=r"idle_head.bias, idle_head.weight took no part.*find_unused_parameters"):
        ddp(tinynet.Tensor(np.ones((2, 3), np.float32)))


def test_with_find_unused_parameters_idle_ones_keep_no_gradient_as_in_one_process():
    model, ddp = _reducer_model(find_unused=True)
    loss = ddp(tinynet.Tensor(np.ones((2, 3), np.float32))).sum()
    loss.backward()
    assert model.idle_head.weight.grad is None and model.idle_head.bias.grad is None
    assert model.used_head.weight.grad is not None and model.body.bias.grad is not None


def test_a_gradient_from_outside_the_wrapped_forward_is_an_error():
    model, ddp = _reducer_model(find_unused=True)
    out = ddp(tinynet.Tensor(np.ones((2, 3), np.float32)))
    penalty = (model.body.weight * model.body.weight).sum()    # a weight penalty outside forward
    with pytest.raises(RuntimeError, match="received a gradient after its bucket"):
        (out.sum() + penalty).backward()


def test_no_sync_accumulates_locally_and_the_next_step_averages_the_sum():
    model, ddp = _reducer_model(find_unused=True)
    x = tinynet.Tensor(np.ones((2, 3), np.float32))
    with ddp.no_sync():
        ddp(x).sum().backward()
    assert ddp.reducer.group.started == []
    local = model.body.weight.grad.numpy().copy()
    ddp(x).sum().backward()
    bucket = next(b for b in ddp.reducer.buckets if model.body.weight in b.parameters)
    offset = bucket.offsets[bucket.parameters.index(model.body.weight)]
    expected = 2 * local.reshape(-1) + np.arange(offset, offset + local.size) / 2   # (sum + peer) / 2
    np.testing.assert_allclose(model.body.weight.grad.numpy().reshape(-1), expected, rtol=1e-6)


# ---------------------------------------------------------------------- GPU helpers on the stand-in
def test_gpu_buckets_go_through_the_gpu_allreduce_and_stay_on_the_device(gpu_xp):
    from tinynet.distributed.gpu import HostStagedAllreduce
    named = [(n, p.to("gpu")) for n, p in _params([3, 4])]
    named = [(n, nn.Parameter(p.data)) for n, p in named]
    group = PretendPeerGroup()
    reducer = GradientReducer(named, group, 25, gpu_allreduce=HostStagedAllreduce(group))
    reducer.prepare([1, 1])
    for _, p in named:
        p.grad = tinynet.Tensor(gpu_xp.ones(p.shape, dtype=np.float32))
        for hook in list(p.__dict__["_post_accumulate_grad_hooks"].values()):
            hook(p)
    assert len(group.started) == 1 and isinstance(group.started[0][0], np.ndarray)   # staged on the host
    flat = reducer.buckets[0].flat
    assert isinstance(flat, gpu_xp.ndarray)
    for p, offset in zip(reducer.buckets[0].parameters, reducer.buckets[0].offsets):
        assert isinstance(p.grad.data, gpu_xp.ndarray)
        np.testing.assert_allclose(p.grad.numpy(), 1 + np.arange(offset, offset + p.numel()) / 2)


def test_nccl_pointer_comes_from_the_cuda_array_interface_and_dtypes_are_checked(gpu_xp):
    from tinynet.distributed.gpu import NcclAllreduce, device_pointer
    a = gpu_xp.zeros(8, dtype=np.float32)
    assert device_pointer(a) == a.__cuda_array_interface__["data"][0]
    from fake_nccl import FakeCuda

    class OneRankNccl:
        NCCL_FLOAT32, NCCL_SUM = 1, 0

        @staticmethod
        def get_unique_id():
            return (1, 2, 3)

        class NcclCommunicator:
            def __init__(self, n, unique_id, rank):
                assert (n, unique_id, rank) == (1, (1, 2, 3), 0)

    reducer = NcclAllreduce(dist.SingleProcessGroup(), nccl=OneRankNccl, cuda=FakeCuda())
    with pytest.raises(TypeError, match="unsupported gradient dtype int32"):
        reducer.start(gpu_xp.zeros(4, dtype=np.int32), "bucket")


def test_each_rank_takes_the_gpu_of_its_local_rank(gpu_xp, monkeypatch):
    import fake_cupy
    group = dist.SingleProcessGroup()
    monkeypatch.setattr(dist, "_group", group)
    with fake_cupy.devices(2):
        group.local_rank = 3                    # the 4th rank on its machine, 2 GPUs: GPU 1
        assert dist.use_local_gpu() == 1
        assert gpu_xp.zeros(2).device.id == 1
        group.local_rank = 0
        assert dist.use_local_gpu() == 0


def test_a_step_left_unsynchronised_is_reported_at_the_next_forward():
    model, ddp = _reducer_model(find_unused=True)
    x = tinynet.Tensor(np.ones((2, 3), np.float32))
    model.eval()
    ddp(x)                                  # evaluation forwards prepare nothing
    assert not ddp.reducer.active
    model.train()
    first, second = ddp(x), ddp(x)          # two micro-batches: counts add up
    (first.sum() + second.sum()).backward()
    assert not ddp.reducer.active           # both were complete: the step finished by itself
    ddp(x)
    out = ddp(x)                            # the first output is never used by the loss
    out.sum().backward()
    assert ddp.reducer.active               # ... so gradients are still waiting
    with pytest.raises(RuntimeError, match="previous step's backward left parameter"):
        ddp(x)
