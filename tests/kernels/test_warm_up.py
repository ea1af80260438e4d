"""tinynet.kernels.warm_up (kernels/_warm_up.py) and the kernels' thread pool (kernels/_numba.py).

* the warm-up's exercises compile exactly the kernel signatures that real layers use, so a
  warmed cache leaves nothing to compile at the first training step;
* the background process fills an empty cache, which a later process only loads from;
* each kernel is compiled by one process: the first to claim it.  This process waits only for a
  kernel the background process has claimed and not finished; the background process skips a
  kernel this process has claimed until it is in the cache, then loads it;
* results do not depend on the number of threads.
"""
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import tinynet
from tinynet import backend, nn
from tinynet.kernels import _numba, _warm_up
from tinynet.nn import functional as F

ROOT = Path(__file__).resolve().parents[2]


def _small_network():
    """Every CPU kernel of the layers, at the smallest sizes that reach each path (Winograd needs
    MIN_TILES output tiles, the strided convolution its space-to-depth form)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 11, stride=4), nn.ReLU(), nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(16, 8, 3, padding=1, dilation=2), nn.AvgPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 3))


def _signatures():
    return {_warm_up._name(kernel): set(kernel.signatures) for kernel in _warm_up.kernels_to_compile()}


def test_the_exercises_compile_the_signatures_real_layers_use():
    for _, exercise in _warm_up._exercises():
        exercise()
    compiled = _signatures()
    assert all(compiled.values()), [name for name, signatures in compiled.items() if not signatures]
    tinynet.manual_seed(0)
    model = _small_network()
    optimizer = tinynet.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = np.random.default_rng(0).standard_normal((4, 3, 99, 99)).astype(np.float32)
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(tinynet.Tensor(x)), np.arange(4) % 3).backward()
        optimizer.step()
    model.eval()
    with tinynet.no_grad():
        model(tinynet.Tensor(x[:1]))
    after = _signatures()
    assert {name: after[name] - compiled[name] for name in after if after[name] - compiled[name]} == {}


CHILD = r"""
import json, os, sys, tinynet
from tinynet.kernels import _warm_up, avg_pool2d, relu
handle = tinynet.kernels.warm_up(when_idle=False)    # whatever the machine's load
if sys.argv[1] == "warm":
    assert handle is not None
    # claimed here before the background process can reach them: relu's forward kernel is in the
    # cache already (the background process loads it and goes on to relu's backward kernel), average
    # pooling's backward kernel is not (the background process skips it, and this process compiles it)
    for kernel in (relu._relu_forward_tasks, avg_pool2d._avg_backward_tasks):
        assert _warm_up._claim(handle.claims, _warm_up._name(kernel))
    assert handle.join(600), "the warm-up process did not finish"
    assert not os.path.exists(handle.claims), "the claims folder outlived the warm-up process"
    print(json.dumps(sorted(handle.done)))
    assert not _warm_up._cached_for_this_cpu(avg_pool2d._avg_backward_tasks)    # skipped there
else:
    assert handle is None, "a warm cache should start no process"
    print(json.dumps([]))
for _, exercise in _warm_up._exercises():
    exercise()
print(json.dumps({_warm_up._name(k): [sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values())]
                  for k in _warm_up.kernels_to_compile()}))
