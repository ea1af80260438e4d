"""The whole GPU path without a GPU: device moves, dispatch, kernel launches, one training step.

The ``gpu_xp`` fixture installs a NumPy-backed stand-in for CuPy (tests/fake_cupy.py) whose
arrays tinynet's backend takes for GPU arrays; the kernels then launch their numba.cuda
kernels, which run under numba's CUDA simulator.  On a GPU machine
(TINYNET_TEST_REAL_GPU=1) the same tests run with real CuPy.
"""
import numpy as np
import pytest

import tinynet
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
    assert x.to("cuda").device == "gpu"


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tinynet.tensor([1.0]).to("tpu")


class TinyAlexNet(nn.Module):
    """Every AlexNet layer kind, at a size the CUDA simulator gets through in seconds."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.LocalResponseNorm(size=3, alpha=1e-2, beta=0.75, k=2.0),
            nn.Conv2d(4, 4, kernel_size=3, padding=1, groups=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 2))

    def forward(self, x):
        return self.classifier(self.features(x))


def _one_step(device):
    tinynet.manual_seed(0)
    model = TinyAlexNet().to(device)
    model.classifier[1].p = 0.0  # the CPU and GPU generators differ; compare without dropout noise
    optimizer = tinynet.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    images = tinynet.tensor(rng.standard_normal((2, 3, 9, 9)).astype(np.float32), device=device)
    labels = np.array([0, 1])
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss, model


def test_one_training_step_on_the_gpu_path_matches_the_cpu(gpu_xp):
    cpu_loss, cpu_model = _one_step("cpu")
    gpu_loss, gpu_model = _one_step("gpu")
    assert gpu_loss.device == "gpu"
    assert gpu_loss.item() == pytest.approx(cpu_loss.item(), rel=1e-5)
    for (name, a), (_, b) in zip(cpu_model.named_parameters(), gpu_model.named_parameters()):
        assert b.device == "gpu", name
        assert isinstance(b.grad.data, gpu_xp.ndarray), name
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_dropout_on_the_gpu_draws_from_the_gpu_generator(gpu_xp):
    tinynet.manual_seed(3)
    x = tinynet.tensor(np.ones((4, 50), dtype=np.float32), device="gpu", requires_grad=True)
    y = F.dropout(x, 0.5, training=True)
    assert y.device == "gpu"
    kept = y.numpy() != 0
    assert 0.2 < kept.mean() < 0.8
    np.testing.assert_allclose(y.numpy()[kept], 2.0)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.where(kept, 2.0, 0.0))
