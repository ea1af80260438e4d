"""Image transforms with explicit, per-sample random generators.

Conventions
-----------
* Until :class:`ToArray`, an image is a PIL image or an ``(H, W, C)`` (or ``(H, W)``)
  ``uint8`` NumPy array; geometric transforms return the same kind they were given.
  :class:`ToArray` makes a contiguous ``(C, H, W)`` ``float32`` array in ``[0, 1]``;
  :class:`Normalize`, :class:`PCAColorAugmentation` and :class:`TenCrop` also work on it.
* Every transform is called as ``transform(image, rng)`` where ``rng`` is a
  :class:`numpy.random.Generator`.  The :class:`~tinynet.data.DataLoader` gives each
  sample its own generator derived from ``(loader seed, epoch, dataset index)``, so the
  augmentation of a sample does not depend on which worker thread ran it or when.
  With ``rng=None`` a generator is drawn from :func:`tinynet.backend.generator`
  (reproducible after :func:`tinynet.manual_seed`).
* A transform may carry a ``decode_hint``: a ``(width, height)`` such that decoding the
  file at any size with both sides at least that large gives the same result (up to
  resampling) as decoding at full size.  :class:`~tinynet.data.ImageFolder` passes it to
  Pillow's ``Image.draft`` so that large JPEGs are decoded at 1/2, 1/4 or 1/8 scale.
  :class:`Compose` forwards the hint of its first transform.

The evaluation-time and AlexNet-specific pieces are :class:`TenCrop` and
:class:`PCAColorAugmentation` (with :func:`compute_rgb_pca` / :func:`compute_mean_std`
to estimate the statistics from training images).
"""
from __future__ import annotations

import inspect
import math
import numbers
import os

import numpy as np
from PIL import Image

from .. import backend

__all__ = [
    "Compose", "Resize", "RandomCrop", "CenterCrop", "RandomResizedCrop",
    "RandomHorizontalFlip", "ToArray", "Normalize", "PCAColorAugmentation", "TenCrop",
    "compute_rgb_pca", "compute_mean_std", "compute_rgb_stats", "call_transform",
    "default_rng", "to_chw_float",
]

_BILINEAR = Image.Resampling.BILINEAR
_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


# ----------------------------------------------------------------- helpers
def default_rng() -> np.random.Generator:
    """A fresh generator seeded from tinynet's CPU generator (see ``manual_seed``)."""
    seed = int(backend.generator("cpu").integers(0, 2 ** 63 - 1, None))
    return np.random.default_rng(seed)


def _accepts_rng(fn) -> bool:
    """True when ``fn`` can be called as ``fn(image, rng)``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    positional = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2 or "rng" in sig.parameters


def call_transform(fn, image, rng):
    """Call ``fn(image, rng)``, or ``fn(image)`` for a plain one-argument callable."""
    if isinstance(fn, Transform) or _accepts_rng(fn):
        return fn(image, rng)
    return fn(image)


def _pair(size, name="size"):
    """``int`` -> ``(s, s)``; ``(h, w)`` -> ``(h, w)``; validated positive ints."""
    if isinstance(size, numbers.Integral):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"{name} must be a positive int or an (h, w) pair, got {size!r}")
    return size


def _hw(image):
    """(height, width) of a PIL image or an HWC / CHW array (CHW when float)."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    a = np.asarray(image)
    if _is_chw_float(a):
        return a.shape[-2], a.shape[-1]
    return a.shape[0], a.shape[1]


