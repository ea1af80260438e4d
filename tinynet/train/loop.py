"""The training loop: epochs of SGD steps, validation, schedules, checkpoints and exact resume.

    trainer = Trainer(model, optimizer, train_loader, val_loader, epochs=30, out="runs/mine",
                      scheduler=optim.CosineAnnealingLR(optimizer, epochs=30, warmup_epochs=2))
    trainer.fit()

Where a run stands is ``epoch`` (0-based, the epoch in progress) and ``stage``: ``'train'`` (the
loader's own state says how many batches of it are done) or ``'validate'`` (its training pass is
complete; validation and the end-of-epoch bookkeeping are not).  Both go into ``last.npz``, so a
stop at any batch boundary -- right after an epoch's last batch too, where the loader already
points at the next epoch -- resumes at exactly that point, bit for bit: the weights, the
optimizer's momentum, the schedule, the data position, the random generators, the running
figures of the epoch and the history.

At the end of every epoch the trainer steps the schedule, appends a row to the history
(:data:`~tinynet.train.outputs.METRIC_FIELDS`), writes ``best.npz`` when validation accuracy
improved and ``last.npz``, rewrites ``metrics.csv`` and ``curves.png``, prints one line, and
calls the callbacks' ``on_epoch_end(trainer, row)``.  A non-finite training loss stops the run
before the step that would spread it, and no checkpoint is written with non-finite weights.

Data-parallel runs pass the process ``group`` (``tinynet.distributed.init()``): the model is
wrapped in :class:`~tinynet.distributed.DistributedDataParallel`, each batch's loss and accuracy
are summed over the ranks (every rank stops on the same figures), validation counts are added
up, a stop request is agreed by all ranks, and rank 0 alone prints and writes.
"""
import math
import sys
import time
from pathlib import Path

import numpy as np

import tinynet
from .. import backend
from ..nn import functional as F
from .evaluation import evaluate
from .outputs import draw_training_curves, write_csv
from .stop import Diverged, Interrupted, NeverStop

__all__ = ["Trainer", "Callback", "training_loss", "all_finite", "describe_position"]


def training_loss(model, outputs, labels):
    """``(loss, logits)``.  A network with auxiliary heads (GoogLeNet) returns several outputs in
    training mode and defines ``model.loss(outputs, labels)`` to weigh them; the first is the logits."""
    logits = outputs[0] if isinstance(outputs, tuple) else outputs
    loss_of = getattr(model, "loss", None)
    return (loss_of(outputs, labels) if callable(loss_of) else F.cross_entropy(logits, labels)), logits


def all_finite(model):
    """No NaN or infinity in the weights (checked on host copies, as a checkpoint write makes anyway)."""
    return all(bool(np.isfinite(backend.to_numpy(parameter.data)).all()) for parameter in model.parameters())


def describe_position(position, batch, batches):
    """Where a saved or running training stands, in words."""
    epoch = int(position["epoch"])
    if position["stage"] == "validate":
        return f"epoch {epoch + 1}, training pass done, before its validation"
    if batch == 0:
        return f"after epoch {epoch}" if epoch else "the start of epoch 1"
    return f"epoch {epoch + 1}, batch {batch} of {batches}"


class Callback:
    """What a script adds to the loop without copying it; every method is optional.

    ``on_epoch_end(trainer, row)`` after the epoch's checkpoints and metrics are written (row: the
    epoch's history entry); ``on_checkpoint(trainer, kind, state)`` before ``best``/``last`` is
    written (add entries to ``state``); ``on_fit_end(trainer)`` when training has reached its
    last epoch.
    """

    def on_epoch_end(self, trainer, row):
        pass

    def on_checkpoint(self, trainer, kind, state):
        pass

    def on_fit_end(self, trainer):
        pass


def _fresh_running():
    return {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}


def _default_epoch_message(row, held_out="val"):
    return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.1f}% | "
            f"{held_out} loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.1f}% | lr {row['lr']:.3g} | "
            f"{row['images_per_second']:.1f} img/s")


