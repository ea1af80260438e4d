"""tinynet.train.Trainer used from a user's own code: a tiny network on synthetic data.

What the image command adds on top (flags, photos, --resume's rules) is tested in
tests/train/test_images_command.py; here the loop itself: history and files, exact resume
at every kind of stop, the non-finite stop, callbacks, schedules, the registry checkpoint.
"""
import csv

import numpy as np
import pytest

import tinynet
import tinynet.models as models
from tinynet import nn, optim, train
from tinynet.data import ArrayDataset, DataLoader


def noisy_shift(image, rng):
    """A random augmentation, so a resume must also restore the per-sample draws."""
    return image + rng.normal(0, 0.05, image.shape).astype(np.float32)


def dataset(n=48, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.normal(0, 1, (n, 6)).astype(np.float32)
    images[np.arange(n), labels] += 2.0          # learnable: the label's feature is raised
    return ArrayDataset(images, labels, transform=noisy_shift)


def make_trainer(out=None, epochs=3, scheduler="cosine", callbacks=(), lr=0.1, **options):
    tinynet.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.25), nn.Linear(16, 3))
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    schedule = {"cosine": lambda: optim.CosineAnnealingLR(optimizer, epochs=epochs, warmup_epochs=1),
                "plateau": lambda: optim.ReduceLROnPlateau(optimizer, mode="max", patience=0),
                None: lambda: None}[scheduler]()
    train_loader = DataLoader(dataset(), batch_size=8, shuffle=True, seed=3)
    val_loader = DataLoader(dataset(24, seed=1), batch_size=8)
    return train.Trainer(model, optimizer, train_loader, val_loader, epochs=epochs, scheduler=schedule, out=out,
                         callbacks=callbacks, progress=False, **options)


def weights(model):
    return {name: p.numpy().copy() for name, p in model.named_parameters()}


def test_fit_learns_writes_history_metrics_and_checkpoints(tmp_path):
    trainer = make_trainer(tmp_path)
    history = trainer.fit()
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_accuracy"] > 0.6 and history[-1]["val_accuracy"] > 0.6   # chance is 1/3
    # the cosine schedule with one warm-up epoch: 0.05, then 0.1 and 0.05 on the half cosine
    assert [row["lr"] for row in history] == pytest.approx([0.05, 0.1, 0.05])
    with open(tmp_path / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and list(rows[0]) == train.METRIC_FIELDS
    best = tinynet.load(tmp_path / "best.npz")
    best_epoch = max(history, key=lambda row: row["val_accuracy"])["epoch"]   # the first of the best
    assert best["epoch"] == best_epoch and best["val_accuracy"] == trainer.best["val_accuracy"]
    last = tinynet.load(tmp_path / "last.npz")
    assert last["position"] == {"epoch": 3, "stage": "train"} and len(last["history"]) == 3


@pytest.mark.parametrize("stop_at", [("train", 2, 3), ("train", 2, 6), ("val", 1, 2)],
                         ids=["mid-epoch", "after the last batch", "mid-validation"])
def test_a_stopped_and_resumed_run_ends_bit_identical(tmp_path, stop_at):
    reference = make_trainer(tmp_path / "straight")
    reference.fit()

    interrupted = make_trainer(tmp_path / "stopped")
    with pytest.raises(train.Interrupted), train.StopRequest(stop_at) as stop:
        interrupted.fit(stop)
    saved = tinynet.load(tmp_path / "stopped" / "last.npz")
    expected_stage = "validate" if stop_at[0] == "val" or stop_at[2] == 6 else "train"
    assert saved["position"] == {"epoch": stop_at[1] - 1, "stage": expected_stage}

    resumed = make_trainer(tmp_path / "stopped")
    resumed.resume()
    resumed.fit()
    timeless = [[{k: v for k, v in row.items() if "second" not in k} for row in run.history]
                for run in (resumed, reference)]
    assert timeless[0] == timeless[1]
    for name, value in weights(reference.model).items():
        np.testing.assert_array_equal(weights(resumed.model)[name], value, err_msg=name)


def test_a_non_finite_loss_stops_before_the_step_and_writes_nothing(tmp_path):
    trainer = make_trainer(tmp_path, lr=1e30)     # the first step throws the weights to infinity
    with pytest.raises(train.Diverged, match="not finite|no longer finite|is nan|is inf"):
        trainer.fit()
    assert not (tmp_path / "last.npz").exists() and not (tmp_path / "best.npz").exists()


def test_callbacks_see_every_epoch_and_may_add_to_checkpoints(tmp_path):
    seen = []

    class Recorder(train.Callback):
        def on_epoch_end(self, trainer, row):
            seen.append(("epoch", row["epoch"], trainer.epoch))

        def on_checkpoint(self, trainer, kind, state):
            state["note"] = f"{kind} at epoch {trainer.epoch}"

        def on_fit_end(self, trainer):
            seen.append(("end", len(trainer.history)))

    make_trainer(tmp_path, epochs=2, callbacks=[Recorder()]).fit()
    assert seen == [("epoch", 1, 1), ("epoch", 2, 2), ("end", 2)]
    assert tinynet.load(tmp_path / "last.npz")["note"] == "last at epoch 2"


def test_the_plateau_schedule_is_stepped_with_the_validation_accuracy(tmp_path):
    trainer = make_trainer(None, epochs=3, scheduler="plateau")
    stepped = []
    real_step = trainer.scheduler.step
    trainer.scheduler.step = lambda metric: (stepped.append(metric), real_step(metric))
    history = trainer.fit()
    assert stepped == [row["val_accuracy"] for row in history]


def test_a_registry_model_checkpoint_rebuilds_the_network(tmp_path):
    tinynet.manual_seed(0)
    model = models.create("lenet5", num_classes=10)
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.normal(0, 1, (8, 1, 32, 32)).astype(np.float32), np.arange(8) % 10)
    optimizer = optim.SGD(model.parameters(), lr=0.01)
    train.Trainer(model, optimizer, DataLoader(data, batch_size=4, seed=0), DataLoader(data, batch_size=4),
                  epochs=1, out=tmp_path, progress=False).fit()
    again = models.model_from_checkpoint(tmp_path / "best.npz")
    assert type(again) is type(model)
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
