"""AlexNet as the lecture notes give it, and the end-to-end training script on real photos."""
import csv
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import tinynet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from alexnet import AlexNet  # noqa: E402
import alexnet_catdog  # noqa: E402

CATDOG = ROOT.parent / "shared" / "data" / "catdog" / "train"
needs_photos = pytest.mark.skipif(not CATDOG.is_dir(), reason=f"real Dogs-vs-Cats sample not found at {CATDOG}")


@pytest.mark.parametrize("kwargs, expected", [
    (dict(num_classes=1000), 62_378_344),
    (dict(num_classes=2), 58_289_538),
    (dict(num_classes=1000, groups=2), 60_965_224),
])
def test_parameter_counts_match_the_notes(kwargs, expected):
    assert AlexNet(**kwargs).num_parameters() == expected


def test_paper_initialisation():
    tinynet.manual_seed(0)
    model = AlexNet(num_classes=2, init="paper")
    layers = dict(list(model.features.named_children()) + list(model.classifier.named_children()))
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        weight = layers[name].weight.numpy()
        assert weight.std() == pytest.approx(0.01, rel=0.05), name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        np.testing.assert_array_equal(layers[name].bias.numpy(), expected_bias, err_msg=name)


def test_output_shapes_at_227_and_the_smallest_input():
    model = AlexNet(num_classes=2).eval()
    with tinynet.no_grad():
        assert model(tinynet.tensor(np.zeros((1, 3, 227, 227), np.float32))).shape == (1, 2)
        features = model.features(tinynet.tensor(np.zeros((1, 3, 227, 227), np.float32)))
        assert features.shape == (1, 256, 6, 6)
        assert model(tinynet.tensor(np.zeros((2, 3, 67, 67), np.float32))).shape == (2, 2)
        with pytest.raises(ValueError, match="max_pool2d"):
            model(tinynet.tensor(np.zeros((1, 3, 66, 66), np.float32)))


def test_groups_two_splits_the_convolutions():
    model = AlexNet(groups=2)
    layers = dict(model.features.named_children())
    assert [layers[n].groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    assert layers["conv2"].weight.shape == (256, 48, 5, 5)


def _read_metrics(folder):
    with open(folder / "metrics.csv") as stream:
        return list(csv.DictReader(stream))


QUICK = ["--max-images", "36", "--image-size", "67", "--batch-size", "8", "--workers", "2", "--val-fraction", "0.25"]


@needs_photos
def test_script_trains_evaluates_and_predicts_on_real_photos(tmp_path, capsys):
    out = tmp_path / "run"
    assert alexnet_catdog.main(["--data", str(CATDOG), "--epochs", "1", "--out", str(out)] + QUICK) == 0
    rows = _read_metrics(out)
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val_accuracy"]) <= 1.0
    assert np.isfinite(float(rows[0]["train_loss"]))
    for name in ("last.npz", "best.npz", "curves.png", "results.json"):
        assert (out / name).is_file(), name
    with np.load(out / "last.npz", allow_pickle=False) as archive:  # pickle-free
        assert "model/features.conv1.weight" in archive.files

    assert alexnet_catdog.main(["--data", str(CATDOG), "--eval-only", "--checkpoint", str(out / "best.npz")]
                               + QUICK) == 0
    printed = capsys.readouterr().out
    assert "centre crop: validation accuracy" in printed and "ten crop: validation accuracy" in printed

    photo = CATDOG / "cat.1.jpg"
    assert alexnet_catdog.main(["--predict", str(photo), "--checkpoint", str(out / "best.npz")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    probabilities = [float(part.split()[-1]) for part in line.split(": ", 1)[1].split(", ")]
    assert "cat" in line and "dog" in line and sum(probabilities) == pytest.approx(1.0, abs=2e-3)


@needs_photos
def test_resume_continues_exactly_at_an_epoch_boundary_and_mid_epoch(tmp_path, monkeypatch):
    arguments = ["--data", str(CATDOG), "--epochs", "2", "--no-ten-crop"] + QUICK
    straight = tmp_path / "straight"
    assert alexnet_catdog.main(arguments + ["--out", str(straight)]) == 0

    # stop after epoch 1, then resume
    split = tmp_path / "split"
    assert alexnet_catdog.main(arguments[:2] + ["--epochs", "1"] + arguments[4:] + ["--out", str(split)]) == 0
    assert alexnet_catdog.main(arguments + ["--out", str(split), "--resume"]) == 0

    # Ctrl-C in the middle of epoch 2 (after its 2nd step), then resume
    interrupted = tmp_path / "interrupted"
    steps = []
    real_step = tinynet.optim.SGD.step

    def step_then_interrupt(self):
        real_step(self)
        steps.append(1)
        if len(steps) == 6:  # 27 training images in batches of 8: 4 steps per epoch
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(tinynet.optim.SGD, "step", step_then_interrupt)
    assert alexnet_catdog.main(arguments + ["--out", str(interrupted)]) == 130
    monkeypatch.setattr(tinynet.optim.SGD, "step", real_step)
    assert alexnet_catdog.main(arguments + ["--out", str(interrupted), "--resume"]) == 0

    expected = _read_metrics(straight)
    for folder in (split, interrupted):
        rows = _read_metrics(folder)
        assert [r["epoch"] for r in rows] == ["1", "2"]
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert [r[key] for r in rows] == [r[key] for r in expected], (folder.name, key)
    a, b = tinynet.load(straight / "last.npz"), tinynet.load(interrupted / "last.npz")
    for name, array in a["model"].items():
        np.testing.assert_array_equal(array, b["model"][name], err_msg=name)


def test_missing_data_is_a_clear_message_and_exit_code_2(tmp_path, capsys):
    code = alexnet_catdog.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert code == 2
    message = capsys.readouterr().err
    assert "No training images found" in message and "train.zip" in message and "--data" in message


def test_empty_folder_is_a_clear_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert alexnet_catdog.main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    assert "train.zip" in capsys.readouterr().err
