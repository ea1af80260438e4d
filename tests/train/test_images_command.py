"""examples/alexnet_catdog.py as a user meets it: exact resume, checked flags, divergence, the test split.

These tests run the real script (``main(argv)``) end to end on synthetic JPEGs written
into ``tmp_path`` and with a tiny network in place of AlexNet (registered in the
script's model table), so each run takes a fraction of a second and none needs
``../shared``.  The tests that need AlexNet or the real photos live in
``test_alexnet_catdog.py``.
"""
import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tinynet
from tinynet import nn
from tinynet.data import train_val_split, train_val_test_split

ROOT = Path(__file__).resolve().parents[2]
import tinynet.train.images as alexnet_catdog  # the command examples/alexnet_catdog.py runs
import tinynet.train.loop
import tinynet.models as models


class TinyNet(nn.Module):
    """Two convolutions, an adaptive pool, dropout (so resuming must restore the generator), a linear layer.

    Smallest input: 3x3 conv -> s-2, 2x2 pool -> (s-2)//2, 3x3 conv -> (s-2)//2-2 >= 1, so s >= 8;
    with ``kernel=5`` the first convolution gives s-4 and the smallest input is 10.
    """

    def __init__(self, num_classes=2, dropout=0.5, kernel=3, width=4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, kernel), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, 2 * width, 3), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * width, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


def write_photos(folder, per_class=12, seed=0, size=(14, 12), classes=("cat", "dog"), flat=True, noise=130):
    """Noisy JPEGs, a reddish class and a bluish one: learnable, but not at once."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = {"cat": (170, 90, 70), "dog": (80, 100, 170), "bird": (90, 170, 80)}
    for name in classes:
        target = folder if flat else folder / name
        target.mkdir(exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colours[name]) + rng.normal(0, noise, size[::-1] + (3,)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(target / (f"{name}.{i}.jpg" if flat else f"{i}.jpg"),
                                                          quality=90)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


def use_tiny_model(patch, **options):
    """Train TinyNet instead of AlexNet; skip drawing curves.png (matplotlib costs ~0.4 s per epoch)."""
    patch.setitem(models.registry(), "tiny", TinyNet)
    patch.setattr(alexnet_catdog, "model_config_from_args",
                  lambda args, n: {"name": "tiny", "num_classes": n, "options": dict(options, dropout=args.dropout)})
    patch.setattr(tinynet.train.loop, "draw_training_curves", lambda *arguments, **options: False)


@pytest.fixture
def tiny(monkeypatch):
    use_tiny_model(monkeypatch)
    return alexnet_catdog


# 24 photos: per class 6 training, 3 validation, 3 test -> 3 training batches of 4, 2 validation batches
BASE = ["--image-size", "8", "--batch-size", "4", "--workers", "0", "--val-fraction", "0.25",
        "--test-fraction", "0.25", "--schedule", "plateau", "--patience", "0", "--lr", "0.05", "--seed", "2"]


def run(out, data, *extra, epochs=3):
    return alexnet_catdog.main(["--data", str(data), "--out", str(out), "--epochs", str(epochs)] + BASE + list(extra))


TIMING = {"seconds", "images_per_second", "epoch_seconds"}


def assert_same(a, b, where="checkpoint"):
    """Bit-for-bit equality of two checkpoint trees (timings excepted)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(a), sorted(b) if isinstance(b, dict) else b)
        for key in a:
            if key not in TIMING:
                assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, (where, a, b)


def read_metrics(folder):
    with open(folder / "metrics.csv") as stream:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(stream)]


def read_results(folder):
    results = json.loads((folder / "results.json").read_text())
    results.pop("best_checkpoint")
    return results