class Trainer:
    """One training run of a classifier (see the module's docstring).

    Parameters
    ----------
    model, optimizer : the network (on its device) and its optimizer.
    train_loader, val_loader : ``DataLoader``s (or ``DistributedDataLoader``s); the training one
        must be resumable (``state_dict``/``load_state_dict``).  ``val_loader`` may be None.
    epochs : the epoch to train to (in total, when resumed).
    scheduler : a learning-rate schedule stepped once per epoch, after validation; one whose
        ``step`` takes the metric (``ReduceLROnPlateau``) gets the validation accuracy.
    out : folder for ``best.npz``, ``last.npz``, ``metrics.csv`` and ``curves.png`` (None: none).
    loss : ``loss(model, outputs, labels) -> (loss, logits)``; default :func:`training_loss`.
    group : the data-parallel process group, or None.
    callbacks : :class:`Callback` objects.
    checkpoint_state : ``() -> dict`` merged into both checkpoints (what evaluation and
        prediction need besides the weights: classes, preprocessing, the model's registry
        configuration...).  Default: the registry configuration when the model was built by
        ``tinynet.models.create``, so ``tinynet.models.model_from_checkpoint`` rebuilds it.
    save_last : write ``last.npz`` (everything an exact resume needs) every epoch.
    title, held_out, as_error : the curves' title, the held-out split's name, and errors on a
        log scale instead of accuracies.
    epoch_message : ``row -> str`` printed after each epoch (default: loss, accuracy, rate and speed);
        a function that returns None prints nothing.
    description : a prefix of the progress bar's label.
    progress : show progress bars (rank 0 only).
    device : where the model lives (default: the device of its first parameter).
    """

    def __init__(self, model, optimizer, train_loader, val_loader=None, *, epochs, scheduler=None, out=None,
                 loss=None, group=None, callbacks=(), checkpoint_state=None, save_last=True, title=None,
                 held_out="validation", as_error=False, epoch_message=None, description="", progress=True,
                 device=None):
        if int(epochs) < 1:
            raise ValueError(f"Trainer: epochs must be >= 1, got {epochs}")
        self.model, self.optimizer, self.scheduler = model.train(), optimizer, scheduler
        self.train_loader, self.val_loader = train_loader, val_loader
        self.epochs = int(epochs)
        self.out = None if out is None else Path(out)
        self.loss = loss or training_loss
        self.group = group if group is not None and group.world_size > 1 else None
        self.callbacks = list(callbacks)
        self.checkpoint_state = checkpoint_state or self._registry_state
        self.save_last_enabled = bool(save_last)
        self.title = title or "training curves (tinynet)"
        self.held_out, self.as_error = held_out, as_error
        self.epoch_message = epoch_message or _default_epoch_message
        self.description, self.progress = description, progress
        if device is None:
            first = next(iter(model.parameters()), None)
            device = backend.device_of(first.data) if first is not None else "cpu"
        self.devices = sorted({"cpu", backend.normalize_device(device)})
        self.epoch, self.stage, self.history = 0, "train", []
        self.running = _fresh_running()
        self.best = {"epoch": 0, "val_accuracy": -1.0}
        self._network = None

    # -- where things go
    @property
    def is_writer(self):
        """Rank 0 of a data-parallel run (or the only process): prints and writes."""
        return self.group is None or self.group.rank == 0

    @property
    def last_path(self):
        return None if self.out is None else self.out / "last.npz"

    @property
    def best_path(self):
        return None if self.out is None else self.out / "best.npz"

    def say(self, message, error=False):
        if self.is_writer:
            print(message, file=sys.stderr if error else sys.stdout, flush=True)

    @property
    def network(self):
        """The model as the steps call it: wrapped for data parallelism (rank 0's weights everywhere,
        gradients averaged over the ranks in backward) once the state is final."""
        if self._network is None:
            if self.group is None:
                self._network = self.model
            else:
                from .. import distributed as dist
                self._network = dist.DistributedDataParallel(self.model)
        return self._network

    # -- checkpoints
    def _registry_state(self):
        config = getattr(self.model, "registry_config", None)
        return {} if config is None else {"model_config": {"name": config["name"],
                                                           "num_classes": config["num_classes"],
                                                           "options": dict(config["options"])}}

    def _save(self, path, state):
        if self.is_writer:
            tinynet.save(state, path)
        if self.group is not None:
            from .. import distributed as dist
            dist.barrier(f"barrier after writing {path}")

    def _checkpoint(self, kind, state):
        for callback in self.callbacks:
            hook = getattr(callback, "on_checkpoint", None)
            if hook is not None:
                hook(self, kind, state)
        return state

    def save_best(self):
        """``best.npz``: what evaluation and prediction need (the weights and ``checkpoint_state``)."""
        if self.out is None:
            return
        state = dict(self.checkpoint_state(), model=self.model.state_dict(), epoch=self.best["epoch"],
                     val_accuracy=self.best["val_accuracy"])
        self._save(self.best_path, self._checkpoint("best", state))

    def state_dict(self):
        """Everything an exact resume needs (about twice best.npz: the momentum buffers)."""
        state = dict(self.checkpoint_state(), model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                     loader=self.train_loader.state_dict(),
                     generators={d: backend.generator(d).get_state() for d in self.devices},
                     position={"epoch": self.epoch, "stage": self.stage}, running=dict(self.running),
                     history=list(self.history), best=dict(self.best))
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state):
        """Continue from ``state`` (a loaded ``last.npz``); call before :meth:`fit`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        self.train_loader.load_state_dict(state["loader"])
        for device in self.devices:  # a run resumed on the CPU leaves a saved GPU state alone
            if device in state["generators"]:
                backend.generator(device).set_state(state["generators"][device])
        self.epoch, self.stage = int(state["position"]["epoch"]), state["position"]["stage"]
        self.history, self.running = list(state["history"]), dict(state["running"])
        self.best = dict(state["best"])

    def resume(self, path=None):
        """Load ``path`` (default ``out/last.npz``) and continue from it."""
        state = tinynet.load(path or self.last_path)
        self.load_state_dict(state)
        return state

    def save_last(self):
        if not all_finite(self.model):
            raise Diverged(f"epoch {self.epoch + 1}: the weights are no longer finite")
        if self.out is None or not self.save_last_enabled:
            return
        self._save(self.last_path, self._checkpoint("last", self.state_dict()))

    # -- the loop
    def _all_reduce(self, values, description):
        from .. import distributed as dist
        return dist.all_reduce(values, description)

    def train_epoch(self, stop=None):
        """One pass over the training split (from where a resumed run left off)."""
        from tqdm import tqdm

        stop = stop or NeverStop()
        loader, epoch = self.train_loader, self.epoch
        if loader.state_dict()["epoch"] != epoch:
            raise tinynet.CheckpointError(f"inconsistent state: position epoch {epoch + 1}, "
                                          f"data loader epoch {loader.state_dict()['epoch'] + 1}")
        done = loader.state_dict()["batch"]
        network = self.network
        batches = iter(loader)
        progress = tqdm(batches, desc=f"{self.description}epoch {epoch + 1}/{self.epochs}", dynamic_ncols=True,
                        initial=done, total=len(loader), disable=not (self.is_writer and self.progress))
        started = time.perf_counter()
        try:
            for images, labels in progress:
                loss, logits = self.loss(self.model, network(tinynet.Tensor(images)), labels)
                loss_value = loss.item()
                batch_correct = int((logits.numpy().argmax(axis=1) == backend.to_numpy(labels)).sum())
                batch_loss, batch_count = loss_value * len(labels), len(labels)
                if self.group is not None:  # every rank sees the global batch's figures (and stops on them)
                    batch_loss, batch_correct, batch_count = self._all_reduce(
                        [batch_loss, batch_correct, batch_count], "training loss and accuracy").tolist()
                    loss_value = batch_loss / batch_count
                if not math.isfinite(loss_value):
                    raise Diverged(f"epoch {epoch + 1}, batch {done + 1} of {len(loader)}: the training loss "
                                   f"is {loss_value}")
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                done += 1
                running = self.running
                running["loss"] += batch_loss
                running["correct"] += int(batch_correct)
                running["count"] += int(batch_count)
                seconds = running["seconds"] + time.perf_counter() - started
                progress.set_postfix(loss=f"{running['loss'] / running['count']:.4f}",
                                     acc=f"{100 * running['correct'] / running['count']:.1f}%",
                                     img_s=f"{running['count'] / max(seconds, 1e-9):.1f}")
                if self.group is not None:  # stop together, at the same batch, or some rank waits forever
                    stop.requested = bool(self._all_reduce([int(stop.requested)], "stop request")[0])
                stop.check("train", epoch + 1, done)
        except Interrupted:
            if done == len(loader):  # stopped after the last batch: the training pass is complete
                self.stage = "validate"
            raise
        finally:
            self.running["seconds"] += time.perf_counter() - started
            progress.close()
            batches.close()
        self.stage = "validate"

    def validate(self, stop=None):
        """The validation scores of the current weights (``{'loss', 'accuracy', ...}``)."""
        stop = stop or NeverStop()
        if self.val_loader is None:
            return {"loss": float("nan"), "accuracy": float("nan"), "correct": 0, "images": 0}
        if hasattr(self.val_loader, "set_epoch"):
            # every validation sees the same samples with the same draws of any random transform: the
            # scores of two epochs differ only by the weights, and a resumed run validates as an
            # uninterrupted one (the loader's own epoch counter is not part of the saved state)
            self.val_loader.set_epoch(0)
        if self.group is not None:  # shards differ in length: no per-batch stop, one agreed check after
            validation = evaluate(self.model, self.val_loader, self.held_out, group=self.group,
                                  progress=self.progress)
            stop.requested = bool(self._all_reduce([int(stop.requested)], "stop request")[0])
            stop.check_at_boundary()
            return validation
        return evaluate(self.model, self.val_loader, self.held_out, progress=self.progress,
                        after_batch=lambda number: stop.check("val", self.epoch + 1, number))

    def _step_scheduler(self, validation):
        if self.scheduler is None:
            return
        if getattr(self.scheduler, "steps_on_metric", False):
            self.scheduler.step(validation["accuracy"])
        else:
            self.scheduler.step()

    def finish_epoch(self, validation):
        """Schedule, history, checkpoints and metrics of the epoch just validated; returns its row."""
        running = self.running
        row = {"epoch": self.epoch + 1, "train_loss": running["loss"] / max(running["count"], 1),
               "train_accuracy": running["correct"] / max(running["count"], 1), "val_loss": validation["loss"],
               "val_accuracy": validation["accuracy"], "lr": self.optimizer.param_groups[0]["lr"],
               "images_per_second": running["count"] / max(running["seconds"], 1e-9),
               "epoch_seconds": running["seconds"]}
        if not all_finite(self.model):
            raise Diverged(f"epoch {self.epoch + 1}: the weights are no longer finite after training "
                           f"(validation loss {validation['loss']})")
        self._step_scheduler(validation)
        self.history.append(row)
        self.epoch, self.stage, self.running = self.epoch + 1, "train", _fresh_running()
        if validation["accuracy"] > self.best["val_accuracy"]:
            self.best = {"epoch": row["epoch"], "val_accuracy": validation["accuracy"]}
            self.save_best()
        self.save_last()
        self.write_metrics()
        message = self.epoch_message(row)
        if message is not None:
            self.say(message)
        for callback in self.callbacks:
            hook = getattr(callback, "on_epoch_end", None)
            if hook is not None:
                hook(self, row)
        return row

    def write_metrics(self):
        """metrics.csv rewritten from the history (a resumed run never repeats a row) and curves.png."""
        if self.out is None or not self.is_writer:
            return
        write_csv(self.out / "metrics.csv", self.history)
        draw_training_curves(self.out / "curves.png", self.history, self.title, held_out=self.held_out,
                             as_error=self.as_error)

    def run_epoch(self, stop=None):
        """Train (or finish training) the current epoch and validate it; returns its history row."""
        if self.stage == "train":
            self.train_epoch(stop)
        return self.finish_epoch(self.validate(stop))

    def where(self):
        return describe_position({"epoch": self.epoch, "stage": self.stage}, self.train_loader.state_dict()["batch"],
                                 len(self.train_loader))

    def fit(self, stop=None):
        """Train to ``epochs``; returns the history.

        Raises :class:`Interrupted` after saving ``last.npz`` when ``stop`` (a
        :class:`StopRequest`) was set, and :class:`Diverged` when the loss or the weights stop
        being finite (no checkpoint is written then).
        """
        stop = stop or NeverStop()
        try:
            while self.epoch < self.epochs:
                self.run_epoch(stop)
                stop.check_at_boundary()
        except Interrupted:
            self.save_last()  # raises Diverged rather than save non-finite weights
            raise
        for callback in self.callbacks:
            hook = getattr(callback, "on_fit_end", None)
            if hook is not None:
                hook(self)
        return self.history
