"""Modules: registration, modes, state dicts (with their errors), initialisers."""
import numpy as np
import pytest

import tinynet
from tinynet import nn


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 3)
        self.body = nn.Sequential(nn.ReLU(), nn.Dropout(0.5), nn.Linear(3, 2, bias=False))

    def forward(self, x):
        return self.body(self.hidden(x))


def test_parameters_are_registered_by_attribute():
    model = TwoLayer()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["hidden.weight", "hidden.bias", "body.2.weight"]
    assert model.num_parameters() == 4 * 3 + 3 + 3 * 2


def test_train_and_eval_reach_every_submodule():
    model = TwoLayer().eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_state_dict_round_trip_and_errors():
    tinynet.manual_seed(1)
    source, target = TwoLayer(), TwoLayer()
    target.load_state_dict({k: v.copy() for k, v in source.state_dict().items()})
    for (name, a), (_, b) in zip(source.named_parameters(), target.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)

    state = dict(source.state_dict())
    del state["hidden.bias"]
    with pytest.raises(ValueError, match="missing keys: hidden.bias"):
        target.load_state_dict(state)
    state = dict(source.state_dict(), extra=np.zeros(1))
    with pytest.raises(ValueError, match="unexpected keys: extra"):
        target.load_state_dict(state)
    state = dict(source.state_dict())
    state["hidden.weight"] = np.zeros((2, 2))
    before = target.hidden.weight.numpy().copy()
    with pytest.raises(ValueError, match=r"hidden.weight: expected shape \(3, 4\), got \(2, 2\)"):
        target.load_state_dict(state)
    np.testing.assert_array_equal(target.hidden.weight.numpy(), before)  # nothing half-loaded


def test_state_dict_from_torch_maps_one_to_one():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    reference = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model.load_state_dict(reference.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(model(tinynet.tensor(x)).numpy(),
                               reference(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_linear_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match=r"4 features.*\(2, 5\)"):
        nn.Linear(4, 3)(tinynet.tensor(np.ones((2, 5), dtype=np.float32)))


def test_initialisers_have_the_stated_statistics():
    tinynet.manual_seed(0)
    weight = nn.Parameter(np.zeros((256, 512), dtype=np.float32))
    nn.init.kaiming_normal_(weight)
    assert weight.numpy().std() == pytest.approx(np.sqrt(2 / 512), rel=0.02)
    nn.init.xavier_uniform_(weight)
    assert weight.numpy().std() == pytest.approx(np.sqrt(2 / (256 + 512)), rel=0.02)
    nn.init.normal_(weight, 0.0, 0.01)  # the AlexNet paper's initialisation
    assert weight.numpy().std() == pytest.approx(0.01, rel=0.02)
    assert abs(weight.numpy().mean()) < 1e-3


def test_forward_hook_sees_output_and_can_be_removed():
    seen = []
    layer = nn.ReLU()
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    layer(tinynet.tensor(np.ones((2, 3))))
    handle.remove()
    layer(tinynet.tensor(np.ones((2, 3))))
    assert seen == [(2, 3)]


def test_module_repr_lists_layers():
    text = repr(TwoLayer())
    assert "(hidden): Linear(in_features=4, out_features=3, bias=True)" in text
