"""The whole GPU path without a GPU: device moves and indices, dispatch, kernel launches, the GPU
generator, and several AlexNet training steps against the CPU path.

The ``gpu_xp`` fixture installs the strict CuPy stand-in (tests/fake_cupy.py) whose arrays
tinynet's backend takes for GPU arrays; the kernels then launch their numba.cuda kernels, which
run under numba's CUDA simulator.  On a GPU machine (TINYNET_TEST_REAL_GPU=1) the same tests run
with real CuPy.  Every comparison here is against something computed independently of the GPU
code under test: the CPU path, or a second generator of the GPU module seeded by hand.
"""
import numpy as np
import pytest

import tinynet
from conftest import REAL_GPU
from tinynet import backend, nn
from tinynet.nn import functional as F


def test_gpu_available_reports_the_stand_in(gpu_xp):
    assert tinynet.gpu_available()


def test_device_moves_round_trip(gpu_xp):
    x = tinynet.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    on_gpu = x.to("gpu")
    assert on_gpu.device == "gpu" and isinstance(on_gpu.data, gpu_xp.ndarray)
    assert backend.get_array_module(on_gpu.data) is gpu_xp
    back = on_gpu.to("cpu")
    assert back.device == "cpu" and type(back.data) is np.ndarray
    np.testing.assert_array_equal(back.numpy(), x.numpy())
    assert x.to("cuda").device == "gpu" and x.to("cuda:0").device == "gpu"


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tinynet.tensor([1.0]).to("tpu")
    for bad in ("gpu:x", "cpu:1", "cuda:-1"):
        with pytest.raises(ValueError, match="unknown device"):
            backend.normalize_device(bad)


# ----------------------------------------------------------------- devices with an index
def test_device_names_keep_the_index():
    assert backend.normalize_device("cuda:1") == "gpu:1"
    assert backend.normalize_device("GPU:3") == "gpu:3"
    assert backend.normalize_device("gpu:0") == "gpu" == backend.normalize_device("cuda")
    assert backend.device_index("gpu:2") == 2 and backend.device_index("gpu") == 0
    assert backend.device_index("cpu") is None


@pytest.fixture
def two_gpus(gpu_xp):
    """The stand-in with two devices (on a real machine: skip unless it has two)."""
    if REAL_GPU:
        if gpu_xp.cuda.runtime.getDeviceCount() < 2:
            pytest.skip("needs two GPUs")
        yield gpu_xp
        return
    import fake_cupy
    with fake_cupy.devices(2):
        yield gpu_xp


def test_to_gpu_1_puts_the_data_on_cupy_device_1(two_gpus):
    x = tinynet.tensor(np.arange(4, dtype=np.float32))
    on_one = x.to("cuda:1")
    assert on_one.device == "gpu:1" and on_one.data.device.id == 1
    on_zero = on_one.to("gpu")  # GPU to GPU
    assert on_zero.device == "gpu" and on_zero.data.device.id == 0
    assert tinynet.tensor([1.0], device="gpu:1").data.device.id == 1
    np.testing.assert_array_equal(on_zero.to("gpu:1").numpy(), x.numpy())
    np.testing.assert_array_equal(on_one.numpy(), x.numpy())
    assert on_one.to("gpu:1") is on_one or on_one.to("gpu:1").data is on_one.data  # no copy


def test_a_gpu_that_does_not_exist_is_a_clear_error(two_gpus):
    with pytest.raises(ValueError, match=r"'gpu:2' does not exist: this machine has 2 GPUs \(gpu:0, gpu:1\)"):
        tinynet.tensor([1.0]).to("cuda:2")


def test_each_gpu_has_its_own_seeded_generator(two_gpus):
    tinynet.manual_seed(5)
    zero, one = backend.generator("gpu"), backend.generator("gpu:1")
    assert zero is backend.generator("cuda:0") and zero is not one
    assert (zero.seed, one.seed) == (6, 7)
    assert one.uniform((3,)).device.id == 1


