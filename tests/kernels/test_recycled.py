"""Tests of kernels/_recycled.py: results in recycled memory, never reused while an array can reach it."""
import gc
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.kernels import _recycled

MiB = 1 << 20


@pytest.fixture(autouse=True)
def empty_pool():
    gc.collect()
    _recycled.release_recycled_memory()
    yield
    gc.collect()
    _recycled.release_recycled_memory()


def address(array):
    return array.__array_interface__["data"][0]


def test_memory_is_reused_only_after_the_last_view_goes():
    a = _recycled.empty(np, (MiB // 4,), np.float32)
    start = address(a)
    view = a[8:].reshape(-1, 8).T            # a view of a view: it alone keeps the memory
    del a
    b = _recycled.empty(np, (MiB // 4,), np.float32)
    assert not np.shares_memory(b, view)     # the view still reaches the first block
    view[...] = 1.0
    b[...] = 2.0
    assert np.all(view == 1.0)
    del view
    c = _recycled.empty(np, (MiB // 4,), np.float32)
    assert address(c) == start               # the first block, back once nothing reaches it
    del b, c


def test_results_are_contiguous_writable_and_of_the_asked_shape_and_dtype():
    for shape, dtype in [((2, 3, 256, 256), np.float32), ((512, 1024), np.float64), ((MiB,), np.int32)]:
        a = _recycled.empty(np, shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        z = _recycled.zeros(np, shape, dtype)
        assert not np.any(z)


def test_small_arrays_and_other_array_modules_bypass_the_pool():
    small = _recycled.empty(np, (16,), np.float32)
    assert small.base is None                # a plain NumPy allocation

    class OtherModule:
        @staticmethod
        def empty(shape, dtype):
            return ("other", shape, dtype)

    assert _recycled.empty(OtherModule, (MiB,), np.float32) == ("other", (MiB,), np.dtype(np.float32))


def test_waiting_memory_never_takes_the_process_past_its_peak_in_use():
    """A request of a new size first frees the blocks that waited longest, so that the blocks in
    use plus those waiting hold no more than the most ever in use at once."""
    first = [_recycled.empty(np, (MiB,), np.uint8) for _ in range(4)]      # 4 MiB in use at once
    del first
    gc.collect()
    assert _recycled.recycled_bytes() == 4 * MiB
    other = _recycled.empty(np, (3 * MiB,), np.uint8)                   # no block of this size
    assert _recycled.recycled_bytes() <= 1 * MiB                        # 3 in use + at most 1 waiting
    del other
    gc.collect()
    _recycled.release_recycled_memory()
    assert _recycled.recycled_bytes() == 0


def test_kernels_results_come_back_through_the_pool():
    from tinynet.kernels import relu
    x = np.random.default_rng(0).standard_normal((4, 64, 32, 32)).astype(np.float32)   # 1 MiB
    y = relu.relu_forward(x)
    start = address(y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    del y
    again = relu.relu_forward(x)
    assert address(again) == start


def test_a_forked_child_can_allocate_while_the_parent_held_the_lock():
    code = r"""
import os, threading, numpy as np
from tinynet.kernels import _recycled
with _recycled._lock:                    # fork while the pool's lock is held
    pid = os.fork()
    if pid == 0:
        a = _recycled.empty(np, (1 << 20,), np.uint8)
        os._exit(0 if a.size == 1 << 20 else 1)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_result_freed_by_the_garbage_collector_inside_the_pool_comes_back():
    """A cycle that holds a result may be collected while this thread holds the pool's lock (any
    allocation can start a collection): its block must come back, not deadlock."""
    class Holder:
        pass

    holder = Holder()
    holder.me = holder                            # a cycle: only the collector frees it
    holder.array = _recycled.empty(np, (MiB,), np.uint8)
    start = address(holder.array)
    del holder

    def collect_under_the_lock():
        with _recycled._lock:                     # as inside empty() or _give_back()
            gc.collect()                          # the finalizer runs here, on this thread

    worker = threading.Thread(target=collect_under_the_lock, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the finalizer waited for a lock its own thread held"
    again = _recycled.empty(np, (MiB,), np.uint8)
    assert address(again) == start


def test_a_failed_allocation_is_not_counted_as_memory_in_use(monkeypatch):
    before = _recycled._live_bytes[0]

    def no_memory(*args, **kwargs):
        raise MemoryError("test: no memory")

    monkeypatch.setattr(_recycled.numpy, "empty", no_memory)
    with pytest.raises(MemoryError):
        _recycled.empty(np, (8 * MiB,), np.uint8)
    monkeypatch.undo()
    assert _recycled._live_bytes[0] == before


def test_a_waiting_block_is_cut_for_smaller_results_and_joined_again():
    """Freed memory serves requests of other sizes: two halves of a waiting block, then the whole
    block again once both halves are back (no new memory, so no fresh pages)."""
    whole = _recycled.empty(np, (4 * MiB,), np.uint8)
    start = address(whole)
    del whole
    first = _recycled.empty(np, (2 * MiB,), np.uint8)
    second = _recycled.empty(np, (2 * MiB,), np.uint8)
    assert sorted([address(first), address(second)]) == [start, start + 2 * MiB]
    assert _recycled.recycled_bytes() == 0
    del first, second
    again = _recycled.empty(np, (4 * MiB,), np.uint8)
    assert address(again) == start


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 6), st.integers(0, 4095)), min_size=1, max_size=40))
def test_results_in_use_never_share_memory(steps):
    """Random requests and releases: every result in use owns its bytes (each holds a mark that no
    other result overwrites), and what waits plus what is in use adds up."""
    gc.collect()
    before = _recycled._live_bytes[0]
    live = []                            # (mark, array): the only references to the results
    for mark, (allocate, mebibytes, extra) in enumerate(steps):
        if allocate or not live:
            live.append((mark % 251, _recycled.empty(np, (mebibytes * MiB + extra,), np.uint8)))
            live[-1][1][...] = mark % 251
        else:
            live.pop(mark % len(live))
        assert all(result[0] == value and result[-1] == value and result[result.size // 2] == value
                   for value, result in live)
    in_use = sum(-(-result.nbytes // _recycled.ALIGN_BYTES) * _recycled.ALIGN_BYTES for _, result in live)
    assert _recycled._live_bytes[0] - before == in_use
    assert _recycled._held_bytes[0] == _recycled._live_bytes[0] + _recycled.recycled_bytes()
    del live
    gc.collect()
    assert _recycled._live_bytes[0] == before
