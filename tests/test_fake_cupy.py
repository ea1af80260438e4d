"""The CuPy stand-in is as strict as CuPy where a lenient one would hide GPU-only bugs.

Each test states a rule of real CuPy; a stand-in that breaks it (as the earlier NumPy-subclass
one did) fails here.  With TINYNET_TEST_REAL_GPU=1 the same rules are checked against CuPy.
"""
import numpy as np
import pytest
from numba import cuda

import tinynet
from conftest import REAL_GPU


def test_mixing_host_and_device_arrays_is_a_type_error(gpu_xp):
    device, host = gpu_xp.ones(3, dtype=np.float32), np.ones(3, dtype=np.float32)
    for mix in (lambda: device + host, lambda: host + device, lambda: device * host,
                lambda: host - device, lambda: gpu_xp.add(device, host), lambda: np.add(host, device),
                lambda: gpu_xp.matmul(device, host), lambda: gpu_xp.multiply(device, 2, out=host)):
        with pytest.raises(TypeError):
            mix()
    assert float((device + 1.5).sum()) == 7.5  # host *scalars* are fine
    assert float((device * np.float32(2)).sum()) == 6.0


def test_host_arrays_are_refused_as_any_argument_or_keyword_of_any_call(gpu_xp):
    """Not only operands of operators and ufuncs: CuPy's methods and functions take device arrays
    in every argument and keyword, and a host array anywhere is an error there."""
    device = gpu_xp.asarray(np.arange(6.0, dtype=np.float32).reshape(2, 3))
    host, host_mask = np.ones((2, 3), np.float32), np.ones((2, 3), bool)
    device_mask = gpu_xp.asarray(host_mask)
    refused = {
        "method positional": lambda: device.clip(np.zeros(3, np.float32), np.ones(3, np.float32)),
        "method keyword": lambda: device.sum(where=host_mask),
        "method keyword of a reduction": lambda: device.max(axis=0, initial=0.0, where=host_mask),
        "ufunc keyword": lambda: gpu_xp.add(device, 1, where=host_mask),
        "ufunc keyword, NumPy's side": lambda: np.add(device, 1, where=host_mask),
        "function positional": lambda: gpu_xp.where(host_mask, device, 0.0),
        "function, second array": lambda: gpu_xp.where(device_mask, device, host),
        "function keyword": lambda: gpu_xp.sum(device, where=host_mask),
        "function, in a list": lambda: gpu_xp.concatenate([device, host]),
        "function, in a tuple": lambda: gpu_xp.stack((device, host)),
        "tensordot": lambda: gpu_xp.tensordot(device, host.T, axes=1),
        "broadcast_to": lambda: gpu_xp.broadcast_to(host, (2, 2, 3)),
        "setitem value": lambda: device.__setitem__(0, np.zeros(3, np.float32)),
    }
    accepted = []
    for what, call in refused.items():
        try:
            call()
        except Exception:    # CuPy's errors differ by call (TypeError mostly, ValueError in setitem)
            continue
        accepted.append(what)
    assert not accepted, f"host arrays accepted: {accepted}"
    # the same calls with device arrays, scalars and plain values are fine
    assert device.clip(gpu_xp.zeros(3, np.float32), gpu_xp.full(3, 2.0, np.float32)).get().max() == 2.0
    assert float(device.clip(1, 4).sum()) == 1 + 1 + 2 + 3 + 4 + 4
    assert float(gpu_xp.where(device_mask, device, 0.0).sum()) == 15.0
    assert gpu_xp.concatenate([device, device], axis=0).shape == (4, 3)
    # integer indices are the exception, as in CuPy, which copies them to the device
    np.testing.assert_array_equal(device[np.array([1, 0])].get(), device.get()[[1, 0]])
    np.testing.assert_array_equal(device.take(np.array([5, 0])).get(), [5.0, 0.0])
    np.testing.assert_array_equal(gpu_xp.take(device, np.array([1]), axis=0).get(), [[3.0, 4.0, 5.0]])