# ----------------------------------------------------------------- the GPU generator
def test_the_gpu_generator_is_seeded_by_manual_seed(gpu_xp):
    """manual_seed(s) seeds GPU 0 with s + 1: a second RandomState of the GPU module seeded so by
    hand draws the same numbers (an unseeded or differently seeded generator would not)."""
    tinynet.manual_seed(11)
    ours = backend.generator("gpu").uniform((5, 7), dtype=np.float64)
    reference = gpu_xp.random.RandomState(12).random_sample((5, 7))
    np.testing.assert_array_equal(gpu_xp.asnumpy(ours), gpu_xp.asnumpy(reference))


def test_the_gpu_generator_state_saves_and_restores(gpu_xp, tmp_path):
    tinynet.manual_seed(2)
    gpu = backend.generator("gpu")
    gpu.uniform((3, 4))
    gpu.uniform((3, 4))
    gpu.normal((2,))
    gpu.permutation(6)
    gpu.integers(0, 9, (2, 2))
    tinynet.save({"generator": gpu.get_state()}, tmp_path / "state.npz")  # through a checkpoint
    after = [gpu.uniform((3, 4)), gpu.normal((5,)), gpu.permutation(4), gpu.integers(0, 9, 3)]

    tinynet.manual_seed(99)  # a different stream, so that restoring has to do the work
    restored = backend.generator("gpu")
    restored.set_state(tinynet.load(tmp_path / "state.npz")["generator"])
    again = [restored.uniform((3, 4)), restored.normal((5,)), restored.permutation(4),
             restored.integers(0, 9, 3)]
    for first, second in zip(after, again):
        assert isinstance(second, gpu_xp.ndarray)
        np.testing.assert_array_equal(gpu_xp.asnumpy(second), gpu_xp.asnumpy(first))
    with pytest.raises(ValueError, match="GPU generator state"):
        restored.set_state(backend.generator("cpu").get_state())


def test_dropout_on_the_gpu_draws_from_the_gpu_generator(gpu_xp):
    """The mask must be the GPU generator's next draw (>= p keeps), not the CPU generator's."""
    tinynet.manual_seed(3)
    cpu_state = backend.generator("cpu").get_state()
    x = tinynet.tensor(np.ones((4, 50), dtype=np.float32), device="gpu", requires_grad=True)
    y = F.dropout(x, 0.5, training=True)
    assert y.device == "gpu"
    uniform = gpu_xp.asnumpy(gpu_xp.random.RandomState(3 + 1).random_sample((4, 50))).astype(np.float32)
    expected_kept = uniform >= 0.5
    np.testing.assert_array_equal(y.numpy() != 0, expected_kept)
    np.testing.assert_array_equal(y.numpy()[expected_kept], 2.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.where(expected_kept, 2.0, 0.0))
    assert backend.generator("cpu").get_state() == cpu_state  # the CPU stream was not touched