def _is_chw_float(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.ndim >= 3


def _crop(image, top, left, height, width):
    """Crop a PIL image, an HWC array or a (..., C, H, W) float array."""
    if isinstance(image, Image.Image):
        return image.crop((left, top, left + width, top + height))
    if _is_chw_float(image):
        return image[..., top:top + height, left:left + width]
    return image[top:top + height, left:left + width]


def _to_pil(image):
    if isinstance(image, Image.Image):
        return image
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f"expected a PIL image or a uint8 HWC array, got dtype {a.dtype} "
                        f"(geometric resizing runs before ToArray)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(a))


def _like(result_pil, original):
    """Return ``result_pil`` as the same kind (PIL or array) as ``original``."""
    if isinstance(original, Image.Image):
        return result_pil
    out = np.asarray(result_pil)
    if np.asarray(original).ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def to_chw_float(image) -> np.ndarray:
    """PIL image / HWC uint8 array -> contiguous CHW float32 in [0, 1].

    Float arrays with ``ndim >= 3`` are taken to be CHW already (pass-through, cast to
    float32); a 2-D array is a single-channel image.
    """
    if isinstance(image, Image.Image):
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        a = np.asarray(image)
    else:
        a = np.asarray(image)
        if a.dtype.kind == "f":
            if a.ndim == 2:
                a = a[None]
            return np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {a.dtype}")
    out = np.empty((a.shape[2], a.shape[0], a.shape[1]), dtype=np.float32)
    np.multiply(a.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=out, dtype=np.float32)
    return out


# ----------------------------------------------------------------- base & composition
class Transform:
    """Base class: ``__call__(image, rng)``; ``decode_hint`` is ``None`` unless known."""

    decode_hint = None

    def __call__(self, image, rng=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Compose(Transform):
    """Apply transforms in order, all drawing from the same per-sample ``rng``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        self._takes_rng = [isinstance(t, Transform) or _accepts_rng(t) for t in self.transforms]

    @property
    def decode_hint(self):
        return getattr(self.transforms[0], "decode_hint", None) if self.transforms else None

    def __call__(self, image, rng=None):
        if rng is None:
            rng = default_rng()
        for t, takes_rng in zip(self.transforms, self._takes_rng):
            image = t(image, rng) if takes_rng else t(image)
        return image

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


# ----------------------------------------------------------------- geometry
class Resize(Transform):
    """Resize with Pillow (antialiased when shrinking).

    ``size`` an int: the shorter side becomes ``size`` and the longer one
    ``round(size * long / short)`` (aspect ratio kept; AlexNet uses 256).  ``size`` an
    ``(h, w)`` pair: exactly that size.  Images already at the target size are returned
    unchanged.
    """

    def __init__(self, size, interpolation="bilinear"):
        if isinstance(size, numbers.Integral):
            if size <= 0:
                raise ValueError(f"size must be positive, got {size}")
            self.size = int(size)
        else:
            self.size = _pair(size)
        self.interpolation = interpolation
        self._resample = _INTERPOLATIONS[interpolation]

    @property
    def decode_hint(self):
        if isinstance(self.size, int):
            return (self.size, self.size)   # both sides >= S  <=>  shorter side >= S
        return (self.size[1], self.size[0])

    def target_size(self, h, w):
        """The (h, w) this transform produces for an ``h x w`` input."""
        if not isinstance(self.size, int):
            return self.size
        s = self.size
        if h <= w:
            return s, max(1, int(round(s * w / h)))
        return max(1, int(round(s * h / w))), s

    def __call__(self, image, rng=None):
        h, w = _hw(image)
        th, tw = self.target_size(h, w)
        if (th, tw) == (h, w):
            return image
        return _like(_to_pil(image).resize((tw, th), self._resample), image)


class CenterCrop(Transform):
    """Crop the central ``size`` (int or ``(h, w)``) window: top = (H - h) // 2, left = (W - w) // 2."""

    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, image, rng=None):
        h, w = _hw(image)
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"CenterCrop{self.size} larger than the image ({h}x{w}); "
                             f"put a Resize before it")
        return _crop(image, (h - ch) // 2, (w - cw) // 2, ch, cw)


class RandomCrop(Transform):
    """Crop a ``size`` window at a uniformly random position (``top`` drawn before ``left``)."""

    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, image, rng=None):
        rng = default_rng() if rng is None else rng
        h, w = _hw(image)
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"RandomCrop{self.size} larger than the image ({h}x{w}); "
                             f"put a Resize before it")
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        return _crop(image, top, left, ch, cw)


