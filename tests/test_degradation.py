"""examples/degradation.py: a tiny end-to-end run on synthetic IDX files, and its plot."""
import csv
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import degradation  # noqa: E402
from test_lenet_mnist import write_tiny_mnist  # noqa: E402


def test_tiny_run_trains_each_network_the_same_way(tmp_path, capsys):
    data = write_tiny_mnist(tmp_path / "mnist", train=30, test=20)
    out = tmp_path / "run"
    code = degradation.main(["--data", str(data), "--models", "plain20", "resnet20", "--train-size", "20",
                             "--test-size", "10", "--epochs", "2", "--batch-size", "10", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"plain20", "resnet20"}
    # the same stack with and without shortcuts: option-A shortcuts add no parameters
    assert results["models"]["plain20"]["parameters"] == results["models"]["resnet20"]["parameters"] == 269_434
    assert results["train_size"] == 20 and results["test_size"] == 10
    with open(out / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["model"], int(r["epoch"])) for r in rows] == [("plain20", 1), ("resnet20", 1), ("plain20", 2),
                                                             ("resnet20", 2)]
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
