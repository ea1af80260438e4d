"""MNIST digits as LeNet-5 reads them: padded to 32x32, shifted at random, scaled.

    transform = DigitTransform(*input_scaling("modern", train_images), max_shift=2)
    dataset = MNIST("../shared/data/mnist", "train", transform=transform)
"""
import math

import numpy as np

__all__ = ["DigitTransform", "input_scaling"]


class DigitTransform:
    """uint8 28x28 digit -> float32 (1, 32, 32): pad by 2, shift at random (training), scale.

    A shift of (dy, dx) moves the digit inside the padded frame; what moves out of the frame is
    lost and what moves in is background, as with a camera that saw the digit elsewhere.  The
    random offsets come from the DataLoader's per-sample generator, so a run is reproducible.
    """

    def __init__(self, scale, offset, max_shift=0):
        self.scale, self.offset, self.max_shift = np.float32(scale), np.float32(offset), int(max_shift)

    def __call__(self, image, rng):
        m = self.max_shift
        frame = np.zeros((32 + 2 * m, 32 + 2 * m), dtype=np.uint8)
        frame[2 + m:30 + m, 2 + m:30 + m] = image
        dy, dx = (rng.integers(-m, m + 1, size=2) if m else (0, 0))
        window = frame[m + dy:m + dy + 32, m + dx:m + dx + 32]
        return (window.astype(np.float32) * self.scale + self.offset)[None]


def input_scaling(variant, train_images):
    """(scale, offset) with x = pixel * scale + offset for the 32x32 padded digit.

    ``'classic'``: the paper's fixed scaling; otherwise the mean and standard deviation of the
    padded training digits ``train_images`` (uint8, (N, 28, 28)).
    """
    if variant == "classic":
        # the paper: "the values of the input pixels are normalized so that the background level
        # (white) corresponds to a value of -0.1 and the foreground (black) corresponds to 1.175"
        return 1.275 / 255.0, -0.1
    # mean and std of the padded training digits: the 28x28 sums over the 32x32 frame
    pixels = train_images.astype(np.float64) / 255.0
    count = len(train_images) * 32 * 32
    mean = pixels.sum() / count
    std = math.sqrt((pixels ** 2).sum() / count - mean ** 2)
    return 1.0 / (255.0 * std), -mean / std