class RandomResizedCrop(Transform):
    """Crop a random area/aspect window and resize it to ``size`` (Inception-style).

    Up to 10 tries: area fraction ``a ~ U(scale)``, log aspect ratio
    ``log r ~ U(log ratio)``, window ``w = round(sqrt(a*H*W*r))``, ``h = round(sqrt(a*H*W/r))``;
    accepted when it fits, placed uniformly.  Otherwise the largest central window with
    the aspect ratio clamped into ``ratio``.  Crop and resize are one Pillow call.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear"):
        self.size = _pair(size)
        self.scale = tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)
        if not (0 < self.scale[0] <= self.scale[1]) or not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"bad scale {scale} or ratio {ratio}")
        self.interpolation = interpolation
        self._resample = _INTERPOLATIONS[interpolation]

    def get_params(self, h, w, rng):
        """(top, left, height, width) of the window for an ``h x w`` image."""
        area = h * w
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(self.scale[0], self.scale[1])
            r = math.exp(rng.uniform(log_lo, log_hi))
            cw = int(round(math.sqrt(target * r)))
            ch = int(round(math.sqrt(target / r)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(rng.integers(0, h - ch + 1))
                left = int(rng.integers(0, w - cw + 1))
                return top, left, ch, cw
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, image, rng=None):
        rng = default_rng() if rng is None else rng
        h, w = _hw(image)
        top, left, ch, cw = self.get_params(h, w, rng)
        th, tw = self.size
        out = _to_pil(image).resize((tw, th), self._resample,
                                    box=(left, top, left + cw, top + ch))
        return _like(out, image)


class RandomHorizontalFlip(Transform):
    """Mirror left-right with probability ``p`` (always draws one uniform number)."""

    def __init__(self, p=0.5):
        self.p = float(p)

    def __call__(self, image, rng=None):
        rng = default_rng() if rng is None else rng
        if rng.random() >= self.p:
            return image
        if isinstance(image, Image.Image):
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        a = np.asarray(image)
        return a[..., ::-1] if _is_chw_float(a) else a[:, ::-1]


# ----------------------------------------------------------------- arrays
class ToArray(Transform):
    """PIL image or HWC uint8 -> contiguous CHW float32 in [0, 1] (``x / 255``).

    Float arrays (``ndim >= 3``) are assumed converted already and pass through.
    """

    def __call__(self, image, rng=None):
        return to_chw_float(image)


class Normalize(Transform):
    """Per channel: ``out[c] = (x[c] - mean[c]) / std[c]`` on CHW (or ``(..., C, H, W)``) floats."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if self.mean.shape != self.std.shape or np.any(self.std <= 0):
            raise ValueError("mean and std need the same length and std > 0")
        self._mean = self.mean[:, None, None]
        self._inv_std = (1.0 / self.std)[:, None, None].astype(np.float32)

    def __call__(self, image, rng=None):
        a = np.asarray(image)
        if a.dtype.kind != "f":
            raise TypeError("Normalize needs float CHW input: put ToArray() before it")
        out = a.astype(np.float32) - self._mean
        out *= self._inv_std
        return out