"""

COMPILE_RELU = "import numpy; from tinynet.kernels import relu; relu.forward(numpy.ones(1 << 20, numpy.float32))"


def test_the_background_process_fills_an_empty_cache_that_later_processes_only_load(tmp_path):
    import json
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("TINYNET_WARM_UP", None)
    subprocess.run([sys.executable, "-c", COMPILE_RELU], cwd=ROOT, env=env, check=True, timeout=300)
    # run from a folder holding another "tinynet" (a checkout of another version, say): the
    # background process must import the same tinynet as this one, not the folder's
    script, elsewhere = tmp_path / "child.py", tmp_path / "elsewhere"
    script.write_text(CHILD)
    (elsewhere / "tinynet").mkdir(parents=True)
    (elsewhere / "tinynet" / "__init__.py").write_text("raise ImportError('not the tinynet under test')\n")
    names = {_warm_up._name(kernel) for kernel in _warm_up.kernels_to_compile()}
    relu_forward = "tinynet.kernels.relu._relu_forward_tasks"
    avg_backward = "tinynet.kernels.avg_pool2d._avg_backward_tasks"
    for mode in ("warm", "load"):
        result = subprocess.run([sys.executable, str(script), mode], cwd=elsewhere, env=env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        done, counts = json.loads(lines[-2]), json.loads(lines[-1])
        if mode == "warm":
            # every kernel but the two this process claimed came from the background process
            assert set(done) == names - {relu_forward, avg_backward}
            # ... and loads here; the one claimed and not cached was compiled here
            assert counts.pop(avg_backward) == [0, 1], "the claimed kernel was not left to this process"
        # a later process only loads
        assert all(hits >= 1 and misses == 0 for hits, misses in counts.values()), counts


class _Lines:
    """A child's stdout that the test feeds line by line."""

    def __init__(self):
        self.lines, self.ready = [], threading.Condition()
        self.closed = False

    def feed(self, line):
        with self.ready:
            self.lines.append(line)
            self.ready.notify_all()

    def close(self):
        with self.ready:
            self.closed = True
            self.ready.notify_all()

    def __iter__(self):
        while True:
            with self.ready:
                while not self.lines and not self.closed:
                    self.ready.wait()
                if not self.lines:
                    return
                line = self.lines.pop(0)
            yield line


class _FakeProcess:
    def __init__(self):
        self.stdout = _Lines()

    def wait(self):
        return 0


def test_a_process_waits_only_for_a_kernel_the_background_process_has_claimed(tmp_path):
    kernels = _warm_up.kernels_to_compile()
    theirs, ours, finished = kernels[0], kernels[1], kernels[2]
    process = _FakeProcess()
    handle = _warm_up.WarmUp(process, str(tmp_path))
    assert _warm_up._claim(handle.claims, _warm_up._name(theirs))          # the background process's claim
    process.stdout.feed(f"done {_warm_up._name(finished)}\n")
    while _warm_up._name(finished) not in handle.done:
        threading.Event().wait(0.01)
    handle.wait_for(finished)                   # done there: returns at once, claims nothing
    assert not (tmp_path / _warm_up._name(finished)).exists()
    handle.wait_for(ours)                       # nobody's yet: claimed here, returns at once
    assert (tmp_path / _warm_up._name(ours)).exists()
    assert not _warm_up._claim(handle.claims, _warm_up._name(ours))         # the background process loses it
    waited = threading.Event()
    waiter = threading.Thread(target=lambda: (handle.wait_for(theirs), waited.set()))
    waiter.start()
    assert not waited.wait(0.2)                 # claimed there and not done: waits ...
    process.stdout.feed(f"done {_warm_up._name(theirs)}\n")
    assert waited.wait(10)                      # ... until the background process reports it done
    waiter.join()
    process.stdout.close()
    assert handle.join(10) and not tmp_path.exists()                        # the claims go with the process


def test_a_kernel_claimed_by_a_process_that_has_exited_is_not_waited_for(tmp_path):
    kernel = _warm_up.kernels_to_compile()[0]
    process = _FakeProcess()
    handle = _warm_up.WarmUp(process, str(tmp_path))
    assert _warm_up._claim(handle.claims, _warm_up._name(kernel))
    process.stdout.close()                      # exited (or crashed) before reporting it done
    assert handle.join(10)
    handle.wait_for(kernel)                     # returns: this process compiles it


