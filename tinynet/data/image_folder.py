"""Image folders on disk: Kaggle's flat ``cat.123.jpg`` layout and one folder per class.

Layouts (auto-detected)
-----------------------
* **class folders**: ``root/<class>/**/*.jpg`` -- used as soon as one sub-folder of
  ``root`` holds an image; loose files directly in ``root`` are then ignored (warned).
* **flat (Kaggle)**: ``root/<label>.<anything>.jpg`` -- the label is the part of the
  file name before the first dot (``cat.123.jpg`` -> ``cat``).  Files whose name has no
  label part (``123.jpg``, e.g. Kaggle's unlabelled test folder) are ignored (warned).

Bad files
---------
Files are **not** decoded or opened up front by default (``verify=False``): listing
25 000 files is instant while opening each costs a pass over the disk, and a header
check cannot catch the common failure anyway (a truncated JPEG has a valid header).
Instead every file is decoded when it is first used; a file Pillow cannot decode
(zero bytes, not an image, truncated, ...) is warned about once
(:class:`UnreadableImageWarning`, one line naming the file), remembered in
``bad_files`` / counted in ``skipped``, and replaced by the next readable sample
(index + 1, wrapping), so a run never dies of one bad file and the replacement is
deterministic.  ``verify='header'`` (or ``True``) opens every file once at construction
(``Image.open``: header only, no pixel decoding) and drops the unreadable ones, so that
``len()`` and the class counts are exact before splitting; ``verify='full'`` decodes
everything (slow, catches truncation).  Files Pillow *can* read are converted: PNG
named ``.jpg`` (detected from the content), grayscale, CMYK, palette, and RGBA / LA
(composited onto white) all become RGB; an EXIF orientation tag is applied.
Truncated JPEGs count as bad (Pillow's ``LOAD_TRUNCATED_IMAGES`` is a process-wide
switch and would fill the missing part with grey).
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps

from .dataset import BadSampleError, Dataset, Subset, _check_index, dataset_labels
from .transforms import call_transform, default_rng

__all__ = [
    "ImageFolder", "load_image", "train_val_split", "train_val_test_split", "stratified_indices",
    "stratified_subset",
    "BadImageError", "UnreadableImageWarning", "NoImagesError", "IMG_EXTENSIONS",
]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_LAYOUT_HELP = ("expected either the flat Kaggle layout (root/cat.123.jpg, root/dog.7.jpg: "
                "label = file name before the first dot) or one folder per class "
                "(root/cat/xxx.jpg, root/dog/yyy.jpg)")


class BadImageError(BadSampleError, OSError):
    """A file Pillow cannot decode into an image."""


class UnreadableImageWarning(UserWarning):
    """Warned once per unreadable file that is skipped."""


class NoImagesError(FileNotFoundError, ValueError):
    """No usable image under the folder (a FileNotFoundError *and* a ValueError)."""


# ----------------------------------------------------------------- decoding
def load_image(path, size_hint=None) -> Image.Image:
    """Decode ``path`` into an RGB PIL image (fully loaded).

    ``size_hint=(w, h)``: the image will be resized so that both sides are at least
    ``w`` and ``h`` wide -- JPEGs are then decoded with ``Image.draft`` at the smallest
    1/2, 1/4 or 1/8 scale that still covers it (much faster for large photos).
    Raises :class:`BadImageError` for anything Pillow cannot decode.
    """
    try:
        with Image.open(path) as img:
            if size_hint is not None and img.format == "JPEG":
                img.draft("RGB", (int(size_hint[0]), int(size_hint[1])))
            img.load()
            orientation = img.getexif().get(0x0112, 1) if img.format in ("JPEG", "TIFF", "PNG", "WEBP") else 1
            if orientation not in (1, None):
                img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except BadImageError:
        raise
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError,
            Image.DecompressionBombError) as err:
        raise BadImageError(f"{path}: {type(err).__name__}: {err}") from err


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img.copy() if img.readonly else img
    has_alpha = img.mode in ("RGBA", "LA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = a.max() if a.size else 1.0
        a = np.clip(a / (hi if hi > 255 else 255.0) * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(a).convert("RGB")
    return img.convert("RGB")


def _natural_key(text):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _has_ext(name, extensions):
    return name.lower().endswith(extensions)


# ----------------------------------------------------------------- stratified indices
def stratified_indices(labels, fraction=None, count=None, seed=0):
    """Choose a seeded, per-class-proportional set of indices (sorted int64 array).

    Give ``fraction`` (of each class, rounded) or ``count`` (total; split over classes
    in proportion to their sizes by largest remainder).
    """
    labels = np.asarray(labels)
    n = labels.size
    classes = np.unique(labels)
    sizes = np.array([(labels == c).sum() for c in classes])
    if count is not None:
        count = int(min(max(count, 0), n))
        exact = sizes * (count / max(n, 1))
        take = np.floor(exact).astype(np.int64)
        remainder = count - take.sum()
        order = np.argsort(-(exact - take), kind="stable")
        take[order[:remainder]] += 1
    else:
        take = np.round(sizes * float(fraction)).astype(np.int64)
    chosen = []
    for c, k in zip(classes, take):
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng([int(seed), int(len(chosen))])
        chosen.append(members[rng.permutation(members.size)[:k]])
    out = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    return np.sort(out).astype(np.int64)


def train_val_split(dataset, val_fraction=0.1, seed=0):
    """Seeded split stratified per class -> ``(train_indices, val_indices)``.

    Each class contributes ``round(val_fraction * n_class)`` samples to validation (at
    least one sample of a class stays in training when ``val_fraction < 1``).  Both index
    arrays are sorted, disjoint and together cover the dataset; the same ``seed`` gives
    the same split.  Use with :class:`~tinynet.data.Subset`.
    """
    train, val, _ = train_val_test_split(dataset, val_fraction, 0.0, seed)
    return train, val


def train_val_test_split(dataset, val_fraction=0.1, test_fraction=0.0, seed=0):
    """Seeded split stratified per class -> ``(train_indices, val_indices, test_indices)``.

    Each class is shuffled once (seeded); its first ``round(val_fraction * n_class)``
    samples go to validation, the next ``round(test_fraction * n_class)`` to the test
    split, the rest to training.  The validation part therefore does not depend on
    ``test_fraction`` (``test_fraction=0`` gives exactly :func:`train_val_split`), so
    adding a test split takes its images from training only.  At least one sample of a
    class stays in training: validation is capped first (when ``val_fraction < 1``),
    then the test part.  A class too small for a part gets none there; callers that
    need every class in every part check the counts (``np.bincount`` of the labels).
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1], got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    labels = np.asarray(dataset_labels(dataset) if not isinstance(dataset, (list, np.ndarray))
                        else dataset)
    n = labels.size
    val, test = [], []
    for k, c in enumerate(np.unique(labels)):
        members = np.flatnonzero(labels == c)
        n_val = int(round(val_fraction * members.size))
        if val_fraction < 1.0:
            n_val = min(n_val, members.size - 1)
        n_test = min(int(round(test_fraction * members.size)), max(members.size - 1 - n_val, 0))
        order = members[np.random.default_rng([int(seed), k, 0x5A11]).permutation(members.size)]
        val.append(order[:n_val])
        test.append(order[n_val:n_val + n_test])

    def joined(parts):
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    val_idx, test_idx = joined(val), joined(test)
    mask = np.ones(n, bool)
    mask[val_idx] = False
    mask[test_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx, test_idx


def stratified_subset(dataset, count, seed=0):
    """A :class:`Subset` of ``count`` samples with the class proportions of ``dataset``."""
    return Subset(dataset, stratified_indices(dataset_labels(dataset), count=count, seed=seed))


# ----------------------------------------------------------------- the dataset
class ImageFolder(Dataset):
    """Labelled images from a folder (flat Kaggle layout or one folder per class).

    Parameters
    ----------
    root : folder to read.
    transform : ``transform(image, rng)`` applied to the RGB PIL image (e.g. a
        :class:`~tinynet.data.transforms.Compose`); ``None`` returns the PIL image.
    classes : optional list of class names; it fixes the label order (label = position)
        and drops samples of other classes.  Default: every class found, sorted.
    allow_missing_classes : with ``classes`` given, accept a folder that lacks some of
        them (e.g. scoring a 2-class model on a folder of dogs only); default: an error.
    extensions : accepted file name endings (case-insensitive).
    max_images : keep a seeded stratified subset of at most this many samples.
    seed : seed for ``max_images``.
    verify : ``False`` (lazy; see the module notes), ``'header'``/``True`` or ``'full'``.
    decode_size : ``(w, h)`` hint for JPEG draft decoding; default: the transform's
        ``decode_hint`` (a ``Resize(256)`` first gives ``(256, 256)``); ``False`` disables.

    Attributes: ``classes``, ``class_to_idx``, ``samples`` (list of ``(path, label)``),
    ``targets``, ``layout`` (``'flat'`` or ``'folders'``), ``skipped``, ``bad_files``.
    """

    def __init__(self, root, transform=None, classes=None, extensions=IMG_EXTENSIONS,
                 max_images=None, seed=0, verify=False, decode_size=None, allow_missing_classes=False):
        self.root = os.fspath(root)
        self.transform = transform
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower()
                                for e in extensions)
        self._lock = threading.Lock()
        self.bad_files: list = []
        self._bad = set()
        if not os.path.isdir(self.root):
            raise NoImagesError(f"image folder {self.root!r} does not exist; {_LAYOUT_HELP}")
        self.layout, found = self._scan()
        if classes is None:
            classes = sorted({label for _, label in found})
        else:
            classes = [str(c) for c in classes]
            missing = sorted(set(classes) - {label for _, label in found})
            if missing and not allow_missing_classes:
                raise NoImagesError(f"no images of class(es) {missing} in {self.root!r} "
                                    f"(found {sorted({l for _, l in found})}); {_LAYOUT_HELP}")
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = [(p, self.class_to_idx[l]) for p, l in found if l in self.class_to_idx]
        if not self.samples:
            raise NoImagesError(f"no images with extensions {self.extensions} found in "
                                f"{self.root!r}; {_LAYOUT_HELP}")
        if verify:
            self._verify(full=(verify == "full"))
        if max_images is not None and max_images < len(self.samples):
            keep = stratified_indices([l for _, l in self.samples], count=max_images, seed=seed)
            self.samples = [self.samples[i] for i in keep]
        self.targets = [l for _, l in self.samples]
        if decode_size is None:
            decode_size = getattr(transform, "decode_hint", None)
        self.decode_size = decode_size or None

    # -- discovery
    def _scan(self):
        entries = sorted(os.scandir(self.root), key=lambda e: _natural_key(e.name))
        files = [e for e in entries if e.is_file() and _has_ext(e.name, self.extensions)]
        folders = []
        for d in (e for e in entries if e.is_dir() and not e.name.startswith(".")):
            paths = []
            for dirpath, dirnames, filenames in os.walk(d.path, followlinks=True):
                dirnames[:] = sorted((x for x in dirnames if not x.startswith(".")), key=_natural_key)
                paths.extend(os.path.join(dirpath, f) for f in sorted(filenames, key=_natural_key)
                             if _has_ext(f, self.extensions) and not f.startswith("."))
            if paths:
                folders.append((d.name, paths))
        if folders:
            if files:
                warnings.warn(f"{self.root}: using the class folders "
                              f"{[name for name, _ in folders]}; ignoring {len(files)} image "
                              f"file(s) directly in the folder", UnreadableImageWarning, stacklevel=3)
            return "folders", [(p, name) for name, paths in folders for p in paths]
        found, unlabelled = [], 0
        for e in files:
            stem = e.name[: -len(os.path.splitext(e.name)[1])] if "." in e.name else e.name
            if "." not in stem or stem.startswith("."):
                unlabelled += 1
                continue
            found.append((e.path, stem.split(".", 1)[0]))
        if unlabelled:
            warnings.warn(f"{self.root}: ignoring {unlabelled} image file(s) without a "
                          f"'<label>.' prefix in the name", UnreadableImageWarning, stacklevel=3)
        return "flat", found

    def _verify(self, full=False):
        good = []
        for path, label in self.samples:
            try:
                if full:
                    load_image(path)
                else:
                    with Image.open(path) as img:
                        img.size  # header parsed by open(); no pixel data decoded
            except (BadImageError, OSError, SyntaxError, ValueError) as err:
                self._record_bad(path, err)
                continue
            good.append((path, label))
        if not good:
            raise NoImagesError(f"no readable images in {self.root!r}; {_LAYOUT_HELP}")
        self.samples = good

    def _record_bad(self, path, err):
        with self._lock:
            if path in self._bad:
                return
            self._bad.add(path)
            self.bad_files.append(path)
        warnings.warn(f"skipping unreadable image {path}: {err}", UnreadableImageWarning, stacklevel=2)

    # -- access
    @property
    def skipped(self) -> int:
        """Number of distinct unreadable files met so far."""
        return len(self.bad_files)

    def fingerprint(self) -> str:
        """A SHA-256 over the samples' paths (relative to ``root``) and labels, in order.

        Index-based splits stored in a checkpoint are only meaningful for the same
        list of files: two folders with the same fingerprint list the same files in
        the same order with the same labels (the pixels are not read).
        """
        digest = hashlib.sha256()
        for path, label in self.samples:
            relative = os.path.relpath(path, self.root).replace(os.sep, "/")
            digest.update(f"{relative}\t{self.classes[label]}\n".encode("utf-8"))
        return digest.hexdigest()

    def summary(self) -> str:
        per_class = np.bincount(self.targets, minlength=len(self.classes))
        counts = ", ".join(f"{c}: {k}" for c, k in zip(self.classes, per_class))
        return (f"{self.root} ({self.layout} layout): {len(self)} images ({counts}); "
                f"{self.skipped} unreadable file(s) skipped")

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.get(index)

    @property
    def decode_hint(self):
        return self.decode_size

    def load(self, index):
        """The RGB PIL image of sample ``index`` (raises :class:`BadImageError`)."""
        path = self.samples[index][0]
        if path in self._bad:
            raise BadImageError(f"{path}: known unreadable")
        try:
            return load_image(path, self.decode_size)
        except BadImageError as err:
            self._record_bad(path, err.__cause__ or err)
            raise

    def get(self, index, rng=None, substitute=True):
        """``(transform(image, rng), label)``; unreadable files -> next readable sample."""
        n = len(self)
        index = _check_index(index, n)
        for k in range(n if substitute else 1):
            j = (index + k) % n
            try:
                image = self.load(j)
            except BadImageError:
                if not substitute:
                    raise
                continue
            if self.transform is not None:
                image = call_transform(self.transform, image, default_rng() if rng is None else rng)
            return image, self.samples[j][1]
        raise RuntimeError(f"no readable image left in {self.root!r} ({n} files, all unreadable)")

    def __repr__(self):
        return (f"ImageFolder(root={self.root!r}, layout={self.layout!r}, classes={self.classes}, "
                f"n={len(self)})")