class PCAColorAugmentation(Transform):
    r"""AlexNet's "fancy PCA" lighting noise (Krizhevsky et al. 2012, section 4.1).

    With :math:`p_i, \lambda_i` the eigenvectors and eigenvalues of the 3x3 covariance of
    the RGB pixel values of the training set, every pixel :math:`I_{xy} = [R, G, B]^T`
    of one image gets the same offset

    .. math::  I_{xy} \leftarrow I_{xy} + [p_1, p_2, p_3]\,[\alpha_1\lambda_1,
               \alpha_2\lambda_2, \alpha_3\lambda_3]^T,
               \qquad \alpha_i \sim \mathcal N(0, \sigma^2),\ \sigma = \text{std} = 0.1,

    with the :math:`\alpha_i` drawn once per image (per call).  The offset therefore has
    covariance :math:`\sum_i (\sigma\lambda_i)^2 p_i p_i^T`.  ``eigenvectors`` holds the
    :math:`p_i` as **columns** (as returned by :func:`compute_rgb_pca`).

    Apply it to CHW float images (after :class:`ToArray`, before :class:`Normalize`);
    the eigen-decomposition must come from pixels on the same scale (``[0, 1]`` with
    :func:`compute_rgb_pca`).  Note: on the ``[0, 1]`` scale the eigenvalues are
    variances (~0.05 for the largest), so the shift is small; some implementations pass
    the square roots of the eigenvalues instead -- this class applies the paper's formula
    to whatever ``eigenvalues`` it is given.  No clipping is done.
    """

    def __init__(self, eigenvalues, eigenvectors, std=0.1):
        self.eigenvalues = np.asarray(eigenvalues, dtype=np.float64).reshape(3)
        self.eigenvectors = np.asarray(eigenvectors, dtype=np.float64).reshape(3, 3)
        self.std = float(std)

    def offset(self, rng):
        """One draw of the RGB offset ``P @ (alpha * lambda)``, shape (3,)."""
        alpha = rng.normal(0.0, self.std, size=3)
        return self.eigenvectors @ (alpha * self.eigenvalues)

    def __call__(self, image, rng=None):
        rng = default_rng() if rng is None else rng
        a = np.asarray(image)
        if a.dtype.kind != "f" or a.ndim < 3 or a.shape[-3] != 3:
            raise TypeError("PCAColorAugmentation needs RGB CHW float input: put ToArray() before it")
        delta = self.offset(rng)
        if self.std == 0.0:
            return a
        return (a + delta.astype(np.float32)[:, None, None]).astype(np.float32, copy=False)


class TenCrop(Transform):
    r"""The ten ``size`` crops of AlexNet's test-time averaging.

    For an ``H x W`` image and an ``h x w`` crop: top-left ``[0:h, 0:w]``, top-right
    ``[0:h, W-w:W]``, bottom-left ``[H-h:H, 0:w]``, bottom-right ``[H-h:H, W-w:W]``,
    centre ``[t:t+h, l:l+w]`` with ``t = (H-h)//2``, ``l = (W-w)//2``, then the same five
    mirrored left-right (in that order).  Returns a contiguous ``(10, C, h, w)`` float32
    array (uint8 / PIL input is converted as by :class:`ToArray`); the network's
    prediction is the mean of its softmax outputs over the ten crops.
    """

    def __init__(self, size):
        self.size = _pair(size)

    def crop_boxes(self, h, w):
        """The five (top, left) corners in the order tl, tr, bl, br, centre."""
        ch, cw = self.size
        return [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]

    def __call__(self, image, rng=None):
        a = to_chw_float(image)
        h, w = a.shape[-2:]
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"TenCrop{self.size} larger than the image ({h}x{w})")
        out = np.empty((10,) + a.shape[:-2] + (ch, cw), dtype=np.float32)
        for k, (t, l) in enumerate(self.crop_boxes(h, w)):
            out[k] = a[..., t:t + ch, l:l + cw]
            out[k + 5] = out[k][..., ::-1]
        return out