# ----------------------------------------------------------------- AlexNet, several steps
class TinyAlexNet(nn.Module):
    """AlexNet's layer kinds in AlexNet's order (conv, ReLU, LRN, max-pool, grouped conv, adaptive
    average pool, dropout before each hidden fully connected layer), at a size the CUDA simulator
    gets through in seconds."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.LocalResponseNorm(size=3, alpha=1e-2, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(4, 6, kernel_size=3, padding=1, groups=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=1, ceil_mode=True),
            nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(24, 10), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(10, 3))

    def forward(self, x):
        return self.classifier(self.features(x))


class _GPUStreamOnTheHost:
    """Stands in for the CPU generator in the CPU run: its uniforms are the GPU generator's stream,
    drawn from a second RandomState of the GPU module seeded as manual_seed seeds GPU 0."""

    def __init__(self, xp, seed):
        self.xp, self.stream = xp, xp.random.RandomState(seed + 1)

    def uniform(self, shape, dtype=np.float32):
        return self.xp.asnumpy(self.stream.random_sample(shape)).astype(dtype)


def _train(device, steps, seed, monkeypatch=None, xp=None):
    tinynet.manual_seed(seed)
    model = TinyAlexNet().to(device)
    if monkeypatch is not None:  # the CPU run drops the same units as the GPU run
        monkeypatch.setitem(backend._generators, "cpu", _GPUStreamOnTheHost(xp, seed))
    optimizer = tinynet.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        images = tinynet.tensor(rng.standard_normal((4, 3, 11, 11)).astype(np.float32), device=device)
        labels = rng.integers(0, 3, 4)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert loss.device == device
        losses.append(loss.item())
    return losses, model, optimizer


def test_alexnet_training_steps_with_dropout_and_momentum_match_the_cpu(gpu_xp, monkeypatch):
    """Three SGD steps with momentum and weight decay, both dropouts active: losses, weights and
    momentum buffers of the GPU run equal the CPU run's (whose dropout masks come from the GPU
    generator's stream) to float32 rounding."""
    steps, seed = 3, 4
    gpu_losses, gpu_model, gpu_optimizer = _train("gpu", steps, seed)
    cpu_losses, cpu_model, cpu_optimizer = _train("cpu", steps, seed, monkeypatch, gpu_xp)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-5)
    assert len(set(np.round(cpu_losses, 4))) == steps  # the steps changed something
    for (name, a), (_, b) in zip(cpu_model.named_parameters(), gpu_model.named_parameters()):
        assert b.device == "gpu" and isinstance(b.grad.data, gpu_xp.ndarray), name
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    cpu_buffers = [np.asarray(v) for v in _momentum_buffers(cpu_optimizer)]
    gpu_buffers = [gpu_xp.asnumpy(v) for v in _momentum_buffers(gpu_optimizer)]
    assert len(cpu_buffers) == len(gpu_buffers) == len(list(cpu_model.parameters()))
    for a, b in zip(cpu_buffers, gpu_buffers):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def _momentum_buffers(optimizer):
    state = optimizer.state_dict()["state"]
    buffers = []
    for key in sorted(state, key=int):
        buffers.extend(v for k, v in state[key].items() if "momentum" in k)
    return buffers


@pytest.mark.real_gpu
def test_one_alexnet_step_at_batch_128_on_a_real_gpu(gpu_xp):
    """The real AlexNet (227 px, batch 128, dropout, momentum) takes one SGD step on the GPU:
    finite loss near ln 2 for two fresh classes, every parameter updated on the GPU.  Runs only
    with TINYNET_TEST_REAL_GPU=1 (pip install -e ".[gpu]")."""
    from tinynet.models.alexnet import AlexNet
    tinynet.manual_seed(0)
    model = AlexNet(num_classes=2).to("gpu")
    before = {name: p.numpy().copy() for name, p in model.named_parameters()}
    optimizer = tinynet.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    images = tinynet.tensor(rng.standard_normal((128, 3, 227, 227)).astype(np.float32), device="gpu")
    labels = rng.integers(0, 2, 128)
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    backend.synchronize("gpu")
    assert loss.device == "gpu" and np.isfinite(loss.item()) and abs(loss.item() - np.log(2)) < 0.5
    for name, p in model.named_parameters():
        assert p.device == "gpu", name
        after = p.numpy()
        assert np.all(np.isfinite(after)) and not np.array_equal(after, before[name]), name


@pytest.mark.parametrize("optimizer_name, settings", [
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=5e-4)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_steps_on_the_gpu_match_torch(gpu_xp, optimizer_name, settings, dtype):
    """Six steps of the GPU path's update (the fused SGD kernel's GPU branch, Adam's array calls)
    against PyTorch's optimizers on the same numbers."""
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((4, 3)).astype(dtype)
    gradients = [rng.standard_normal((4, 3)).astype(dtype) for _ in range(6)]
    parameter = nn.Parameter(weights.copy())
    parameter.data = backend.to_device(parameter.data, "gpu")
    ours = getattr(tinynet.optim, optimizer_name)([parameter], **settings)
    reference = torch.nn.Parameter(torch.tensor(weights.copy()))
    theirs = getattr(torch.optim, optimizer_name)([reference], **settings)
    for g in gradients:
        parameter.grad = tinynet.tensor(g, device="gpu")
        ours.step()
        reference.grad = torch.tensor(g)
        theirs.step()
    assert parameter.device == "gpu" and parameter.dtype == dtype
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(parameter.numpy(), reference.detach().numpy(), **tolerance)
