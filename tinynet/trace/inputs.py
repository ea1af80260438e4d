"""What the explainer feeds a network: a model from a checkpoint or the registry, a photo or a digit.

A checkpoint written by ``examples/alexnet_catdog.py`` holds the model's registry config
(``tinynet.models.model_from_checkpoint``), the class names, the crop size it was trained on
(``config["image_size"]``) and the colour statistics (``statistics["mean"]``, ``["std"]``); one
written by ``examples/lenet_mnist.py`` holds the digit scaling (``config["input_scale"]``,
``["input_offset"]``).  A photo is prepared as the training script evaluates: resized so that
its shorter side is ``round(size * 256 / 227)`` (the paper's 256 for 227), centre-cropped to
``size``, scaled to [0, 1] and normalised per channel.
"""
import numpy as np
from PIL import Image

from ..data import transforms as T

__all__ = ["load_model", "photo_input", "digit_input", "resize_size"]

#: ImageNet's channel statistics: used for a fresh network (no checkpoint to say otherwise)
IMAGENET_STATISTICS = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def resize_size(image_size):
    """The shorter side before the centre crop: 256 for 227, the same ratio for other sizes."""
    return int(round(image_size * 256 / 227))


def load_model(checkpoint=None, name=None, num_classes=2, seed=0, **options):
    """``(model, info)``: the model of ``checkpoint`` (a path), or a fresh ``name`` from the
    registry (seeded).  ``info`` holds ``classes``, ``image_size``, ``statistics`` and
    ``digit_scaling`` where the checkpoint says them (else None)."""
    import tinynet
    import tinynet.models as models

    if checkpoint is None:
        if name is None:
            raise ValueError("load_model: give a checkpoint or a registry name")
        tinynet.manual_seed(seed)
        model = models.create(name, num_classes=num_classes, **options)
        return model.eval(), {"classes": None, "image_size": None, "statistics": None, "digit_scaling": None,
                              "config": models.config_of(model)}
    state = tinynet.load(checkpoint)
    model = models.model_from_checkpoint(state)
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    statistics = state.get("statistics") if isinstance(state.get("statistics"), dict) else None
    classes = state.get("classes") if isinstance(state.get("classes"), (list, tuple)) else None
    scaling = None
    if "input_scale" in config and "input_offset" in config:
        scaling = (float(config["input_scale"]), float(config["input_offset"]))
    return model.eval(), {"classes": list(classes) if classes else None, "image_size": config.get("image_size"),
                          "statistics": statistics, "digit_scaling": scaling, "config": state[models.CONFIG_KEY]}


def photo_input(path, image_size=227, statistics=None):
    """``(x, rgb)``: the normalised (1, 3, size, size) float32 input and the crop it shows (uint8 HWC)."""
    statistics = statistics or IMAGENET_STATISTICS
    with Image.open(path) as image:
        crop = T.Compose([T.Resize(resize_size(image_size)), T.CenterCrop(image_size)])(image.convert("RGB"))
    rgb = np.asarray(crop, dtype=np.uint8)
    x = T.Normalize(statistics["mean"], statistics["std"])(T.ToArray()(rgb))
    return x[None].astype(np.float32), rgb


def digit_input(image, scaling=None):
    """``(x, grey)``: a 28x28 uint8 digit padded by 2 to 32x32 and scaled as LeNet-5 was trained
    (``x = pixel * scale + offset``; without a checkpoint's scaling, MNIST's usual mean and
    standard deviation of the padded digits, 0.1 and 0.3)."""
    scale, offset = scaling or (1.0 / (255.0 * 0.3), -0.1 / 0.3)
    frame = np.zeros((32, 32), dtype=np.uint8)
    frame[2:30, 2:30] = np.asarray(image, dtype=np.uint8)
    x = frame.astype(np.float32) * np.float32(scale) + np.float32(offset)
    return x[None, None], np.repeat(frame[..., None], 3, axis=-1)