# ----------------------------------------------------------------- dataset statistics
def _pixel_sources(source, max_images, seed, size):
    """Yield (P, 3) float64 RGB pixel arrays in [0, 1] from ``source``.

    ``source``: an ImageFolder (or a Subset of one, nested allowed), a list of paths,
    or any dataset whose ``ds[i][0]`` is a PIL image / HWC uint8 / CHW float image.
    """
    from .image_folder import BadImageError, load_image  # local: avoid an import cycle

    paths = None
    dataset = None
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    if isinstance(source, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in source):
        paths = [os.fspath(p) for p in source]
    else:
        base, idx = source, None
        while hasattr(base, "indices") and hasattr(base, "dataset"):   # Subset chain
            sub = np.asarray(base.indices, dtype=np.int64)
            idx = sub if idx is None else sub[idx]
            base = base.dataset
        if hasattr(base, "samples"):
            chosen = range(len(base.samples)) if idx is None else idx
            paths = [base.samples[int(i)][0] for i in chosen]
        else:
            dataset = source
    n = len(paths) if paths is not None else len(dataset)
    order = np.arange(n)
    if max_images is not None and max_images < n:
        order = np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))
    resize = Resize(size) if size else None
    for i in order:
        if paths is not None:
            try:
                img = load_image(paths[i], resize.decode_hint if resize else None)
            except BadImageError:
                continue
        else:
            img = dataset[int(i)][0]
        if resize is not None and not _is_chw_float(img):
            img = resize(img)
        a = to_chw_float(img)
        if a.shape[0] == 1:
            a = np.repeat(a, 3, axis=0)
        yield a.reshape(a.shape[0], -1).T.astype(np.float64)


def compute_rgb_stats(source, max_images=1000, seed=0, size=128):
    """One pass over (up to ``max_images``, seeded choice of) images -> RGB statistics.

    Pixels are in [0, 1]; each image is first resized so its shorter side is ``size``
    (``None``: full size; decoding uses JPEG draft mode).  Returns a dict with
    ``mean`` (3,), ``std`` (3,), ``cov`` (3, 3), ``eigenvalues`` (3,, descending),
    ``eigenvectors`` (3, 3, orthonormal columns) and ``num_pixels``, ``num_images``.
    """
    total = np.zeros(3)
    outer = np.zeros((3, 3))
    count = 0
    images = 0
    for px in _pixel_sources(source, max_images, seed, size):
        total += px.sum(axis=0)
        outer += px.T @ px
        count += px.shape[0]
        images += 1
    if count == 0:
        raise ValueError("compute_rgb_stats: no readable images in the source")
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    cov = (cov + cov.T) / 2
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues[::-1].copy(), eigenvectors[:, ::-1].copy()
    # fix each eigenvector's sign (largest component positive) so results are reproducible
    signs = np.sign(eigenvectors[np.argmax(np.abs(eigenvectors), axis=0), np.arange(3)])
    eigenvectors *= np.where(signs == 0, 1.0, signs)
    return {
        "mean": mean.astype(np.float32),
        "std": np.sqrt(np.maximum(np.diag(cov), 0)).astype(np.float32),
        "cov": cov,
        "eigenvalues": np.maximum(eigenvalues, 0.0),
        "eigenvectors": eigenvectors,
        "num_pixels": count,
        "num_images": images,
    }


def compute_rgb_pca(source, max_images=1000, seed=0, size=128):
    r"""Eigen-decomposition of the 3x3 RGB covariance :math:`\Sigma = E[(x-\mu)(x-\mu)^T]`.

    ``x`` ranges over the RGB pixels (in [0, 1]) of the training images.  Returns
    ``(eigenvalues, eigenvectors)``: eigenvalues descending, eigenvectors as orthonormal
    columns with :math:`\Sigma p_i = \lambda_i p_i` -- the inputs of
    :class:`PCAColorAugmentation`.  See :func:`compute_rgb_stats` for the arguments.
    """
    stats = compute_rgb_stats(source, max_images=max_images, seed=seed, size=size)
    return stats["eigenvalues"], stats["eigenvectors"]


def compute_mean_std(source, max_images=1000, seed=0, size=128):
    """Per-channel mean and standard deviation (float32, shape (3,)) of pixels in [0, 1]."""
    stats = compute_rgb_stats(source, max_images=max_images, seed=seed, size=size)
    return stats["mean"], stats["std"]