# ----------------------------------------------------------------------------- exact resume
@pytest.fixture(scope="module")
def uninterrupted(photos, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        use_tiny_model(patch)
        out = tmp_path_factory.mktemp("uninterrupted")
        assert run(out, photos) == 0
    return out


def test_the_uninterrupted_run_exercises_the_schedule_and_the_best_checkpoint(uninterrupted):
    rows = read_metrics(uninterrupted)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == 0.05 and lrs[-1] < lrs[0], "the plateau schedule must fire for the resume tests to mean much"
    best = tinynet.load(uninterrupted / "best.npz")
    assert best["epoch"] == 1 + int(np.argmax([float(r["val_accuracy"]) for r in rows]))


STOPS = {
    "mid-epoch": ["train:1:2"],
    "last batch of an epoch": ["train:1:3"],
    "first batch of the next epoch": ["train:2:1"],
    "during validation": ["val:2:1"],
    "last batch of the last epoch": ["train:3:3"],
    "last validation batch of the last epoch": ["val:3:2"],
    "twice": ["train:1:3", "val:2:2"],
    "mid-epoch with 2 decoding threads": ["train:2:2", "--workers", "2"],  # batches prefetched past the stop
}
# where each stop leaves last.npz: (epoch from 0, stage, loader epoch, loader batch)
POSITIONS = {"train:1:2": (0, "train", 0, 2), "train:1:3": (0, "validate", 1, 0), "train:2:1": (1, "train", 1, 1),
             "val:2:1": (1, "validate", 2, 0), "train:3:3": (2, "validate", 3, 0), "val:3:2": (2, "validate", 3, 0),
             "val:2:2": (1, "validate", 2, 0), "train:2:2": (1, "train", 1, 2)}


@pytest.mark.parametrize("stops", list(STOPS.values()), ids=list(STOPS))
def test_resume_is_exact_at_every_interruption_point(tiny, photos, uninterrupted, tmp_path, stops, capsys):
    out = tmp_path / "run"
    extra = [flag for flag in stops if ":" not in flag]
    stops = [flag for flag in stops if ":" in flag and flag not in extra]
    for stop in stops:
        resume = ["--resume"] if (out / "last.npz").exists() else []
        assert run(out, photos, "--stop-at", stop, *resume, *extra) == 130
        saved = tinynet.load(out / "last.npz")
        position = (saved["position"]["epoch"], saved["position"]["stage"], saved["loader"]["epoch"],
                    saved["loader"]["batch"])
        assert position == POSITIONS[stop], stop
        assert "interrupted: saved" in capsys.readouterr().out
    assert run(out, photos, "--resume", *extra) == 0
    assert "resumed from" in capsys.readouterr().out

    assert read_metrics(out) == read_metrics(uninterrupted)
    assert read_results(out) == read_results(uninterrupted)
    assert_same(tinynet.load(uninterrupted / "best.npz"), tinynet.load(out / "best.npz"), "best.npz")
    expected, resumed = tinynet.load(uninterrupted / "last.npz"), tinynet.load(out / "last.npz")
    for part in ("model", "optimizer", "scheduler", "loader", "generators", "position", "history", "best"):
        assert_same(expected[part], resumed[part], f"last.npz/{part}")
    assert_same(expected, resumed, "last.npz")


def test_ctrl_c_saves_at_the_next_batch_boundary(tiny, photos, tmp_path, monkeypatch):
    """A real SIGINT in the middle of a step (not --stop-at): the step finishes, then last.npz is written."""
    import signal

    steps = []
    real_step = tinynet.optim.SGD.step

    def step_with_ctrl_c(self):
        steps.append(1)
        if len(steps) == 2:
            signal.raise_signal(signal.SIGINT)  # lands between backward and the update
        real_step(self)

    monkeypatch.setattr(tinynet.optim.SGD, "step", step_with_ctrl_c)
    # whatever the handler was (a shell starts background jobs with SIGINT ignored), it is put back
    before = signal.getsignal(signal.SIGINT)
    assert run(tmp_path, photos) == 130
    saved = tinynet.load(tmp_path / "last.npz")
    assert saved["position"] == {"epoch": 0, "stage": "train"} and saved["loader"]["batch"] == 2
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_during_the_final_scoring_keeps_the_finished_run(tiny, photos, uninterrupted, tmp_path, monkeypatch,
                                                                capsys):
    real_scores = alexnet_catdog.ImageRun.final_scores

    def ctrl_c(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(alexnet_catdog.ImageRun, "final_scores", ctrl_c)
    assert run(tmp_path, photos) == 130
    assert "interrupted during the final scoring" in capsys.readouterr().err
    monkeypatch.setattr(alexnet_catdog.ImageRun, "final_scores", real_scores)
    assert run(tmp_path, photos, "--resume") == 0  # no epoch left: scores the best checkpoint
    assert read_results(tmp_path) == read_results(uninterrupted)


# ----------------------------------------------------------------------------- flags checked up front
BAD_FLAGS = [
    (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["--lr", "-1"], "argument --lr: must be > 0, got -1"),
    (["--lr", "0"], "argument --lr: must be > 0, got 0"),
    (["--lr", "nan"], "argument --lr: expected a finite number"),
    (["--val-fraction", "1.5"], "argument --val-fraction: must be > 0 and < 1, got 1.5"),
    (["--val-fraction", "0"], "argument --val-fraction: must be > 0 and < 1, got 0"),
    (["--test-fraction", "1"], "argument --test-fraction: must be >= 0 and < 1, got 1"),
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], "leave no training images"),
    (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["--image-size", "0"], "argument --image-size: must be >= 1, got 0"),
    (["--momentum", "1"], "argument --momentum: must be >= 0 and < 1, got 1"),
    (["--max-images", "1"], "argument --max-images: must be >= 2, got 1"),
    (["--workers", "-1"], "argument --workers: must be >= 0, got -1"),
    (["--batch-size", "two"], "argument --batch-size: expected an integer, got 'two'"),
    (["--eval-only"], "--eval-only and --predict need --checkpoint"),
    (["--eval-only", "--checkpoint", "{tmp}/missing.npz"], "--checkpoint {tmp}/missing.npz: no such file"),
    (["--predict", "{tmp}/missing.jpg", "--checkpoint", "{tmp}/x.npz"], "--predict {tmp}/missing.jpg: no such file"),
    (["--all"], "--all only applies to --eval-only"),
    (["--resume"], "--resume: no checkpoint at {tmp}/run/last.npz"),
    (["--stop-at", "train:0:1"], "argument --stop-at: expected train:EPOCH:BATCH"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f[0]) for f in BAD_FLAGS])
