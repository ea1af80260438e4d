"""tinynet.train: the one training loop, evaluation, and the image-classification command.

    import tinynet, tinynet.models as models
    from tinynet import optim, train

    model = models.create("resnet18", num_classes=2)
    optimizer = optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    trainer = train.Trainer(model, optimizer, train_loader, val_loader, epochs=20, out="runs/mine",
                            scheduler=optim.CosineAnnealingLR(optimizer, epochs=20, warmup_epochs=2))
    trainer.fit()                                   # progress bars, metrics.csv, curves.png, best/last.npz
    score = train.with_interval(train.evaluate(model, test_loader))

:class:`Trainer` (``loop.py``) is the loop every script shares: exact resume from ``last.npz``
at any batch boundary, the non-finite-loss stop, schedules, data-parallel metrics, callbacks.
``evaluation.py`` scores (centre crop, ten-crop, Wilson intervals); ``images.py`` is the recipe
and command line of an image classifier on a labelled folder (``python -m tinynet.train``,
``examples/alexnet_catdog.py``).  docs/training.md walks through it.
"""
from .evaluation import (Z_95, describe_score, evaluate, probabilities, score_probabilities,
                         ten_crop_probabilities, wilson_interval, with_interval)
from .loop import Callback, Trainer, all_finite, describe_position, training_loss
from .outputs import METRIC_FIELDS, draw_training_curves, pyplot, save_figure, write_csv, write_json
from .stop import Diverged, Interrupted, StopRequest

__all__ = ["Trainer", "Callback", "training_loss", "all_finite", "describe_position",
           "evaluate", "probabilities", "ten_crop_probabilities", "score_probabilities", "wilson_interval",
           "with_interval", "describe_score", "Z_95",
           "METRIC_FIELDS", "write_csv", "write_json", "pyplot", "save_figure", "draw_training_curves",
           "StopRequest", "Interrupted", "Diverged"]
