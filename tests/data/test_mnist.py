"""The IDX reader and the MNIST dataset: tiny synthetic files (good, corrupt, truncated) and the real ones."""
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from tinynet.data import MNIST, DataLoader, IDXError, MNISTNotFoundError, load_mnist, read_idx

REAL_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"

IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
                  np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array, dtype=np.uint8):
    """The IDX encoding of ``array``, written independently of the reader (struct-free, by hand)."""
    dtype = np.dtype(dtype)
    big = dtype.newbyteorder(">") if dtype.itemsize > 1 else dtype
    header = bytes([0, 0, IDX_TYPE_CODES[big], array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.asarray(array, dtype=big).tobytes()


def write(path, content, compress=False):
    path = Path(path)
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def write_split(folder, images, labels, split="train", compress=True):
    names = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}[split]
    suffix = ".gz" if compress else ""
    write(Path(folder) / (names[0] + suffix), idx_bytes(images), compress)
    write(Path(folder) / (names[1] + suffix), idx_bytes(labels), compress)


def random_digits(rng, count):
    return (rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, size=count, dtype=np.uint8))


# --------------------------------------------------------------------------- read_idx
@settings(max_examples=20)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple),
       st.sampled_from([np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"]), st.booleans(), st.integers(0, 2**31 - 1))
def test_read_idx_round_trips_every_type_and_shape(tmp_path_factory, shape, dtype, compress, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(-100, 100, size=shape).astype(np.dtype(dtype).newbyteorder("="))
    if np.dtype(dtype) == np.uint8:
        values = rng.integers(0, 256, size=shape).astype(np.uint8)
    path = write(tmp_path_factory.mktemp("idx") / "x.idx", idx_bytes(values, dtype), compress)
    read = read_idx(path)
    assert read.shape == shape and read.dtype == values.dtype and read.dtype.isnative
    np.testing.assert_array_equal(read, values)
    read[...] = 0          # a private, writable copy (not a view of the file's bytes)


def test_read_idx_gz_is_detected_by_content_not_name(tmp_path):
    values = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = write(tmp_path / "no-suffix", idx_bytes(values), compress=True)
    np.testing.assert_array_equal(read_idx(path), values)


def test_wrong_magic_number_names_the_file_and_what_was_expected(tmp_path):
    labels = write(tmp_path / "labels", idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(IDXError, match=r"labels: magic number 0x00000801, expected 0x00000803 "
                                       r"\(unsigned bytes, 3 dimensions\)"):
        read_idx(labels, expected_magic=0x00000803)


def test_a_file_that_is_not_idx_is_refused(tmp_path):
    path = write(tmp_path / "photo.jpg", b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(IDXError, match=r"photo.jpg: not an IDX file: magic number 0xFFD8FFE0"):
        read_idx(path)
    unknown_type = write(tmp_path / "t", bytes([0, 0, 0x07, 1]) + (3).to_bytes(4, "big") + bytes(3))
    with pytest.raises(IDXError, match="not an IDX file"):
        read_idx(unknown_type)


def test_truncated_values_say_how_many_bytes_were_promised(tmp_path):
    content = idx_bytes(np.ones((3, 4, 5), np.uint8))
    path = write(tmp_path / "cut", content[:-7])
    with pytest.raises(IDXError, match=r"cut: truncated: the header promises 3x4x5 values \(60 bytes after "
                                       r"the 16-byte header\), the file holds 53"):
        read_idx(path)


def test_truncated_header_and_empty_file(tmp_path):
    content = idx_bytes(np.ones((3, 4, 5), np.uint8))
    with pytest.raises(IDXError, match=r"short: truncated header: 3 dimensions need 16 header bytes, "
                                       r"the file has 10"):
        read_idx(write(tmp_path / "short", content[:10]))
    with pytest.raises(IDXError, match="empty: 0 bytes is too short for an IDX header"):
        read_idx(write(tmp_path / "empty", b""))


def test_trailing_bytes_are_an_error(tmp_path):
    path = write(tmp_path / "long", idx_bytes(np.ones(4, np.uint8)) + b"\x00\x00")
    with pytest.raises(IDXError, match=r"long: 2 bytes after the 4 values"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32).astype(">i4"), ">i4"))
    path = write(tmp_path / "x.gz", compressed[: len(compressed) // 2])
    with pytest.raises(IDXError, match=r"x.gz: damaged or truncated gzip file"):
        read_idx(path)


# --------------------------------------------------------------------------- load_mnist and MNIST
@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_reads_both_splits(tmp_path, compress):
    rng = np.random.default_rng(0)
    train_images, train_labels = random_digits(rng, 7)
    test_images, test_labels = random_digits(rng, 3)
    write_split(tmp_path, train_images, train_labels, "train", compress)
    write_split(tmp_path, test_images, test_labels, "test", compress)
    images, labels = load_mnist(tmp_path, "train")
    assert images.dtype == np.uint8 and images.shape == (7, 28, 28) and labels.shape == (7,)
    np.testing.assert_array_equal(images, train_images)
    np.testing.assert_array_equal(labels, train_labels)
    images, labels = load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(images, test_images)
    np.testing.assert_array_equal(labels, test_labels)


def test_load_mnist_checks_the_pair_of_files(tmp_path):
    rng = np.random.default_rng(1)
    images, labels = random_digits(rng, 5)
    write_split(tmp_path, images, labels[:4])
    with pytest.raises(IDXError, match=r"holds 5 images but .*train-labels-idx1-ubyte.gz holds 4 labels"):
        load_mnist(tmp_path)
    bad = labels.copy()
    bad[3] = 10
    write_split(tmp_path, images, bad)
    with pytest.raises(IDXError, match=r"label 10 at position 3, expected digits 0-9"):
        load_mnist(tmp_path)
    write_split(tmp_path, images[:, :27, :], labels)
    with pytest.raises(IDXError, match=r"images of 27x28 pixels, expected MNIST's 28x28"):
        load_mnist(tmp_path)
    write_split(tmp_path, labels, images)      # the two files swapped
    with pytest.raises(IDXError, match=r"train-images-idx3-ubyte.gz: magic number 0x00000801, "
                                       r"expected 0x00000803"):
        load_mnist(tmp_path)


def test_missing_files_and_bad_split(tmp_path):
    with pytest.raises(MNISTNotFoundError, match=r"no MNIST file train-images-idx3-ubyte \(or "
                                                 r"train-images-idx3-ubyte.gz\)"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train'\], got 'val'"):
        load_mnist(tmp_path, "val")


def test_mnist_dataset_feeds_the_dataloader(tmp_path):
    rng = np.random.default_rng(2)
    images, labels = random_digits(rng, 10)
    write_split(tmp_path, images, labels)
    dataset = MNIST(tmp_path)
    assert len(dataset) == 10 and dataset.classes[9] == "9"
    batches = list(DataLoader(dataset, batch_size=4, shuffle=True, seed=0))
    assert [b[0].shape for b in batches] == [(4, 1, 28, 28), (4, 1, 28, 28), (2, 1, 28, 28)]
    order = DataLoader(dataset, batch_size=4, shuffle=True, seed=0).indices(0)
    seen = np.concatenate([b[0] for b in batches])
    np.testing.assert_allclose(seen[:, 0], images[order] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels[order])

    def shift_right(image, rng):   # a transform receives the loader's per-sample generator
        assert isinstance(rng, np.random.Generator)
        return np.roll(image, 1, axis=1)
    shifted = MNIST(tmp_path, transform=shift_right)
    image, label = shifted[3]
    np.testing.assert_array_equal(image, np.roll(images[3], 1, axis=1))
    assert label == labels[3]


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="the shared MNIST files are not on this machine")
def test_real_mnist_files():
    expected = dict(line.split()[::-1] for line in (REAL_MNIST / "SHA256SUMS").read_text().splitlines() if line)
    train_images, train_labels = load_mnist(REAL_MNIST, "train")
    test_images, test_labels = load_mnist(REAL_MNIST, "test")
    assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    # the arrays are exactly the published files' contents: re-encode them and hash
    for name, array in (("train-images-idx3-ubyte", train_images), ("train-labels-idx1-ubyte", train_labels),
                        ("t10k-images-idx3-ubyte", test_images), ("t10k-labels-idx1-ubyte", test_labels)):
        assert hashlib.sha256(idx_bytes(array)).hexdigest() == expected[name], name
    assert np.bincount(train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert tinynet.data.MNIST is MNIST