def test_bad_flags_are_refused_before_any_work(tiny, photos, tmp_path, capsys, flags, message):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    code = alexnet_catdog.main(["--data", str(photos), "--out", str(tmp_path / "run")] + flags)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("usage: alexnet_catdog.py") and "Traceback" not in err
    assert message.replace("{tmp}", str(tmp_path)) in err, err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_out_that_is_a_file_and_all_without_data_are_refused(tiny, photos, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    assert alexnet_catdog.main(["--data", str(photos), "--out", str(tmp_path / "taken")]) == 2
    assert "error: --out" in capsys.readouterr().err
    assert alexnet_catdog.main(["--eval-only", "--all", "--checkpoint", str(tmp_path / "taken")]) == 2
    assert "error: --all needs --data FOLDER" in capsys.readouterr().err


def test_the_smallest_image_size_is_computed_from_the_model():
    assert alexnet_catdog.smallest_input_size(TinyNet()) == 8
    assert alexnet_catdog.smallest_input_size(TinyNet(kernel=5)) == 10
    assert alexnet_catdog.smallest_input_size(TinyNet(), start=20) == 20  # already fine: nothing to search


def test_the_size_check_runs_the_training_kernels_not_the_inference_ones(monkeypatch):
    """The crop-size check records its graph, so the first training step finds its pooling kernel
    compiled and nothing else is compiled before it (cold start, benchmarks/README.md)."""
    from tinynet.kernels import max_pool2d

    def refused(*args, **kwargs):
        raise AssertionError("the size check ran max pooling's inference kernel")

    monkeypatch.setattr(max_pool2d, "max_pool2d_values", refused)
    assert alexnet_catdog.smallest_input_size(TinyNet()) == 8


def test_the_size_check_changes_nothing_in_the_model_or_the_seeded_generator():
    """Run before training, the check must leave dropout's generator, batch-norm statistics and
    the training mode as it found them (a training-mode check drew a dropout mask and moved the
    running variance towards a zero image's)."""
    from tinynet import backend
    from tinynet.train import images
    tinynet.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                          nn.AdaptiveAvgPool2d(1))
    statistics = [model[1].running_mean.copy(), model[1].running_var.copy()]
    assert images._forward_error(model, 9, "cpu") is None         # draws the deferred weights
    state = backend.generator("cpu").get_state()
    assert images._forward_error(model, 9, "cpu") is None
    assert images._forward_error(model, 2, "cpu") is not None          # too small: an error, same rule
    assert model.training and all(module.training for module in model.modules())
    assert backend.generator("cpu").get_state() == state
    np.testing.assert_array_equal(model[1].running_mean, statistics[0])
    np.testing.assert_array_equal(model[1].running_var, statistics[1])


def test_the_size_check_runs_the_training_convolutions_not_im2col(monkeypatch):
    """One image would take im2col, which no training batch of AlexNet runs; the check takes
    Winograd wherever a layer's shape allows it instead (cold start, benchmarks/README.md), and
    keeps a choice the user made."""
    from tinynet import models
    from tinynet.kernels import conv2d
    from tinynet.train import images
    chosen = []
    original = conv2d.choose_algorithm

    def recording(*args):
        chosen.append(original(*args))
        return chosen[-1]

    monkeypatch.setattr(conv2d, "choose_algorithm", recording)
    model = models.create("alexnet", num_classes=2)
    assert images._forward_error(model, 128, "cpu") is None
    assert chosen == ["space_to_depth", "winograd", "winograd", "winograd", "winograd"]
    assert conv2d.get_algorithm() == "auto"
    chosen.clear()
    with conv2d.use_algorithm("im2col"):
        assert images._forward_error(model, 128, "cpu") is None
    assert chosen == ["im2col"] * 5


@pytest.mark.parametrize("kernel, smallest", [(3, 8), (5, 10)])
def test_a_crop_too_small_for_the_model_names_the_smallest_size(monkeypatch, photos, tmp_path, capsys,
                                                                kernel, smallest):
    use_tiny_model(monkeypatch, kernel=kernel)
    out = tmp_path / "run"
    code = alexnet_catdog.main(["--data", str(photos), "--out", str(out), "--image-size", str(smallest - 1)]
                               + BASE[2:])
    err = capsys.readouterr().err
    assert code == 2
    assert f"argument --image-size: {smallest - 1} px is too small: tiny accepts crops of at least {smallest} px" in err
    assert "max_pool2d" in err or "conv2d" in err  # the layer that refused it
    assert not out.exists()
    assert run(out, photos, "--image-size", str(smallest), "--no-ten-crop", epochs=1) == 0


# ----------------------------------------------------------------------------- runs that cannot mean anything
def test_a_single_class_is_refused(tiny, tmp_path, capsys):
    cats = write_photos(tmp_path / "cats", per_class=6, classes=("cat",))
    assert alexnet_catdog.main(["--data", str(cats), "--out", str(tmp_path / "run")] + BASE) == 2
    err = capsys.readouterr().err
    assert "found photos of one class only (cat: 6)" in err and "at least two classes" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, part", [
    (["--max-images", "4"], "validation"),                           # 2 per class: 0.25 of 2 rounds to 0
    (["--test-fraction", "0.02"], "test"),                           # 0.02 of 12 rounds to 0
])
def test_every_class_needs_a_validation_and_a_test_image(tiny, photos, tmp_path, capsys, flags, part):
    assert alexnet_catdog.main(["--data", str(photos), "--out", str(tmp_path / "run")] + BASE + flags) == 2
    err = capsys.readouterr().err
    assert f"the {part} split would have no image of class 'cat', 'dog'" in err
    assert "every class needs at least one" in err and "found" in err