def _wait_for_child(pid, seconds, message):
    """The exit status of forked child ``pid``; kills it and fails with ``message`` after ``seconds``."""
    for _ in range(int(seconds * 10)):
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return status
        threading.Event().wait(0.1)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(message)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_process_does_not_wait_for_the_background_process(tmp_path, monkeypatch):
    """A forked child has no thread reading the background process's reports: it must compile
    a kernel itself rather than wait for a report that would never reach it."""
    class Uncompiled:                                    # a kernel before its first call here
        overloads = {}
        py_func = _small_network

    kernel = Uncompiled()
    process = _FakeProcess()
    handle = _warm_up.WarmUp(process, str(tmp_path))
    assert _warm_up._claim(handle.claims, _warm_up._name(kernel))           # claimed there, never done
    monkeypatch.setattr(_warm_up, "_current", handle)
    monkeypatch.setattr(_numba, "_warm_up_hook", handle.wait_for)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                _numba.wait_for_warm_up(kernel)
            finally:
                os._exit(0)
        _wait_for_child(pid, 10, "the forked child waited for the background process")
    finally:
        process.stdout.close()
        handle.join(10)


@pytest.mark.parametrize("threads", [1, 3])
def test_results_do_not_depend_on_the_number_of_threads(threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 16, 21, 21)).astype(np.float32)
    weight = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    previous = backend.get_num_threads()

    def run(count):
        backend.set_num_threads(count)
        try:
            from tinynet.kernels import conv2d, local_response_norm
            y, saved = conv2d.forward(x, weight, None, padding=1)
            grads = conv2d.backward(np.ones_like(y), saved)
            z, lrn_saved = local_response_norm.forward(y, size=5, alpha=1e-4, beta=0.75, k=2.0)
            return [y, z, *grads[:2], local_response_norm.backward(np.ones_like(z), lrn_saved)[0]]
        finally:
            backend.set_num_threads(previous)

    for reference, result in zip(run(2), run(threads)):
        assert np.array_equal(reference, result)


def test_an_error_in_a_task_range_reaches_the_caller():
    calls = []

    class Boom:
        overloads = {"compiled": True}

        def __call__(self, first, last):
            calls.append((first, last))
            if first == 0:
                raise ValueError("range 0 failed")

    previous = backend.get_num_threads()
    backend.set_num_threads(2)
    try:
        with pytest.raises(ValueError, match="range 0 failed"):
            _numba.parallel_tasks(Boom(), 100)
    finally:
        backend.set_num_threads(previous)
    assert sorted(calls)[0][0] == 0 and sum(last - first for first, last in calls) == 100


def test_a_python_function_runs_on_the_threads_while_a_warm_up_hook_is_set(monkeypatch):
    """Only numba dispatchers are compiled by the warm-up process; a plain Python function (the
    GEMM ranges of _gemm_stack.py) has no ``overloads`` and must neither fail nor be waited for."""
    waited, ranges = [], []
    monkeypatch.setattr(_numba, "_warm_up_hook", waited.append)
    previous = backend.get_num_threads()
    backend.set_num_threads(2)
    try:
        _numba.parallel_tasks(lambda first, last: ranges.append((first, last)), 10)
    finally:
        backend.set_num_threads(previous)
    assert waited == [] and sum(last - first for first, last in ranges) == 10


class _SlowRanges:
    """A stand-in kernel whose ranges sleep (releasing the GIL), noting the thread of each."""
    overloads = {"compiled": True}

    def __init__(self):
        self.threads = set()

    def __call__(self, first, last):
        self.threads.add(threading.get_ident())
        threading.Event().wait(0.01)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_parallel_kernels_on_threads_of_its_own():
    """The parent's kernel threads do not exist in a forked child, so a range queued for them
    would never run there: the child must start threads of its own."""
    previous = backend.get_num_threads()
    backend.set_num_threads(2)
    try:
        parent = _SlowRanges()
        _numba.parallel_tasks(parent, 8)                 # starts the parent's kernel thread
        assert len(parent.threads) == 2
        pid = os.fork()
        if pid == 0:                                     # the child: report through the exit status only
            code = 3
            try:
                child = _SlowRanges()
                _numba.parallel_tasks(child, 8)
                code = 0 if len(child.threads) == 2 else 4
            finally:
                os._exit(code)
        status = _wait_for_child(pid, 30, "the forked child hung in a parallel kernel")
    finally:
        backend.set_num_threads(previous)
    assert os.waitstatus_to_exitcode(status) == 0, "the child ran every range on one thread"
