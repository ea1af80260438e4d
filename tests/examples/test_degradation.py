"""examples/degradation.py: a tiny end-to-end run on synthetic IDX files, and its plot."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
from scripts import load_script

degradation = load_script("degradation")
from test_lenet_mnist import write_tiny_mnist  # noqa: E402


def test_tiny_run_trains_each_network_the_same_way(tmp_path, capsys, monkeypatch):
    """Both networks are built by their own names, from the run's seed, and stepped with the same
    learning rates: watched through the registry's create and SGD's step, which the script uses."""
    import tinynet
    from tinynet import optim

    built, stepped = [], {}
    create, step = degradation.models.create, optim.SGD.step

    def watched_create(name, *args, **kwargs):
        model = create(name, *args, **kwargs)
        built.append((name, args, kwargs, model))
        return model

    def watched_step(self):
        group = self.param_groups[0]
        if id(self) not in stepped:    # before the first update: every weight as initialised
            stepped[id(self)] = {"params": [p for g in self.param_groups for p in g["params"]], "lrs": [],
                                 "initial": [p.numpy().copy() for g in self.param_groups for p in g["params"]]}
        stepped[id(self)]["lrs"].append((group["lr"], group["momentum"], group["weight_decay"]))
        return step(self)

    monkeypatch.setattr(degradation.models, "create", watched_create)
    monkeypatch.setattr(optim.SGD, "step", watched_step)
    data = write_tiny_mnist(tmp_path / "mnist", train=30, test=20)
    out = tmp_path / "run"
    code = degradation.main(["--data", str(data), "--models", "plain20", "resnet20", "--train-size", "10",
                             "--test-size", "10", "--epochs", "2", "--batch-size", "10", "--lr", "0.1",
                             "--out", str(out)])
    assert code == 0

    # each name built as itself, with the same arguments
    assert [(name, args, kwargs) for name, args, kwargs, _ in built] == \
        [("plain20", (), {"num_classes": 10, "in_channels": 1}), ("resnet20", (), {"num_classes": 10, "in_channels": 1})]
    plain, resnet = (model for *_, model in built)
    # the same stack (the same parameters, below), with shortcuts in every block of one and in none of the other
    assert {m.residual for m in plain.modules() if hasattr(m, "residual")} == {False}
    assert {m.residual for m in resnet.modules() if hasattr(m, "residual")} == {True}
    # each network stepped by one optimizer: the same rates, momentum and weight decay at every step
    by_model = {}
    for record in stepped.values():
        owner = [m for m in (plain, resnet) if [id(p) for p in m.parameters()] == [id(p) for p in record["params"]]]
        assert len(owner) == 1
        by_model[id(owner[0])] = record
    assert sorted(by_model) == sorted([id(plain), id(resnet)])
    plain_run, resnet_run = by_model[id(plain)], by_model[id(resnet)]
    assert plain_run["lrs"] == resnet_run["lrs"] and len(plain_run["lrs"]) == 2     # one step per epoch
    assert plain_run["lrs"][0] == (0.1, 0.9, 1e-4)
    # the same seed: the same initial weights, the classifier's default initialisation (drawn lazily by
    # tinynet.nn.init) included
    names = [name for name, _ in plain.named_parameters()]
    assert names == [name for name, _ in resnet.named_parameters()]
    for name, before_plain, before_resnet in zip(names, plain_run["initial"], resnet_run["initial"]):
        np.testing.assert_array_equal(before_plain, before_resnet, err_msg=name)

    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"plain20", "resnet20"}
    # the same stack with and without shortcuts: option-A shortcuts add no parameters
    assert results["models"]["plain20"]["parameters"] == results["models"]["resnet20"]["parameters"] == 269_434
    assert results["train_size"] == 10 and results["test_size"] == 10
    with open(out / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["model"], int(r["epoch"])) for r in rows] == [("plain20", 1), ("resnet20", 1), ("plain20", 2),
                                                             ("resnet20", 2)]
    assert [float(r["lr"]) for r in rows[::2]] == pytest.approx([lr for lr, _, _ in plain_run["lrs"]])
    assert all(0.0 <= float(r[k]) <= 1.0 for r in rows for k in ("train_error", "test_error"))
    assert (out / "degradation.png").stat().st_size > 0
    assert "final training error" in capsys.readouterr().out


def test_plot_has_both_families(tmp_path):
    history = {name: [{"epoch": e, "train_error": 0.5 / e, "test_error": 0.4 / e} for e in (1, 2, 3)]
               for name in degradation.DEFAULT_MODELS}
    assert degradation.draw(tmp_path / "d.png", history, "test")
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_model_and_missing_data_exit_with_code_2(tmp_path, capsys):
    assert degradation.main(["--data", str(tmp_path), "--models", "plain21", "--out", str(tmp_path / "o")]) == 2
    assert "unknown model(s) ['plain21']" in capsys.readouterr().err
    assert degradation.main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no MNIST file" in capsys.readouterr().err


def test_defaults_are_the_four_networks_of_figure_1():
    args = degradation.parse_arguments([])
    assert args.models == ["plain20", "plain56", "resnet20", "resnet56"]
    assert (args.lr, args.momentum, args.weight_decay) == (0.1, 0.9, 1e-4)
    with pytest.raises(SystemExit):
        degradation.parse_arguments(["--epochs", "0"])