# ----------------------------------------------------------------------------- divergence
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflows on the way to NaN
def test_a_diverging_run_stops_at_once_and_writes_no_checkpoint(tiny, photos, tmp_path, capsys):
    assert run(tmp_path, photos, "--lr", "1e30") == 1
    err = capsys.readouterr().err
    assert "stopped: epoch 1, batch" in err and "the training loss is nan" in err
    assert "learning rate" in err and "--lr" in err and "No checkpoint was written" in err
    assert not (tmp_path / "last.npz").exists() and not (tmp_path / "best.npz").exists()
    assert not (tmp_path / "metrics.csv").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflows on the way to NaN
def test_after_divergence_resume_starts_from_the_last_good_checkpoint(tiny, photos, uninterrupted, tmp_path, capsys):
    assert run(tmp_path, photos, epochs=1) == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("last.npz", "best.npz", "metrics.csv")}
    capsys.readouterr()

    assert run(tmp_path, photos, "--resume", "--lr", "1e30") == 1
    err = capsys.readouterr().err
    assert "stopped: epoch 2, batch" in err and "still holds the last good state (after epoch 1)" in err
    for name, content in before.items():
        assert (tmp_path / name).read_bytes() == content, f"{name} was overwritten"

    # without the bad --lr the checkpoint's own configuration continues, exactly as if nothing happened
    assert run(tmp_path, photos, "--resume") == 0
    assert read_metrics(tmp_path) == read_metrics(uninterrupted)
    assert_same(tinynet.load(uninterrupted / "last.npz"), tinynet.load(tmp_path / "last.npz"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflows on the way to NaN
def test_non_finite_weights_with_a_finite_loss_are_never_saved(tiny, photos, tmp_path, monkeypatch, capsys):
    """The last step of an epoch breaks the weights: its loss was finite, the epoch-end save must refuse."""
    steps = []
    real_step = tinynet.optim.SGD.step

    def step_then_break_a_weight(self):
        real_step(self)
        steps.append(1)
        if len(steps) == 3:
            self.param_groups[0]["params"][0].data[...] = np.inf

    monkeypatch.setattr(tinynet.optim.SGD, "step", step_then_break_a_weight)
    assert run(tmp_path, photos) == 1
    assert "epoch 1: the weights are no longer finite" in capsys.readouterr().err
    assert not (tmp_path / "last.npz").exists() and not (tmp_path / "best.npz").exists()


# ----------------------------------------------------------------------------- --resume and changed flags
@pytest.fixture
def one_epoch(tiny, photos, tmp_path, capsys):
    assert run(tmp_path, photos, epochs=1) == 0
    capsys.readouterr()
    return tmp_path


@pytest.mark.parametrize("flags, says", [
    (["--image-size", "12"], "--image-size 12 differs from the checkpoint's image_size = 8: the network"),
    (["--batch-size", "2"], "--batch-size 2 differs from the checkpoint's batch_size = 4"),
    (["--test-fraction", "0.1"], "--test-fraction 0.1 differs from the checkpoint's test_fraction = 0.25"),
    (["--seed", "3"], "--seed 3 differs from the checkpoint's seed = 2"),
    (["--dropout", "0.1"], "--dropout 0.1 differs from the checkpoint's dropout = 0.5: it changes the model"),
])
def test_resume_refuses_flags_that_would_make_it_wrong(one_epoch, photos, capsys, flags, says):
    before = (one_epoch / "last.npz").read_bytes()
    assert run(one_epoch, photos, "--resume", *flags) == 2
    err = capsys.readouterr().err
    assert "error: --resume: " + says in err and "Leave these flags out" in err
    assert (one_epoch / "last.npz").read_bytes() == before


def test_resume_reports_changed_flags_and_uses_them(one_epoch, photos, capsys):
    assert run(one_epoch, photos, "--resume", "--lr", "0.01", "--init", "paper", "--epochs", "2") == 0
    out = capsys.readouterr().out
    assert "--resume: --lr 0.01 differs from the checkpoint's 0.05: using 0.01 from here on" in out
    assert "--resume: --init paper differs from the checkpoint's kaiming: ignored" in out
    assert [float(r["lr"]) for r in read_metrics(one_epoch)] == [0.05, 0.01]
    assert tinynet.load(one_epoch / "last.npz")["config"]["lr"] == 0.01


def test_resume_with_the_same_flags_or_none_says_nothing_about_flags(one_epoch, photos, capsys):
    assert alexnet_catdog.main(["--out", str(one_epoch), "--resume", "--epochs", "2", "--workers", "0"]) == 0
    assert "differs" not in capsys.readouterr().out


def test_resume_checks_that_the_photos_are_the_same(one_epoch, photos, tmp_path_factory, capsys):
    moved = tmp_path_factory.mktemp("moved") / "photos"
    shutil.copytree(photos, moved)
    assert run(one_epoch, moved, "--resume", "--epochs", "2") == 0
    assert "using the new folder" in capsys.readouterr().out

    other = write_photos(tmp_path_factory.mktemp("other"), per_class=13)
    assert run(one_epoch, other, "--resume", "--epochs", "3") == 2
    assert "are not the ones this run was trained on" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the test split
def test_train_val_test_split_is_stratified_seeded_and_keeps_the_validation_split():
    labels = np.array([0] * 30 + [1] * 10 + [2] * 7)
    train, val, test = train_val_test_split(labels, 0.2, 0.3, seed=5)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(labels.size))
    assert np.bincount(labels[val]).tolist() == [6, 2, 1] and np.bincount(labels[test]).tolist() == [9, 3, 2]
    np.testing.assert_array_equal(val, train_val_split(labels, 0.2, seed=5)[1])  # adding a test split keeps val
    for a, b in zip((train, val, test), train_val_test_split(labels, 0.2, 0.3, seed=5)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(test, train_val_test_split(labels, 0.2, 0.3, seed=6)[2])
    # at least one image of each class stays in training
    train, val, test = train_val_test_split([0, 0, 1, 1], 0.5, 0.5, seed=0)
    assert np.bincount(np.array([0, 0, 1, 1])[train]).tolist() == [1, 1] and test.size == 0


def test_the_test_split_never_influences_training(tiny, photos, tmp_path):
    """Same photos, except that the test split's pixels are replaced: training must not notice."""
    other = tmp_path / "other"
    shutil.copytree(photos, other)
    folder = tinynet.data.ImageFolder(photos)
    _, _, test = train_val_test_split(folder, 0.25, 0.25, seed=2)
    for index in test:
        name = Path(folder.samples[index][0]).name
        pixels = np.random.default_rng(int(index)).integers(0, 256, (12, 14, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(other / name, quality=90)

    assert run(tmp_path / "a", photos) == 0 and run(tmp_path / "b", other) == 0
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")  # selection and schedule unchanged
    a, b = tinynet.load(tmp_path / "a" / "last.npz"), tinynet.load(tmp_path / "b" / "last.npz")
    for part in ("model", "optimizer", "scheduler", "history", "best", "statistics"):
        assert_same(a[part], b[part], part)
    ra, rb = read_results(tmp_path / "a"), read_results(tmp_path / "b")
    assert ra["validation"] == rb["validation"]
    assert ra["test"]["centre_crop"]["loss"] != rb["test"]["centre_crop"]["loss"]  # the test photos were scored


def test_results_report_the_test_split_as_the_headline_with_its_interval(uninterrupted):
    results = json.loads((uninterrupted / "results.json").read_text())
    assert results["headline"] == "test" and results["test"]["images"] == 6 and results["validation"]["images"] == 6
    assert "Wilson" in results["confidence_interval"]
    for split in ("test", "validation"):
        for crop in ("centre_crop", "ten_crop"):
            score = results[split][crop]
            assert score["images"] == 6 and score["accuracy"] == score["correct"] / 6
            assert score["ci95"] == list(tinynet.train.wilson_interval(score["correct"], 6))
    assert set(results["checkpoint_megabytes"]) == {"best.npz", "last.npz"}


def test_the_progress_output_leads_with_the_test_figure(tiny, photos, tmp_path, capsys):
    assert run(tmp_path, photos, epochs=1) == 0
    lines = capsys.readouterr().out.splitlines()
    headline = next(i for i, line in enumerate(lines) if line.startswith("HEADLINE"))
    assert lines[headline].startswith("HEADLINE test (never seen during training or selection), 6 images: "
                                      "centre crop ")
    assert "95% Wilson CI" in lines[headline] and lines[headline + 1].startswith("validation (picked epoch 1")
    assert lines[headline + 2].startswith("checkpoints: best.npz")


def test_without_a_test_split_the_output_says_the_figure_is_optimistic(tiny, photos, tmp_path, capsys):
    assert run(tmp_path, photos, "--test-fraction", "0", "--no-ten-crop", epochs=1) == 0
    out = capsys.readouterr().out
    assert "HEADLINE validation (picked epoch 1, so optimistic)" in out and "add --test-fraction" in out
    assert "test" not in json.loads((tmp_path / "results.json").read_text())


@pytest.mark.parametrize("correct, count", [(0, 10), (3, 10), (10, 10), (150, 200), (1, 1)])
def test_wilson_interval_matches_scipy(correct, count):
    stats = pytest.importorskip("scipy.stats")
    expected = stats.binomtest(correct, count).proportion_ci(0.95, method="wilson")
    low, high = tinynet.train.wilson_interval(correct, count)
    assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(expected.high, abs=1e-12)
    # and the defining property: each end lies exactly z standard errors (at that end) from the estimate
    p = correct / count
    for end in (low, high):
        if abs(end - p) > 1e-6:  # an end at 0 % or 100 % is where the estimate itself lies
            assert abs(p - end) / math.sqrt(end * (1 - end) / count) == pytest.approx(tinynet.train.Z_95)


# ----------------------------------------------------------------------------- evaluation and checkpoints
def test_eval_only_scores_the_stored_splits_or_every_photo_of_another_folder(tiny, photos, uninterrupted, tmp_path,
                                                                              capsys):
    best = str(uninterrupted / "best.npz")
    assert alexnet_catdog.main(["--eval-only", "--checkpoint", best, "--workers", "0"]) == 0
    out = capsys.readouterr().out
    results = json.loads((uninterrupted / "results.json").read_text())
    expected = tinynet.train.describe_score(results["test"]["centre_crop"])
    assert f"centre crop: test accuracy {expected}" in out and "ten crop: validation accuracy" in out

    other = write_photos(tmp_path / "other", per_class=5, seed=9, flat=False)  # one folder per class
    assert alexnet_catdog.main(["--eval-only", "--checkpoint", best, "--data", str(other), "--all",
                                "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "centre crop: accuracy" in out and "on all 10 images of" in out and "ten crop: accuracy" in out

    dogs = write_photos(tmp_path / "dogs", per_class=3, classes=("dog",))  # a class of the model may be absent
    assert alexnet_catdog.main(["--eval-only", "--checkpoint", best, "--data", str(dogs), "--all",
                                "--no-ten-crop"]) == 0
    assert "on all 3 images" in capsys.readouterr().out

    birds = write_photos(tmp_path / "birds", per_class=3, classes=("cat", "bird"))
    assert alexnet_catdog.main(["--eval-only", "--checkpoint", best, "--data", str(birds), "--all"]) == 2
    assert "class(es) ['bird'] that the checkpoint does not know" in capsys.readouterr().err

    assert alexnet_catdog.main(["--eval-only", "--checkpoint", best, "--data", str(other)]) == 2
    assert "add --all to score every photo" in capsys.readouterr().err


def test_best_holds_what_evaluation_needs_and_last_everything_for_resume(tiny, uninterrupted):
    best, last = tinynet.load(uninterrupted / "best.npz"), tinynet.load(uninterrupted / "last.npz")
    assert set(best) == {"kind", "version", "model_config", "model", "config", "classes", "statistics", "split",
                         "epoch", "val_accuracy"}
    assert set(last) - set(best) == {"optimizer", "scheduler", "loader", "generators", "position", "running",
                                     "history", "best"}
    assert best["model_config"] == {"name": "tiny", "num_classes": 2, "options": {"dropout": 0.5}}
    model, _ = alexnet_catdog.load_model(uninterrupted / "best.npz", "cpu")  # rebuilt from the file alone
    assert isinstance(model, TinyNet)
    for name, weight in model.state_dict().items():
        np.testing.assert_array_equal(weight, best["model"][name])


class LinearNet(nn.Module):
    """Dropout and one linear layer: on the GPU stand-in, convolutions would run in numba's slow CUDA simulator."""

    def __init__(self, num_classes=2, dropout=0.5):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(3 * 8 * 8, num_classes))

    def forward(self, x):
        return self.layers(x)


GPU_RUN = ["--device", "gpu", "--no-ten-crop", "--test-fraction", "0", "--max-images", "16"]


def test_resume_on_the_gpu_is_exact(tiny, photos, tmp_path, monkeypatch, gpu_xp):
    """On --device gpu the dropout masks come from the GPU generator: its state must travel in last.npz."""
    monkeypatch.setitem(models.registry(), "tiny", LinearNet)
    assert run(tmp_path / "straight", photos, *GPU_RUN, epochs=2) == 0
    assert run(tmp_path / "resumed", photos, *GPU_RUN, "--stop-at", "train:1:1", epochs=2) == 130
    assert run(tmp_path / "resumed", photos, *GPU_RUN, "--resume", epochs=2) == 0
    assert read_metrics(tmp_path / "straight") == read_metrics(tmp_path / "resumed")
    assert_same(tinynet.load(tmp_path / "straight" / "last.npz"), tinynet.load(tmp_path / "resumed" / "last.npz"))


def test_generator_states_of_every_device_in_use_are_saved_and_restored(tiny, photos, tmp_path, monkeypatch,
                                                                      gpu_xp):
    """--device gpu saves backend.generator(d).get_state() for the CPU and the GPU
    and gives each back to set_state on --resume."""
    from tinynet import backend

    real_generator, restored = backend.generator, []

    class Watched:
        """The real generator, with a recognisable state and a record of set_state calls."""

        def __init__(self, device):
            self.device, self.inner = device, real_generator(device)

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def get_state(self):
            return {"inner": self.inner.get_state(), "device": self.device}

        def set_state(self, state):
            restored.append((self.device, state["device"]))
            self.inner.set_state(state["inner"])

    monkeypatch.setitem(models.registry(), "tiny", LinearNet)
    monkeypatch.setattr(backend, "generator", lambda device="cpu": Watched(backend.normalize_device(device)))
    assert run(tmp_path, photos, *GPU_RUN, "--stop-at", "train:1:1", epochs=1) == 130
    saved = tinynet.load(tmp_path / "last.npz")["generators"]
    assert sorted(saved) == ["cpu", "gpu"] and saved["gpu"]["device"] == "gpu"
    assert run(tmp_path, photos, *GPU_RUN, "--resume", epochs=1) == 0
    assert sorted(restored) == [("cpu", "cpu"), ("gpu", "gpu")]


# ----------------------------------------------------------------------------- --model and ensembles
QUICK = ["--no-ten-crop", "--epochs", "1"]


def test_model_flag_trains_a_registry_network_and_the_checkpoint_rebuilds_it(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tinynet.train.loop, "draw_training_curves", lambda *a, **k: False)
    options = ["--model", "resnet20", "--model-option", "shortcut=\"B\"", "--model-option", "zero_init_residual=true"]
    assert run(tmp_path, photos, *QUICK, *options, epochs=1) == 0
    best = tinynet.load(tmp_path / "best.npz")
    assert best["model_config"] == {"name": "resnet20", "num_classes": 2,
                                    "options": {"shortcut": "B", "zero_init_residual": True}}
    model, _ = alexnet_catdog.load_model(tmp_path / "best.npz", "cpu")
    assert type(model).__name__ == "CifarResNet" and model.registry_config["options"]["shortcut"] == "B"
    for name, weight in model.state_dict().items():
        np.testing.assert_array_equal(weight, best["model"][name])
    capsys.readouterr()
    # the script's AlexNet flags are options of the networks that have them, and an error elsewhere
    assert run(tmp_path / "x", photos, *QUICK, "--model", "resnet20", "--groups", "2") == 2
    assert "--groups does not apply to --model resnet20" in capsys.readouterr().err
    assert run(tmp_path / "y", photos, *QUICK, "--model", "resnet20", "--model-option", "depth_typo=3") == 2
    assert "unknown option(s) depth_typo" in capsys.readouterr().err
    # --resume refuses another network or other options
    assert run(tmp_path, photos, *QUICK, "--resume", "--model", "plain20", epochs=2) == 2
    assert "--model plain20 differs from the checkpoint's resnet20: it changes the model" in capsys.readouterr().err
    assert run(tmp_path, photos, *QUICK, "--resume", "--model-option", "shortcut=\"A\"", epochs=2) == 2
    assert "shortcut=\"A\" differs from the checkpoint's shortcut = B" in capsys.readouterr().err


def test_a_network_with_auxiliary_heads_trains_on_its_own_loss():
    """GoogLeNet returns (logits, aux1, aux2) in training and defines loss(); the script's step must
    use it (main + 0.3 x each auxiliary), and a plain network gets the cross-entropy of its logits."""
    from tinynet.nn import functional as F
    from tinynet.models.googlenet import googlenet_loss

    net = models.create("googlenet", num_classes=2).train()
    images = tinynet.tensor(np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32))
    labels = np.array([0, 1])
    outputs = net(images)
    assert isinstance(outputs, tuple) and len(outputs) == 3
    loss, logits = tinynet.train.training_loss(net, outputs, labels)
    assert logits is outputs[0]
    assert loss.item() == pytest.approx(googlenet_loss(outputs, labels).item())
    assert loss.item() != pytest.approx(F.cross_entropy(outputs[0], labels).item())   # the heads count
    plain_logits = tinynet.tensor(np.array([[2.0, 0.0], [0.0, 1.0]], np.float32))
    plain, same = tinynet.train.training_loss(TinyNet(), plain_logits, labels)
    assert same is plain_logits and plain.item() == pytest.approx(F.cross_entropy(plain_logits, labels).item())


@pytest.fixture(scope="module")
def two_members(photos, tmp_path_factory):
    """Two tiny networks trained on the same split (same seed and fractions), differently."""
    outs = []
    with pytest.MonkeyPatch.context() as patch:
        use_tiny_model(patch)
        for lr in ("0.05", "0.2"):
            out = tmp_path_factory.mktemp(f"member-lr{lr}")
            assert run(out, photos, "--no-ten-crop", "--lr", lr, epochs=2) == 0
            outs.append(out / "best.npz")
    return outs


def test_an_ensemble_averages_its_members_softmax(tiny, two_members, photos, capsys):
    first, second = (str(p) for p in two_members)
    assert alexnet_catdog.main(["--eval-only", "--checkpoint", first, second, "--no-ten-crop"]) == 0
    printed = capsys.readouterr().out
    assert "ensemble of 2: tiny" in printed and "ensemble (mean softmax)" in printed
    # the same figures by hand, from each member's probabilities
    state = tinynet.load(first)
    indices = np.asarray(state["split"]["test"], np.int64)
    outputs = [alexnet_catdog.split_probabilities(*alexnet_catdog.load_model(p, "cpu"), state["config"]["data"],
                                                  indices, "centre_crop", "cpu", 0) for p in (first, second)]
    assert np.array_equal(outputs[0][1], outputs[1][1])
    average = (outputs[0][0] + outputs[1][0]) / 2
    assert not np.allclose(outputs[0][0], outputs[1][0]), "members that agree everywhere test nothing"
    correct = int((average.argmax(axis=1) == outputs[0][1]).sum())
    test_block = printed[printed.index("test, centre crop"):]
    ensemble_line = next(line for line in test_block.splitlines() if "ensemble (mean softmax)" in line)
    assert f"{100 * correct / len(indices):.2f}%" in ensemble_line
    loss = -np.log(average[np.arange(len(indices)), outputs[0][1]]).mean()
    assert f"loss {loss:.4f}" in ensemble_line


def test_ensemble_members_must_share_the_split_and_the_classes(tiny, two_members, photos, tmp_path, capsys):
    other = tmp_path / "other"
    assert run(other, photos, "--no-ten-crop", "--seed", "5", epochs=1) == 0
    capsys.readouterr()
    assert alexnet_catdog.main(["--eval-only", "--checkpoint", str(two_members[0]), str(other / "best.npz")]) == 2
    assert "was trained on other photos or another split" in capsys.readouterr().err
    # --all scores a separate folder: the splits no longer matter
    assert alexnet_catdog.main(["--eval-only", "--checkpoint", str(two_members[0]), str(other / "best.npz"),
                                "--data", str(photos), "--all", "--no-ten-crop"]) == 0
    assert "all photos, centre crop, 24 images" in capsys.readouterr().out
    birds = write_photos(tmp_path / "birds", per_class=6, classes=("cat", "bird"))
    assert run(tmp_path / "birdrun", birds, "--no-ten-crop", "--val-fraction", "0.34", "--test-fraction", "0.34",
               epochs=1) == 0
    capsys.readouterr()
    assert alexnet_catdog.main(["--eval-only", "--checkpoint", str(two_members[0]),
                                str(tmp_path / "birdrun" / "best.npz")]) == 2
    assert "an ensemble needs the same classes" in capsys.readouterr().err


def test_prediction_averages_the_members(tiny, two_members, photos, capsys):
    photo = str(sorted(photos.glob("cat.*.jpg"))[0])
    per_member = []
    for member in two_members:
        assert alexnet_catdog.main(["--predict", photo, "--checkpoint", str(member)]) == 0
        per_member.append(float(capsys.readouterr().out.split("cat ")[1].split(",")[0]))
    assert alexnet_catdog.main(["--predict", photo, "--checkpoint", *map(str, two_members)]) == 0
    together = float(capsys.readouterr().out.split("cat ")[1].split(",")[0])
    assert together == pytest.approx(sum(per_member) / 2, abs=1.5e-3)


def test_the_general_command_needs_a_model_and_names_its_folder_after_it(photos, tmp_path, monkeypatch, capsys):
    """train_classifier.py / python -m tinynet.train: the same run without AlexNet or the Kaggle photos as
    defaults."""
    use_tiny_model(monkeypatch)
    monkeypatch.chdir(tmp_path)
    generic = alexnet_catdog.GENERIC
    assert alexnet_catdog.main(["--data", str(photos)], command=generic) == 2
    assert "--model NAME is required" in capsys.readouterr().err
    assert alexnet_catdog.main(["--model", "alexnet"], command=generic) == 2    # no --data: what to give
    assert "Point --data at a folder of labelled photos" in capsys.readouterr().err
    assert alexnet_catdog.main(["--model", "alexnet", "--data", str(photos), "--image-size", "16",
                                "--batch-size", "4", "--epochs", "1", "--workers", "0", "--no-ten-crop"],
                               command=generic) == 0
    assert (tmp_path / "runs" / "alexnet" / "best.npz").is_file()
    assert "train_classifier.py" in alexnet_catdog.build_parser(generic).format_usage()


@pytest.mark.parametrize("argv, schedule, warmup", [
    ([], "cosine", 2), (["--epochs", "2"], "cosine", 1), (["--epochs", "1"], "cosine", 0),
    (["--warmup-epochs", "5"], "cosine", 5), (["--schedule", "plateau"], "plateau", 0),
    (["--schedule", "step"], "step", 0),
])
def test_the_default_schedule_is_a_two_epoch_warm_up_then_a_cosine(argv, schedule, warmup):
    """Chosen on the validation photos (the README's AlexNet command: 75.0 % against the plateau
    schedule's 72.0 %); a short run warms up for fewer epochs instead of being refused."""
    for command in (alexnet_catdog.ALEXNET_CATDOG, alexnet_catdog.GENERIC):
        args = alexnet_catdog.parse_arguments(argv + ["--model", "alexnet"], alexnet_catdog.build_parser(command))
        alexnet_catdog.check_arguments(args)
        assert (args.schedule, args.warmup_epochs) == (schedule, warmup)
        assert "warmup_epochs" not in args.given or "--warmup-epochs" in argv


def test_the_default_schedule_warms_up_then_follows_the_cosine(photos, tmp_path, monkeypatch):
    use_tiny_model(monkeypatch)
    assert alexnet_catdog.main(["--data", str(photos), "--out", str(tmp_path), "--image-size", "16",
                                "--batch-size", "4", "--workers", "0", "--no-ten-crop", "--lr", "0.3",
                                "--epochs", "4"]) == 0
    with open(tmp_path / "metrics.csv") as stream:
        rates = [float(row["lr"]) for row in csv.DictReader(stream)]
    assert rates == pytest.approx([0.1, 0.2, 0.3, 0.15])
    assert tinynet.load(tmp_path / "last.npz")["config"]["warmup_epochs"] == 2


def test_the_cosine_schedule_runs_and_a_resume_may_not_switch_schedules(photos, tmp_path, monkeypatch, capsys):
    use_tiny_model(monkeypatch)
    out = tmp_path / "run"
    common = ["--data", str(photos), "--out", str(out), "--image-size", "16", "--batch-size", "4", "--workers", "0",
              "--no-ten-crop", "--lr", "0.1"]
    assert alexnet_catdog.main(common + ["--epochs", "3", "--schedule", "cosine", "--warmup-epochs", "1"]) == 0
    with open(out / "metrics.csv") as stream:
        rates = [float(row["lr"]) for row in csv.DictReader(stream)]
    assert rates == pytest.approx([0.05, 0.1, 0.05])
    capsys.readouterr()
    assert alexnet_catdog.main(common + ["--epochs", "4", "--resume", "--schedule", "plateau"]) == 2
    assert "--schedule plateau differs from the checkpoint's schedule = cosine" in capsys.readouterr().err
    assert alexnet_catdog.main(common + ["--epochs", "3", "--warmup-epochs", "3", "--schedule", "cosine"]) == 2
