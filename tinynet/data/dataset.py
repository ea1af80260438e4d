"""Datasets: the ``Dataset`` protocol, ``Subset`` and ``ArrayDataset``.

A dataset is anything with ``__len__`` and ``__getitem__`` returning a sample (for
images: ``(image, label)``).  tinynet datasets also have
``get(index, rng=None, substitute=True)``: the same sample, with the per-sample random
generator that the :class:`~tinynet.data.DataLoader` derives from
``(seed, epoch, index)`` passed to the transforms.  A dataset that can meet an
unreadable file (:class:`~tinynet.data.ImageFolder`) replaces it by the next readable
sample when ``substitute=True`` and raises :class:`BadSampleError` when
``substitute=False`` -- which :class:`Subset` uses so that the replacement stays inside
the subset (a training image is never replaced by a validation one).
"""
from __future__ import annotations

import inspect

import numpy as np

__all__ = ["Dataset", "Subset", "ArrayDataset", "BadSampleError", "get_sample", "dataset_labels"]


class BadSampleError(Exception):
    """Raised by ``get(..., substitute=False)`` when the sample's file cannot be read."""


class Dataset:
    """Base class.  Subclasses implement ``__len__`` and ``__getitem__`` (or ``get``)."""

    def __len__(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index):
        return self.get(index)

    def get(self, index, rng=None, substitute=True):
        """The sample at ``index``; the default ignores ``rng`` and calls ``self[index]``."""
        if type(self).__getitem__ is Dataset.__getitem__:
            raise NotImplementedError(f"{type(self).__name__} must define __getitem__ or get")
        return self[index]

    @property
    def skipped(self) -> int:
        """How many unreadable files were met so far (0 for in-memory datasets)."""
        return 0


_SUBSTITUTE_PARAM: dict = {}


def _takes_substitute(dataset) -> bool:
    kind = type(dataset)
    if kind not in _SUBSTITUTE_PARAM:
        try:
            params = inspect.signature(dataset.get).parameters
            _SUBSTITUTE_PARAM[kind] = "substitute" in params or any(
                p.kind == p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            _SUBSTITUTE_PARAM[kind] = False
    return _SUBSTITUTE_PARAM[kind]


def get_sample(dataset, index, rng=None, substitute=True):
    """``dataset.get(index, rng[, substitute])`` for tinynet datasets, else ``dataset[index]``.

    ``substitute=False`` is only passed to a ``get`` that accepts it (a subclass may
    define ``get(self, index, rng=None)``).
    """
    if not isinstance(dataset, Dataset):
        return dataset[index]
    if substitute or not _takes_substitute(dataset):
        return dataset.get(index, rng)
    return dataset.get(index, rng, substitute=False)


def _check_index(index, n):
    index = int(index)
    if index < 0:
        index += n
    if not 0 <= index < n:
        raise IndexError(f"index {index} out of range for a dataset of {n} samples")
    return index


class Subset(Dataset):
    """The samples ``dataset[indices[i]]``, ``i = 0 .. len(indices)-1``."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError("Subset indices out of range of the dataset")

    def __len__(self):
        return int(self.indices.size)

    def __getitem__(self, index):
        return self.get(index)

    def get(self, index, rng=None, substitute=True):
        n = len(self)
        index = _check_index(index, n)
        if not substitute:
            return get_sample(self.dataset, int(self.indices[index]), rng, False)
        for k in range(n):                       # next readable sample of *this* subset
            j = (index + k) % n
            try:
                return get_sample(self.dataset, int(self.indices[j]), rng, False)
            except BadSampleError:
                continue
        raise RuntimeError(f"no readable sample in this subset of {n} samples")

    @property
    def targets(self):
        labels = dataset_labels(self.dataset)
        return [labels[int(i)] for i in self.indices]

    @property
    def classes(self):
        return getattr(self.dataset, "classes", None)

    @property
    def transform(self):
        return getattr(self.dataset, "transform", None)

    @property
    def decode_hint(self):
        return getattr(self.dataset, "decode_hint", None)

    @property
    def skipped(self) -> int:
        return getattr(self.dataset, "skipped", 0)

    def __repr__(self):
        return f"Subset({len(self)} of {self.dataset!r})"


class ArrayDataset(Dataset):
    """In-memory samples ``(images[i], labels[i])``, e.g. CHW float32 arrays.

    ``transform(image, rng)`` (optional) is applied per sample.  Handy for tests and
    for synthetic data.
    """

    def __init__(self, images, labels, transform=None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.targets = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.get(index)

    def get(self, index, rng=None, substitute=True):
        index = _check_index(index, len(self))
        image = self.images[index]
        if self.transform is not None:
            from .transforms import call_transform, default_rng
            image = call_transform(self.transform, image, default_rng() if rng is None else rng)
        return image, int(self.targets[index])


def dataset_labels(dataset):
    """The label of every sample, without decoding images where the dataset knows them."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return list(np.asarray(targets).tolist())
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        return [int(s[1]) for s in samples]
    return [int(dataset[i][1]) for i in range(len(dataset))]
