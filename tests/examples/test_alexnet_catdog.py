"""AlexNet as the lecture notes give it, and the end-to-end training script on real photos."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

import tinynet

ROOT = Path(__file__).resolve().parents[2]
from tinynet.models.alexnet import AlexNet  # noqa: E402
import tinynet.train.images as alexnet_catdog  # the command examples/alexnet_catdog.py runs

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


# 36 photos (18 a class): per class 4 validation, 3 test, 11 training -> 22 training images, 3 batches of 8
QUICK = ["--max-images", "36", "--image-size", "67", "--batch-size", "8", "--workers", "2", "--val-fraction", "0.25",
         "--test-fraction", "0.15"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """One epoch of AlexNet on 36 real photos, with a test split (shared by the tests below)."""
    if not CATDOG.is_dir():
        pytest.skip(f"real Dogs-vs-Cats sample not found at {CATDOG}")
    out = tmp_path_factory.mktemp("real") / "run"
    assert alexnet_catdog.main(["--data", str(CATDOG), "--epochs", "1", "--out", str(out)] + QUICK) == 0
    return out


@needs_photos
def test_script_trains_and_reports_the_test_split_on_real_photos(real_run):
    with open(real_run / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val_accuracy"]) <= 1.0
    assert np.isfinite(float(rows[0]["train_loss"]))
    for name in ("last.npz", "best.npz", "curves.png", "results.json"):
        assert (real_run / name).is_file(), name
    with np.load(real_run / "last.npz", allow_pickle=False) as archive:  # pickle-free
        assert "model/features.conv1.weight" in archive.files
    results = json.loads((real_run / "results.json").read_text())
    assert results["headline"] == "test" and results["test"]["images"] == 6 and results["validation"]["images"] == 8
    low, high = results["test"]["centre_crop"]["ci95"]
    assert 0 <= low <= results["test"]["centre_crop"]["accuracy"] <= high <= 1


@needs_photos
def test_best_checkpoint_is_half_the_last_one(real_run):
    """best.npz: weights and configuration (58.3 M float32 numbers); last.npz adds the momentum buffers."""
    best, last = (real_run / "best.npz").stat().st_size, (real_run / "last.npz").stat().st_size
    weights = 58_289_538 * 4
    assert weights < best < weights * 1.01 and 2 * weights < last < 2 * weights * 1.01
    sizes = json.loads((real_run / "results.json").read_text())["checkpoint_megabytes"]
    assert sizes == {"best.npz": round(best / 1e6, 1), "last.npz": round(last / 1e6, 1)}


@needs_photos
def test_eval_only_and_predict_on_real_photos(real_run, capsys):
    best = str(real_run / "best.npz")
    assert alexnet_catdog.main(["--eval-only", "--checkpoint", best]) == 0  # the checkpoint's own folder and split
    printed = capsys.readouterr().out
    for line in ("centre crop: validation accuracy", "ten crop: validation accuracy", "centre crop: test accuracy",
                 "ten crop: test accuracy"):
        assert line in printed
    assert "on 6 images" in printed and "95% Wilson CI" in printed

    photo = CATDOG / "cat.1.jpg"
    assert alexnet_catdog.main(["--predict", str(photo), "--checkpoint", best]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    probabilities = [float(part.split()[-1]) for part in line.split(": ", 1)[1].split(", ")]
    assert "cat" in line and "dog" in line and sum(probabilities) == pytest.approx(1.0, abs=2e-3)


@needs_photos
def test_resume_with_another_image_size_is_refused_on_real_photos(real_run, capsys):
    before = (real_run / "last.npz").stat().st_mtime_ns
    code = alexnet_catdog.main(["--data", str(CATDOG), "--epochs", "2", "--out", str(real_run), "--resume"]
                               + QUICK[:2] + ["--image-size", "128"] + QUICK[4:])
    assert code == 2
    assert "--image-size 128 differs from the checkpoint's image_size = 67" in capsys.readouterr().err
    assert (real_run / "last.npz").stat().st_mtime_ns == before


@needs_photos
def test_too_few_real_photos_for_a_validation_image_per_class(tmp_path, capsys):
    assert alexnet_catdog.main(["--data", str(CATDOG), "--max-images", "3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "the validation split would have no image of class 'cat', 'dog': found 3 photos" in err
    assert "(--max-images 3)" in err and not (tmp_path / "best.npz").exists()


@needs_photos
def test_real_photos_of_one_class_are_refused(tmp_path, capsys):
    cats = tmp_path / "cats"
    cats.mkdir()
    for number in range(1, 6):
        (cats / f"cat.{number}.jpg").symlink_to(CATDOG / f"cat.{number}.jpg")
    assert alexnet_catdog.main(["--data", str(cats), "--out", str(tmp_path / "run")]) == 2
    assert "found photos of one class only (cat: 5)" in capsys.readouterr().err


@needs_photos
def test_alexnet_crop_too_small_names_the_size_computed_from_the_model(tmp_path, capsys):
    code = alexnet_catdog.main(["--data", str(CATDOG), "--out", str(tmp_path), "--max-images", "20",
                                "--image-size", "16"])
    assert code == 2
    assert "argument --image-size: 16 px is too small: alexnet accepts crops of at least 67 px" in \
        capsys.readouterr().err


@needs_photos
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflows that make the loss NaN
def test_lr_50_stops_at_the_first_non_finite_loss_on_real_photos(tmp_path, capsys):
    code = alexnet_catdog.main(["--data", str(CATDOG), "--out", str(tmp_path), "--lr", "50", "--epochs", "3",
                                "--no-ten-crop"] + QUICK)
    err = capsys.readouterr().err
    assert code == 1
    assert "stopped: epoch 1, batch" in err and "the training loss is nan" in err and "learning rate" in err
    assert not (tmp_path / "last.npz").exists() and not (tmp_path / "best.npz").exists()


def test_missing_data_is_a_clear_message_and_exit_code_2(tmp_path, capsys):
    code = alexnet_catdog.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert code == 2
    message = capsys.readouterr().err
    assert "No training images found" in message and "train.zip" in message and "--data" in message


def test_empty_folder_is_a_clear_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert alexnet_catdog.main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    assert "train.zip" in capsys.readouterr().err
