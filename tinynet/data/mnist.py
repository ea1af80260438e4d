"""MNIST in its original IDX files: a checked reader and a ``Dataset`` for the DataLoader.

    from tinynet.data import MNIST, DataLoader
    train = MNIST("../shared/data/mnist", split="train")      # 60,000 digits, uint8 28x28
    loader = DataLoader(train, batch_size=64, shuffle=True)    # float32 (64, 1, 28, 28) in [0, 1]

The IDX format (LeCun & Cortes) is a big-endian header followed by raw values:

    byte 0-1   0x00 0x00                    (always zero)
    byte 2     element type                 0x08 = unsigned byte (MNIST uses only this)
    byte 3     number of dimensions d       3 for images, 1 for labels
    4 bytes    size of dimension 0          (big-endian unsigned 32-bit), then dimensions 1 .. d-1
    ...        prod(sizes) values, row-major (the last dimension changes fastest)

so the "magic number" of the first four bytes is 0x00000803 for an image file (unsigned bytes,
three dimensions: count, rows, columns) and 0x00000801 for a label file, and the values start at
byte 4 + 4*d: 16 for images, 8 for labels.  The distributed files are usually gzip-compressed;
:func:`read_idx` reads either form (it looks at the first two bytes, not the file name).

Every way a file can be wrong raises :class:`IDXError` naming the file and what was expected: an
unknown magic number, the wrong number of dimensions, a header cut short, fewer value bytes than
the header promises (a truncated download), extra bytes after them, a damaged gzip stream.
:func:`load_mnist` adds the checks between the two files of a split (as many labels as images,
labels 0-9, 28x28 images).
"""
from __future__ import annotations

import copy
import gzip
import os
import zlib

import numpy as np

from .dataset import ArrayDataset

__all__ = ["IDXError", "MNISTNotFoundError", "read_idx", "load_mnist", "find_mnist_file", "MNIST",
           "MNIST_FILES"]

# element-type byte -> dtype of one value (IDX stores multi-byte values big-endian)
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"

#: split -> (image file, label file), as LeCun's site names them (a ".gz" is found too)
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_IMAGE_SIZE = (28, 28)


class IDXError(ValueError):
    """An IDX file that is not what it should be (the message names the file)."""


class MNISTNotFoundError(FileNotFoundError):
    """The MNIST files are not in the folder given."""


def _read_bytes(path):
    """The file's content, gunzipped when it starts with gzip's magic bytes."""
    with open(path, "rb") as stream:
        raw = stream.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:  # EOFError: the gzip stream was cut short
        raise IDXError(f"{path}: damaged or truncated gzip file ({error})") from error


def read_idx(path, expected_magic=None):
    """The array stored in the IDX file ``path`` (optionally gzip-compressed), shaped as its header says.

    ``expected_magic`` (e.g. ``0x00000803`` for MNIST images) makes any other magic number an
    error.  The values are returned in native byte order (uint8 for MNIST).
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: {len(data)} bytes is too short for an IDX header (4 bytes of magic "
                       f"number, then 4 bytes per dimension)")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if expected_magic is not None and magic != expected_magic:
        raise IDXError(f"{path}: magic number 0x{magic:08X}, expected 0x{expected_magic:08X} "
                       f"({_describe_magic(expected_magic)})")
    if data[0] != 0 or data[1] != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise IDXError(f"{path}: not an IDX file: magic number 0x{magic:08X} (expected 0x0000TTDD: two "
                       f"zero bytes, an element type TT in {{{', '.join(f'0x{t:02X}' for t in _IDX_TYPES)}}} "
                       f"and at least one dimension DD)")
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise IDXError(f"{path}: truncated header: {ndim} dimensions need {header_bytes} header bytes, "
                       f"the file has {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[type_code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found_bytes = len(data) - header_bytes
    if found_bytes < expected_bytes:
        raise IDXError(f"{path}: truncated: the header promises {'x'.join(map(str, shape))} values "
                       f"({expected_bytes:,} bytes after the {header_bytes}-byte header), the file holds "
                       f"{found_bytes:,}")
    if found_bytes > expected_bytes:
        raise IDXError(f"{path}: {found_bytes - expected_bytes:,} bytes after the "
                       f"{'x'.join(map(str, shape))} values the header announces (expected exactly "
                       f"{expected_bytes:,} value bytes)")
    values = np.frombuffer(data, dtype=dtype, offset=header_bytes).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=True)  # writable, native order


def _describe_magic(magic):
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    kind = {0x08: "unsigned bytes", 0x09: "signed bytes", 0x0B: "16-bit integers", 0x0C: "32-bit integers",
            0x0D: "32-bit floats", 0x0E: "64-bit floats"}.get(type_code, f"type 0x{type_code:02X}")
    return f"{kind}, {ndim} dimension{'s' if ndim != 1 else ''}"


def find_mnist_file(root, name):
    """``root/name`` or ``root/name.gz``, whichever exists (raw first); MNISTNotFoundError otherwise."""
    for candidate in (os.path.join(root, name), os.path.join(root, name + ".gz")):
        if os.path.isfile(candidate):
            return candidate
    raise MNISTNotFoundError(f"no MNIST file {name} (or {name}.gz) in {os.path.abspath(root)}")


def load_mnist(root, split="train"):
    """``(images, labels)`` of one MNIST split: uint8 arrays of shapes (N, 28, 28) and (N,).

    ``split`` is ``"train"`` (60,000 digits) or ``"test"`` (10,000).  The two files must agree:
    as many labels as images, every label a digit 0-9, images of 28x28 pixels.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"MNIST split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    image_name, label_name = MNIST_FILES[split]
    image_path, label_path = find_mnist_file(root, image_name), find_mnist_file(root, label_name)
    images = read_idx(image_path, expected_magic=0x00000803)
    labels = read_idx(label_path, expected_magic=0x00000801)
    if images.shape[1:] != MNIST_IMAGE_SIZE:
        raise IDXError(f"{image_path}: images of {images.shape[1]}x{images.shape[2]} pixels, expected "
                       f"MNIST's {MNIST_IMAGE_SIZE[0]}x{MNIST_IMAGE_SIZE[1]}")
    if len(images) != len(labels):
        raise IDXError(f"{image_path} holds {len(images):,} images but {label_path} holds "
                       f"{len(labels):,} labels: expected one label per image")
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise IDXError(f"{label_path}: label {int(labels[bad])} at position {bad}, expected digits 0-9")
    return images, labels


class MNIST(ArrayDataset):
    """One MNIST split as a :class:`~tinynet.data.Dataset` of ``(image, label)`` samples.

    ``image`` is the uint8 28x28 array (the DataLoader's collate turns it into float32
    ``(1, 28, 28)`` in [0, 1]), or ``transform(image, rng)`` when a transform is given.  The
    whole split is read into memory once (47 MB for the 60,000 training digits).
    ``images`` and ``targets`` hold all of it; ``classes`` are ``"0" .. "9"``.
    """

    classes = [str(digit) for digit in range(10)]

    def __init__(self, root, split="train", transform=None):
        images, labels = load_mnist(root, split)
        super().__init__(images, labels.astype(np.int64), transform)   # the in-memory dataset, as is
        self.root, self.split = os.fspath(root), split

    def with_transform(self, transform):
        """The same digits (shared, not copied) with another transform."""
        twin = copy.copy(self)
        twin.transform = transform
        return twin

    def __repr__(self):
        return f"MNIST(split={self.split!r}, {len(self):,} digits, root={self.root!r})"
