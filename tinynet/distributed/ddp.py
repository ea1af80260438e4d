"""Data-parallel training: every rank holds the whole model, sees its own shard of each batch,
and the ranks average their gradients before each optimizer step.

How one step runs (as PyTorch's DistributedDataParallel does it):

1. ``ddp(x)`` runs the model's forward and walks the graph it recorded, counting for each
   parameter how many gradient contributions backward will add to it (a weight used twice
   gets two).
2. ``loss.backward()`` walks the graph in reverse.  Each time a contribution is added to a
   parameter's ``.grad``, the hook registered with
   :meth:`tinynet.Tensor.register_post_accumulate_grad_hook` counts it down; at zero the
   parameter is *ready*.
3. Parameters are grouped into buckets of about ``bucket_cap_mb`` megabytes, filled in
   reverse registration order -- the order in which backward produces them, last layer
   first.  When every parameter of a bucket is ready, its gradients are copied into the
   bucket's flat buffer and a non-blocking Allreduce (MPI ``Iallreduce``, or NCCL on its own
   stream) starts while backward goes on computing the earlier layers' gradients.
4. Buckets are started strictly in index order, on every rank: MPI and NCCL match
   collectives by the order in which ranks issue them, so a rank whose bucket 2 happened to
   be ready before bucket 1 holds it back until bucket 1 has started.
5. When the last bucket has started (or at ``synchronize()``), the rank waits for all of
   them, divides the sums by the world size and sets each ``p.grad`` to its slice of the
   bucket.  The optimizer step then sees the average gradient of the global batch.

Parameters that take no part in a step: by default an error names them (a rank would
otherwise wait forever for a gradient that never comes).  With
``find_unused_parameters=True`` they contribute zeros, one more small Allreduce tells which
parameters no rank used, and those keep ``grad = None`` exactly as in a single process.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .. import backend
from ..function import is_grad_enabled, no_grad
from ..nn.module import Module
from ..tensor import Tensor
from . import runtime

__all__ = ["DistributedDataParallel", "GradientReducer", "Bucket", "assign_buckets"]


class Bucket:
    """Parameters whose gradients travel together in one flat buffer of one dtype and device."""

    def __init__(self, index, parameters, names):
        self.index = index
        self.parameters = list(parameters)
        self.names = list(names)
        self.sizes = [p.numel() for p in self.parameters]
        self.offsets = list(np.cumsum([0] + self.sizes[:-1]))
        self.numel = int(sum(self.sizes))
        first = self.parameters[0]
        self.dtype = first.dtype
        self.device = first.device
        self.nbytes = self.numel * np.dtype(self.dtype).itemsize
        self.flat = None          # allocated on first use, on the parameters' device
        # per-step state
        self.waiting = 0          # parameters of this bucket not ready yet
        self.work = None          # the pending Allreduce

    def buffer(self):
        if self.flat is None:
            xp = backend.array_module_for(self.device)
            self.flat = xp.empty(self.numel, dtype=self.dtype)
        return self.flat

    def __repr__(self):
        return (f"Bucket({self.index}, {len(self.parameters)} parameters, {self.nbytes / 2**20:.2f} MB, "
                f"{self.dtype}, {self.device})")


def assign_buckets(named_parameters, bucket_cap_bytes):
    """Group ``(name, parameter)`` pairs into buckets in *reverse* of the given (registration)
    order, since backward produces the last layer's gradients first.  As in PyTorch, a
    parameter joins the open bucket, and the bucket closes once it holds ``bucket_cap_bytes``
    or more (so no bucket is a lone tiny bias; one parameter larger than the cap closes its
    bucket at once).  A bucket holds one dtype on one device."""
    if bucket_cap_bytes <= 0:
        raise ValueError(f"bucket size must be > 0 bytes, got {bucket_cap_bytes}")
    buckets, current, names, size, key = [], [], [], 0, None
    for name, p in reversed(list(named_parameters)):
        p_key = (str(p.dtype), p.device)
        if current and p_key != key:
            buckets.append(Bucket(len(buckets), current, names))
            current, names, size = [], [], 0
        current.append(p)
        names.append(name)
        size += p.numel() * np.dtype(p.dtype).itemsize
        key = p_key
        if size >= bucket_cap_bytes:
            buckets.append(Bucket(len(buckets), current, names))
            current, names, size = [], [], 0
    if current:
        buckets.append(Bucket(len(buckets), current, names))
    return buckets


class GradientReducer:
    """The bucket bookkeeping of one model: readiness counts, in-order launches, the final wait.

    ``group`` is a process group (``tinynet.distributed.runtime``); ``gpu_allreduce`` the
    object that reduces GPU buckets (NCCL or host-staged), needed only for GPU parameters.
    """

    def __init__(self, named_parameters, group, bucket_cap_mb=25.0, find_unused_parameters=False,
                 gpu_allreduce=None):
        named_parameters = [(n, p) for n, p in named_parameters if p.requires_grad]
        if not named_parameters:
            raise ValueError("DistributedDataParallel: the model has no parameter that requires a gradient")
        self.group = group
        self.find_unused_parameters = bool(find_unused_parameters)
        self.gpu_allreduce = gpu_allreduce
        self.buckets = assign_buckets(named_parameters, int(bucket_cap_mb * 2 ** 20))
        self.parameters = [p for b in self.buckets for p in b.parameters]
        self.names = [n for b in self.buckets for n in b.names]
        self.index_of = {id(p): i for i, p in enumerate(self.parameters)}
        self.bucket_of = [b for b in self.buckets for _ in b.parameters]
        self._hooks = [p.register_post_accumulate_grad_hook(self._on_gradient_accumulated)
                       for p in self.parameters]
        self.steps = 0
        self._reset_step()
        #: (event, bucket index) in the order they happened during the last step, for tests
        #: and for the benchmark's overlap measurement
        self.trace = []

    # ------------------------------------------------------------------ per-step state
    def _reset_step(self):
        self.active = False                        # a forward was prepared, its sync is pending
        self.expected = [0] * len(self.parameters)  # contributions still to come, per parameter
        self.contributions_seen = 0
        self.ready_parameters = set()
        # which parameters had a gradient when their bucket started (find_unused_parameters)
        self.has_gradient = np.zeros(len(self.parameters), dtype=np.int32)
        self.next_bucket = 0                       # buckets launch strictly in this order
        self.ready = [False] * len(self.buckets)
        for bucket in self.buckets:
            bucket.waiting = len(bucket.parameters)
            bucket.work = None

    def prepare(self, contributions):
        """Start a step: ``contributions[i]`` gradient contributions will reach parameter ``i``.

        Called by the wrapper after each forward; a second forward before the backward
        (two micro-batches whose losses are added) adds its counts to the first's.
        """
        if self.active and self.contributions_seen:
            pending = [self.names[i] for i in range(len(self.parameters)) if self.expected[i] > 0]
            self.active = False
            raise RuntimeError(
                f"DistributedDataParallel: the previous step's backward left parameter(s) "
                f"{', '.join(pending[:5])}{' ...' if len(pending) > 5 else ''} without all their gradient "
                f"contributions, so its gradients were not averaged (the ranks may have drifted apart): "
                f"call ddp.synchronize() before optimizer.step() when the loss does not use every output, "
                f"and run evaluation forwards under tinynet.no_grad()")
        if not self.active:
            self._reset_step()
            self.trace = []
            self.active = True
        for i, count in enumerate(contributions):
            self.expected[i] += int(count)
        unused = [self.names[i] for i in range(len(self.parameters))
                  if self.expected[i] == 0 and i not in self.ready_parameters]
        if unused and not self.find_unused_parameters:
            self.active = False
            raise RuntimeError(
                f"DistributedDataParallel: parameter(s) {', '.join(unused)} took no part in this forward on "
                f"rank {self.group.rank}, so no gradient would ever arrive for them and the other ranks "
                f"would wait for this one; pass find_unused_parameters=True if the model skips parts on "
                f"purpose")
        if self.find_unused_parameters:
            # parameters outside this step's graph contribute zeros: ready right away
            for i in range(len(self.parameters)):
                if self.expected[i] == 0:
                    self._mark_ready(i)

    def _on_gradient_accumulated(self, parameter):
        if not self.active:
            return   # a backward outside a prepared step (no_sync, or no forward through the wrapper)
        i = self.index_of[id(parameter)]
        if self.expected[i] <= 0:
            raise RuntimeError(
                f"DistributedDataParallel: parameter {self.names[i]} received a gradient after its bucket "
                f"was handed to Allreduce; it is used outside the wrapped module's forward (a weight "
                f"penalty added to the loss, say). Compute it inside forward, or add its gradient after "
                f"synchronize()")
        self.expected[i] -= 1
        self.contributions_seen += 1
        if self.expected[i] == 0:
            self._mark_ready(i)
        self.group.progress()

    def _mark_ready(self, i):
        if i in self.ready_parameters:
            return
        self.ready_parameters.add(i)
        bucket = self.bucket_of[i]
        bucket.waiting -= 1
        if bucket.waiting == 0:
            self.ready[bucket.index] = True
            self.trace.append(("ready", bucket.index))
            self._launch_in_order()

    def _launch_in_order(self):
        while self.next_bucket < len(self.buckets) and self.ready[self.next_bucket]:
            self._launch(self.buckets[self.next_bucket])
            self.next_bucket += 1
        if self.next_bucket == len(self.buckets):
            self._finish()

    def _launch(self, bucket):
        flat = bucket.buffer()
        for p, offset, size in zip(bucket.parameters, bucket.offsets, bucket.sizes):
            target = flat[offset:offset + size]
            if p.grad is None:
                target[...] = 0
            else:
                target[...] = p.grad.data.reshape(-1)
                self.has_gradient[self.index_of[id(p)]] = 1
        description = f"Allreduce of gradient bucket {bucket.index} ({bucket.nbytes / 2**20:.1f} MB, step {self.steps})"
        if bucket.device == "cpu":
            bucket.work = self.group.allreduce_start(flat, description)
        else:
            if self.gpu_allreduce is None:
                raise RuntimeError("DistributedDataParallel: GPU parameters but no GPU allreduce was set up")
            bucket.work = self.gpu_allreduce.start(flat, description)
        self.trace.append(("launch", bucket.index))

    # ------------------------------------------------------------------ the end of a step
    def synchronize(self):
        """Start every bucket not started yet (in order), wait for all, write the averages.

        Runs by itself at the end of backward when every parameter got all its gradient
        contributions; call it before ``optimizer.step()`` when some did not (a branch of the
        forward that the loss does not use).  Does nothing when no step is pending.
        """
        if not self.active:
            return
        missing = [self.names[i] for i in range(len(self.parameters)) if self.expected[i] > 0]
        if missing and not self.find_unused_parameters:
            self.active = False
            raise RuntimeError(
                f"DistributedDataParallel: parameter(s) {', '.join(missing)} were used in forward but "
                f"received no gradient in backward on rank {self.group.rank} (the loss does not depend on "
                f"them); pass find_unused_parameters=True if that is intended")
        for i in range(len(self.parameters)):
            self._mark_ready(i)          # launches in order; the last launch calls _finish

    def _finish(self):
        for bucket in self.buckets:
            bucket.work.wait(f"Allreduce of gradient bucket {bucket.index} (step {self.steps})")
            self.trace.append(("done", bucket.index))
        gradient_anywhere = None
        if self.find_unused_parameters:
            gradient_anywhere = self.group.allreduce(self.has_gradient.copy(),
                                                     "Allreduce of the which-parameters-have-gradients flags")
        scale = 1.0 / self.group.world_size
        for bucket in self.buckets:
            flat = bucket.flat
            flat *= flat.dtype.type(scale)
            for p, offset, size, i in zip(bucket.parameters, bucket.offsets, bucket.sizes,
                                          (self.index_of[id(p)] for p in bucket.parameters)):
                if gradient_anywhere is not None and gradient_anywhere[i] == 0:
                    continue            # no rank has a gradient for it: None, as in one process
                # a view of the bucket (PyTorch's gradient_as_bucket_view): no copy; the next
                # step's synchronisation overwrites it, and backward never adds into it in place
                p.grad = Tensor(flat[offset:offset + size].reshape(p.shape))
        self.active = False
        self.steps += 1

    def remove_hooks(self):
        for handle in self._hooks:
            handle.remove()
        self._hooks = []


def _graph_contributions(outputs, index_of, count):
    """How many gradient contributions each tracked parameter gets from the graph behind ``outputs``."""
    contributions = [0] * count
    stack, seen = [], set()
    for tensor in _tensors_in(outputs):
        if tensor.creator is not None and id(tensor.creator) not in seen:
            seen.add(id(tensor.creator))
            stack.append(tensor.creator)
        elif tensor.creator is None and id(tensor) in index_of and tensor.requires_grad:
            contributions[index_of[id(tensor)]] += 1   # forward returned a parameter itself
    while stack:
        function = stack.pop()
        for x, needed in zip(function.inputs, function.needs_input_grad):
            if not needed or x is None:     # (x: a leaf tensor or a GraphEdge, see tinynet.function)
                continue
            if x.creator is None:
                i = index_of.get(id(x))
                if i is not None:
                    contributions[i] += 1
            elif x.requires_grad and id(x.creator) not in seen:
                seen.add(id(x.creator))
                stack.append(x.creator)
    return contributions


def _tensors_in(value):
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors_in(v)


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the ranks of ``group``.

    ``ddp = DistributedDataParallel(model)`` broadcasts rank 0's parameters and buffers to
    every rank; then the training loop keeps its one-process shape::

        loss = F.cross_entropy(ddp(images), labels)   # images: this rank's shard of the batch
        optimizer.zero_grad()
        loss.backward()        # buckets of gradients are averaged while backward runs
        optimizer.step()       # (call ddp.synchronize() first if some parameters got no gradient)

    With world size 1 nothing is reduced and the wrapper only forwards.  ``module`` stays
    reachable as ``ddp.module`` (save ``ddp.module.state_dict()``: its keys have no
    ``module.`` prefix).
    """

    def __init__(self, module, group=None, bucket_cap_mb=25.0, find_unused_parameters=False,
                 broadcast_buffers=True, gpu_allreduce="auto", nccl=None, cuda=None):
        super().__init__()
        from . import get_group
        self.module = module
        object.__setattr__(self, "group", group if group is not None else get_group())
        self.broadcast_buffers = bool(broadcast_buffers)
        object.__setattr__(self, "reducer", None)
        object.__setattr__(self, "_sync_enabled", True)
        if self.group.world_size == 1:
            return
        named = list(module.named_parameters())
        self._check_same_model_on_every_rank(named)
        self._broadcast_state(named)
        gpu = None
        if any(p.device != "cpu" for _, p in named):
            from .gpu import gpu_allreduce_for
            gpu = gpu_allreduce_for(self.group, gpu_allreduce, nccl=nccl, cuda=cuda)
        object.__setattr__(self, "reducer", GradientReducer(
            named, self.group, bucket_cap_mb, find_unused_parameters, gpu))

    # ------------------------------------------------------------------ start-up
    def _check_same_model_on_every_rank(self, named):
        layout = [(name, tuple(p.shape), str(p.dtype)) for name, p in named]
        layout += [(name, tuple(a.shape), str(a.dtype)) for name, a in self.module.named_buffers()]
        reference = self.group.broadcast_object(layout, 0, "broadcast of the model layout")
        if reference != layout:
            differences = [f"{a} on rank 0 vs {b} here" for a, b in zip(reference, layout) if a != b]
            if len(reference) != len(layout):
                differences.append(f"{len(reference)} arrays on rank 0 vs {len(layout)} here")
            raise ValueError(f"DistributedDataParallel: rank {self.group.rank} holds a different model than "
                             f"rank 0: " + "; ".join(differences[:5]))

    @no_grad()
    def _broadcast_state(self, named):
        for name, p in named:
            p.data = self._broadcast_array(p.data, f"broadcast of parameter {name}")
        self._broadcast_module_buffers()

    def _broadcast_module_buffers(self):
        modules = dict(self.module.named_modules())
        for name, array in list(self.module.named_buffers()):
            module_name, _, attribute = name.rpartition(".")
            modules[module_name].register_buffer(
                attribute, self._broadcast_array(array, f"broadcast of buffer {name}"))

    def _broadcast_array(self, array, description):
        """Rank 0's values of ``array`` (through host memory: start-up only, not per step)."""
        host = np.ascontiguousarray(backend.to_numpy(array)).copy()
        self.group.broadcast(host, 0, description)
        if backend.is_gpu_array(array):
            return backend.to_device(host, backend.device_of(array))
        return host

    # ------------------------------------------------------------------ the step
    def forward(self, *inputs, **kwargs):
        if self.reducer is not None and self.broadcast_buffers and self.module.training:
            # buffers (BatchNorm's running statistics) follow rank 0, as in PyTorch
            if any(True for _ in self.module.named_buffers()):
                with no_grad():
                    self._broadcast_module_buffers()
        output = self.module(*inputs, **kwargs)
        reducer = self.reducer
        if reducer is not None and self._sync_enabled and is_grad_enabled() and self.module.training:
            reducer.prepare(_graph_contributions(output, reducer.index_of, len(reducer.parameters)))
        return output

    def synchronize(self):
        """Wait for every bucket and write the averaged gradients (see GradientReducer.synchronize)."""
        if self.reducer is not None:
            self.reducer.synchronize()

    @contextmanager
    def no_sync(self):
        """Accumulate gradients locally (forward and backward inside the block reduce nothing);
        the first synchronised step afterwards averages the accumulated sums."""
        object.__setattr__(self, "_sync_enabled", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_sync_enabled", True)

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state_dict, strict=True):
        return self.module.load_state_dict(state_dict, strict)

    def extra_repr(self):
        buckets = len(self.reducer.buckets) if self.reducer is not None else 0
        return f"world_size={self.group.world_size}, buckets={buckets}"
