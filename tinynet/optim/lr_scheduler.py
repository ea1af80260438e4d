"""Learning-rate schedules: StepLR, ReduceLROnPlateau (PyTorch's semantics) and CosineAnnealingLR
with a linear warm-up.

The AlexNet recipe: "divide the learning rate by 10 when the validation error
rate stopped improving" -- ``ReduceLROnPlateau(optimizer, mode='max',
factor=0.1, patience=...)`` stepped with the validation accuracy each epoch.
Each schedule is stepped once per epoch, after it; ``steps_on_metric`` says
whether ``step`` takes the validation metric.
"""
import math


class StepLR:
    """lr = initial_lr * gamma ** (epoch // step_size); call ``step()`` once per epoch."""

    steps_on_metric = False

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_epoch = 0

    def step(self):
        self.last_epoch += 1
        factor = self.gamma ** (self.last_epoch // self.step_size)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state):
        self.last_epoch, self.base_lrs = int(state["last_epoch"]), [float(x) for x in state["base_lrs"]]


class ReduceLROnPlateau:
    """Multiply lr by ``factor`` after ``patience`` epochs without improvement of the metric."""

    steps_on_metric = True

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1, got {factor}")
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError("ReduceLROnPlateau: mode must be 'min'/'max' and threshold_mode 'rel'/'abs'")
        self.optimizer, self.mode, self.factor, self.patience = optimizer, mode, factor, patience
        self.threshold, self.threshold_mode, self.cooldown = threshold, threshold_mode, cooldown
        self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.eps = eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def is_better(self, value, best):
        if self.mode == "min":
            limit = best * (1 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold
            return value < limit
        limit = best * (1 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold
        return value > limit

    def step(self, metric):
        metric = float(metric)
        self.last_epoch += 1
        if self.is_better(metric, self.best):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                new_lr = max(group["lr"] * self.factor, min_lr)
                if group["lr"] - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter, "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.last_epoch = int(state["last_epoch"])


class CosineAnnealingLR:
    """A linear warm-up, then half a cosine from the initial rate down to ``min_lr``.

    With E = ``epochs`` and W = ``warmup_epochs``, epoch e (from 0) trains with

        lr(e) = base * (e + 1) / (W + 1)                                    for e < W
        lr(e) = min_lr + (base - min_lr) * (1 + cos(pi * (e - W) / (E - W))) / 2   for e >= W

    so the warm-up climbs in equal steps towards ``base``, which epoch W reaches, and the
    cosine would touch ``min_lr`` one epoch after the last.  The warm-up (Goyal et al., 2017)
    keeps the first steps of a large rate from throwing the fresh weights far off; the cosine
    (Loshchilov and Hutter, 2017) lowers the rate smoothly instead of waiting for a plateau
    that a small, noisy validation split may signal too early.  ``step()`` once per epoch.
    """

    steps_on_metric = False

    def __init__(self, optimizer, epochs, warmup_epochs=0, min_lr=0.0):
        if int(epochs) < 1 or not 0 <= int(warmup_epochs) < int(epochs):
            raise ValueError(f"CosineAnnealingLR: need epochs >= 1 and 0 <= warmup_epochs < epochs, got "
                             f"epochs={epochs}, warmup_epochs={warmup_epochs}")
        if min_lr < 0:
            raise ValueError(f"CosineAnnealingLR: min_lr must be >= 0, got {min_lr}")
        self.optimizer, self.epochs, self.warmup_epochs = optimizer, int(epochs), int(warmup_epochs)
        self.min_lr = float(min_lr)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr_at(self, epoch, base):
        """The rate of epoch ``epoch`` (from 0) for the initial rate ``base``."""
        warmup = self.warmup_epochs
        if epoch < warmup:
            return base * (epoch + 1) / (warmup + 1)
        progress = min(epoch - warmup, self.epochs - warmup) / (self.epochs - warmup)
        return self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _apply(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.last_epoch, base)

    def step(self):
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs), "epochs": self.epochs,
                "warmup_epochs": self.warmup_epochs, "min_lr": self.min_lr}

    def load_state_dict(self, state):
        self.last_epoch, self.base_lrs = int(state["last_epoch"]), [float(x) for x in state["base_lrs"]]
        self.epochs, self.warmup_epochs = int(state["epochs"]), int(state["warmup_epochs"])
        self.min_lr = float(state["min_lr"])
        self._apply()