def test_implicit_conversion_to_numpy_raises(gpu_xp):
    device = gpu_xp.arange(4)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(device)
    with pytest.raises(TypeError):
        np.array(device, dtype=np.float64)
    np.testing.assert_array_equal(device.get(), [0, 1, 2, 3])
    np.testing.assert_array_equal(gpu_xp.asnumpy(device), [0, 1, 2, 3])


def test_asarray_copies_host_data_to_the_device(gpu_xp):
    host = np.zeros(3, dtype=np.float32)
    device = gpu_xp.asarray(host)
    host[0] = 5.0
    assert device.get()[0] == 0.0  # a copy, not a view of host memory
    device[1] = 7.0
    assert host[1] == 0.0


def test_integer_indexing_gives_a_zero_dimensional_device_array(gpu_xp):
    device = gpu_xp.asarray(np.arange(6.0).reshape(2, 3))
    element = device[1, 2]
    assert isinstance(element, gpu_xp.ndarray) and element.shape == ()
    assert isinstance(device.sum(), gpu_xp.ndarray)  # reductions too
    assert float(element) == 5.0 and element.item() == 5.0


def test_add_at_accumulates_repeated_indices(gpu_xp):
    target = gpu_xp.zeros(4, dtype=np.float64)
    gpu_xp.add.at(target, gpu_xp.asarray(np.array([0, 2, 2, 2])), gpu_xp.asarray(np.ones(4)))
    np.testing.assert_array_equal(target.get(), [1.0, 0.0, 3.0, 0.0])


def test_indexing_backward_scatters_on_the_gpu(gpu_xp):
    """The Index op's backward uses ``add.at``; with a stand-in without it, this raised AttributeError."""
    x = tinynet.tensor(np.arange(5.0), device="gpu", requires_grad=True)
    x[np.array([1, 1, 3])].sum().backward()
    assert x.grad.device == "gpu"
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 2.0, 0.0, 1.0, 0.0])


@pytest.mark.skipif(REAL_GPU, reason="only the stand-in can be asked for what it lacks")
def test_the_stand_in_offers_only_what_tinynet_uses(gpu_xp):
    with pytest.raises(AttributeError, match="does not offer 'fft'"):
        gpu_xp.fft
    with pytest.raises(TypeError, match="takes a dtype"):
        gpu_xp.zeros(2).view(np.ndarray)


@pytest.mark.skipif(REAL_GPU, reason="real CuPy may allow it through peer access")
def test_arrays_of_different_devices_do_not_mix(gpu_xp):
    import fake_cupy
    with fake_cupy.devices(2):
        on_zero = gpu_xp.ones(2)
        with gpu_xp.cuda.Device(1):
            on_one = gpu_xp.ones(2)
            assert on_one.device.id == 1
            with pytest.raises(ValueError, match="device"):
                on_zero + on_one


# ----------------------------------------------------------------- write races in the simulator
@cuda.jit
def scatter_without_atomics(out, index, values):
    i = cuda.grid(1)
    if i < index.size:
        out[index[i]] += values[i]


@cuda.jit
def scatter_with_atomics(out, index, values):
    i = cuda.grid(1)
    if i < index.size:
        cuda.atomic.add(out, index[i], values[i])


@pytest.mark.skipif(REAL_GPU, reason="checks the simulator bridge")
def test_the_simulator_fails_non_atomic_writes_of_one_element_by_two_threads(gpu_xp):
    """On a GPU, ``out[j] += v`` from two threads loses updates; the simulator (threads one after
    another) would sum correctly, so the bridge fails the launch instead.  With cuda.atomic.add
    the same scatter passes and sums correctly."""
    import fake_cupy
    index = gpu_xp.asarray(np.array([0, 1, 1, 3], dtype=np.int64))
    values = gpu_xp.asarray(np.ones(4))
    out = gpu_xp.zeros(4)
    scatter_with_atomics[1, 32](out, index, values)
    np.testing.assert_array_equal(out.get(), [1.0, 2.0, 0.0, 1.0])
    with pytest.raises(fake_cupy.WriteRace, match=r"scatter_without_atomics.*element 1 written by threads"):
        scatter_without_atomics[1, 32](gpu_xp.zeros(4), index, values)
    scatter_without_atomics[1, 32](gpu_xp.zeros(4), gpu_xp.asarray(np.arange(4)), values)  # no repeats: fine
