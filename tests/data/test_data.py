"""Datasets, image folders (both layouts, messy files), stratified splits and the DataLoader."""
import io
import os
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

import tinynet.backend as backend
from tinynet.data import (ArrayDataset, DataLoader, ImageFolder, NoImagesError, Subset,
                          UnreadableImageWarning, load_image, stratified_indices,
                          stratified_subset, train_val_split)
from tinynet.data import transforms as T

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL = os.path.join(REPO, "..", "shared", "data", "catdog", "train")
needs_real = pytest.mark.skipif(not os.path.isdir(REAL),
                                reason=f"real Dogs-vs-Cats sample not found at {REAL}")


def solid(color, size=(40, 30), mode="RGB"):
    return Image.new(mode, size, color)


def save(img, path, fmt="JPEG"):
    img.save(path, fmt)
    return str(path)


@pytest.fixture
def flat(tmp_path):
    """root/cat.N.jpg (red) and root/dog.N.jpg (blue), 5 of each."""
    for n in range(1, 6):
        save(solid((200, 10, 10)), tmp_path / f"cat.{n}.jpg")
        save(solid((10, 10, 200)), tmp_path / f"dog.{n}.jpg")
    return tmp_path


def noisy_jpeg_bytes(size=(64, 48), seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ----------------------------------------------------------------- layouts
def test_flat_layout(flat):
    ds = ImageFolder(flat)
    assert ds.layout == "flat" and ds.classes == ["cat", "dog"]
    assert ds.class_to_idx == {"cat": 0, "dog": 1}
    assert len(ds) == 10 and ds.targets.count(0) == 5
    for path, label in ds.samples:
        assert os.path.basename(path).split(".")[0] == ds.classes[label]
    image, label = ds[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    # natural order: cat.1 .. cat.5 first
    assert [os.path.basename(p) for p, _ in ds.samples[:2]] == ["cat.1.jpg", "cat.2.jpg"]


def test_folder_layout_and_classes_argument(tmp_path):
    for cls, color in [("dogs", (0, 0, 250)), ("cats", (250, 0, 0))]:
        os.makedirs(tmp_path / cls / "sub")
        for n in range(3):
            save(solid(color), tmp_path / cls / f"{n}.jpg")
        save(solid(color), tmp_path / cls / "sub" / "x.PNG", "PNG")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path, transform=T.ToArray())
    assert ds.layout == "folders" and ds.classes == ["cats", "dogs"] and len(ds) == 8
    image, label = ds[0]
    assert label == 0 and image.shape == (3, 30, 40) and image[0].mean() > 0.9
    only = ImageFolder(tmp_path, classes=["dogs"])
    assert only.classes == ["dogs"] and len(only) == 4 and set(only.targets) == {0}
    with pytest.raises(NoImagesError, match="horses"):
        ImageFolder(tmp_path, classes=["horses"])


def test_unlabelled_flat_files_are_ignored(flat):
    save(solid((0, 0, 0)), flat / "123.jpg")
    with pytest.warns(UnreadableImageWarning, match="without a '<label>.' prefix"):
        ds = ImageFolder(flat)
    assert len(ds) == 10


@pytest.mark.parametrize("make", ["empty", "texts", "missing"])
def test_no_images_error_names_folder_and_layouts(tmp_path, make):
    root = tmp_path / "nothing_here"
    if make != "missing":
        root.mkdir()
    if make == "texts":
        (root / "readme.txt").write_text("hi")
    with pytest.raises(FileNotFoundError) as info:
        ImageFolder(root)
    message = str(info.value)
    assert str(root) in message and "cat.123.jpg" in message and "one folder per class" in message
    assert isinstance(info.value, ValueError)


# ----------------------------------------------------------------- messy files
@pytest.fixture
def messy(tmp_path):
    good = noisy_jpeg_bytes()
    (tmp_path / "cat.1.jpg").write_bytes(good)
    (tmp_path / "cat.2.jpg").write_bytes(good[: len(good) // 2])          # truncated
    (tmp_path / "cat.3.jpg").write_bytes(b"")                              # zero bytes
    (tmp_path / "cat.4.jpg").write_text("<html>404 not found</html>")      # not an image
    save(solid((0, 255, 0)), tmp_path / "cat.5.jpg", "PNG")                # PNG named .jpg
    save(solid(128, mode="L"), tmp_path / "dog.1.jpg")                     # grayscale
    save(solid((0, 0, 0, 0), mode="CMYK"), tmp_path / "dog.2.jpg")          # CMYK JPEG
    save(solid((255, 0, 0, 0), mode="RGBA"), tmp_path / "dog.3.png", "PNG")  # transparent
    save(solid(3, mode="P"), tmp_path / "dog.4.bmp", "BMP")                # palette
    return tmp_path


def test_messy_files_convert_or_skip(messy):
    ds = ImageFolder(messy, transform=T.ToArray())
    assert len(ds) == 9 and ds.skipped == 0
    by_name = {os.path.basename(p): i for i, (p, _) in enumerate(ds.samples)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = ds[by_name["cat.2.jpg"]]          # truncated -> cat.3 (empty) -> cat.4 -> cat.5
        x2, y2 = ds[by_name["cat.2.jpg"]]        # again: no new warnings
    assert [str(w.message).count("skipping unreadable image") for w in caught] == [1, 1, 1]
    assert all(w.category is UnreadableImageWarning for w in caught)
    assert ds.skipped == 3 and sorted(map(os.path.basename, ds.bad_files)) == [
        "cat.2.jpg", "cat.3.jpg", "cat.4.jpg"]
    green = T.ToArray()(np.asarray(load_image(messy / "cat.5.jpg")))
    np.testing.assert_array_equal(x, green)
    np.testing.assert_array_equal(x2, x)
    assert y == y2 == 0
    for name in ["dog.1.jpg", "dog.2.jpg", "dog.3.png", "dog.4.bmp", "cat.1.jpg"]:
        img, label = ds[by_name[name]]
        assert img.shape[0] == 3 and img.dtype == np.float32
    assert np.allclose(ds[by_name["dog.3.png"]][0], 1.0)   # transparent -> white
    assert np.allclose(ds[by_name["dog.2.jpg"]][0], 1.0, atol=0.02)  # CMYK 0 ink -> white
    assert "3 unreadable" in ds.summary()


def test_bad_file_substitute_stays_in_subset_and_loader_survives(messy):
    ds = ImageFolder(messy, transform=T.Compose([T.Resize(16), T.CenterCrop(16), T.ToArray()]))
    names = [os.path.basename(p) for p, _ in ds.samples]
    sub = Subset(ds, [names.index("cat.3.jpg"), names.index("dog.1.jpg")])
    with pytest.warns(UnreadableImageWarning):
        x, y = sub[0]
    assert y == 1 and np.allclose(x, 128 / 255, atol=0.02)     # dog.1 (gray), not cat.4/cat.5
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(loader)
    assert sum(len(b[1]) for b in batches) == len(ds) and ds.skipped == 3


def test_verify_header_drops_unopenable_files(messy):
    with pytest.warns(UnreadableImageWarning):
        ds = ImageFolder(messy, verify="header")
    names = {os.path.basename(p) for p, _ in ds.samples}
    assert "cat.3.jpg" not in names and "cat.4.jpg" not in names
    assert "cat.2.jpg" in names          # a truncated JPEG has a valid header
    assert ds.skipped == 2


def test_draft_decoding_uses_the_resize_hint(tmp_path):
    path = tmp_path / "cat.1.jpg"
    path.write_bytes(noisy_jpeg_bytes(size=(1024, 800)))
    small = load_image(path, size_hint=(256, 256))
    assert small.size == (512, 400)             # 1/2 scale still covers 256
    assert load_image(path).size == (1024, 800)
    ds = ImageFolder(tmp_path, transform=T.Compose([T.Resize(256), T.ToArray()]))
    assert ds.decode_size == (256, 256) and ds[0][0].shape == (3, 256, 328)


# ----------------------------------------------------------------- splits & subsets
def test_train_val_split_stratified_and_seeded():
    labels = [0] * 60 + [1] * 30 + [2] * 10
    ds = ArrayDataset(np.zeros((100, 1, 1, 1), np.float32), labels)
    tr, va = train_val_split(ds, val_fraction=0.2, seed=3)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(100))
    assert np.bincount(np.asarray(labels)[va]).tolist() == [12, 6, 2]
    tr2, va2 = train_val_split(ds, val_fraction=0.2, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, train_val_split(ds, 0.2, seed=4)[1])
    assert train_val_split(ds, 0.0, seed=0)[1].size == 0


def test_stratified_subsets(flat):
    idx = stratified_indices([0] * 70 + [1] * 30, count=10, seed=1)
    assert len(idx) == 10 and (idx < 70).sum() == 7
    assert np.array_equal(idx, stratified_indices([0] * 70 + [1] * 30, count=10, seed=1))
    ds = ImageFolder(flat, max_images=4)
    assert len(ds) == 4 and sorted(ds.targets) == [0, 0, 1, 1]
    sub = stratified_subset(ImageFolder(flat), 6)
    assert len(sub) == 6 and sorted(sub.targets) == [0, 0, 0, 1, 1, 1]


# ----------------------------------------------------------------- the loader
def random_dataset(n=23, transform=None):
    images = np.random.default_rng(0).random((n, 3, 12, 12), dtype=np.float32)
    return ArrayDataset(images, np.arange(n) % 3, transform=transform)


def augment():
    return T.Compose([T.RandomCrop(8), T.RandomHorizontalFlip(),
                      T.PCAColorAugmentation([0.1, 0.01, 0.001], np.eye(3))])


def test_loader_batching_shapes_len():
    ds = random_dataset()
    loader = DataLoader(ds, batch_size=5)
    batches = list(loader)
    assert len(loader) == 5 == len(batches)
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    x, y = batches[0]
    assert x.shape == (5, 3, 12, 12) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), ds.images)
    dropped = DataLoader(ds, batch_size=5, drop_last=True)
    assert len(dropped) == 4 and [len(y) for _, y in dropped] == [5] * 4


def test_loader_order_seeded_and_new_each_epoch():
    ds = random_dataset()
    labels = lambda loader: np.concatenate([y for _, y in loader])  # noqa: E731
    a, b = DataLoader(ds, 4, shuffle=True, seed=7), DataLoader(ds, 4, shuffle=True, seed=7)
    ea, eb = [a.indices(e) for e in range(3)], [b.indices(e) for e in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(ea, eb))
    assert not np.array_equal(ea[0], ea[1]) and sorted(ea[0]) == list(range(23))
    first, second = labels(a), labels(a)          # two epochs
    np.testing.assert_array_equal(first, ds.targets[ea[0]])
    np.testing.assert_array_equal(second, ds.targets[ea[1]])
    b.set_epoch(1)
    np.testing.assert_array_equal(labels(b), second)
    backend.manual_seed(123)
    c = DataLoader(ds, 4, shuffle=True)
    backend.manual_seed(123)
    d = DataLoader(ds, 4, shuffle=True)
    assert c.seed == d.seed and np.array_equal(c.indices(), d.indices())


def test_loader_state_dict_resumes_mid_epoch():
    ds = random_dataset(transform=augment())
    loader = DataLoader(ds, 4, shuffle=True, seed=1)
    list(loader)                                  # epoch 0 done
    it = iter(loader)
    seen = [next(it), next(it)]
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["batch"] == 2
    rest = list(it)
    resumed = DataLoader(ds, 4, shuffle=True, seed=999)
    resumed.load_state_dict(state)
    again = list(resumed)
    assert len(again) == len(rest) == len(loader) - 2
    for (x1, y1), (x2, y2) in zip(rest, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert loader.state_dict() == {"seed": 1, "epoch": 2, "batch": 0}
    assert resumed.state_dict() == {"seed": 1, "epoch": 2, "batch": 0}
    del seen


def test_workers_match_single_thread_with_random_augmentation():
    ds = random_dataset(n=37, transform=augment())
    ref = list(DataLoader(ds, 6, shuffle=True, seed=5))
    for workers, prefetch in [(1, 1), (2, 2), (3, 1)]:
        got = list(DataLoader(ds, 6, shuffle=True, seed=5, num_workers=workers, prefetch=prefetch))
        assert len(got) == len(ref)
        for (x1, y1), (x2, y2) in zip(ref, got):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    # augmentation depends on (seed, epoch, index), not on the position in the batch
    plain = list(DataLoader(ds, 37, shuffle=False, seed=5))[0][0]
    order = DataLoader(ds, 6, shuffle=True, seed=5).indices(0)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in ref]), plain[order])


def test_loader_early_break_and_worker_errors():
    ds = random_dataset(n=40)
    loader = DataLoader(ds, 2, num_workers=2)
    before = threading.active_count()
    for k, _ in enumerate(loader):
        if k == 1:
            break
    import gc
    gc.collect()
    assert threading.active_count() <= before + 0

    class Broken(ArrayDataset):
        def get(self, index, rng=None, substitute=True):
            if index == 5:
                raise KeyError("boom")
            return super().get(index, rng, substitute)

    with pytest.raises(KeyError, match="boom"):
        list(DataLoader(Broken(ds.images, ds.targets), 4, num_workers=2))


def test_loader_moves_batches_to_the_gpu_backend(gpu_xp):
    x, y = next(iter(DataLoader(random_dataset(), 4, device="gpu")))
    assert backend.is_gpu_array(x) and backend.is_gpu_array(y)
    assert x.shape == (4, 3, 12, 12) and str(y.dtype) == "int64"


def test_loader_with_custom_collate_and_plain_list():
    data = [(np.full((2, 2), i, np.float32), i) for i in range(5)]
    loader = DataLoader(data, 2, collate_fn=lambda s: [b for _, b in s])
    assert list(loader) == [[0, 1], [2, 3], [4]]


# ----------------------------------------------------------------- the real photos
@needs_real
def test_real_folder_classes_and_labels():
    ds = ImageFolder(REAL)
    assert ds.layout == "flat" and ds.classes == ["cat", "dog"] and len(ds) == 2000
    assert np.bincount(ds.targets).tolist() == [1000, 1000]
    for path, label in ds.samples[::97]:
        assert os.path.basename(path).startswith(ds.classes[label] + ".")
    tr, va = train_val_split(ds, 0.1, seed=0)
    assert len(va) == 200 and np.bincount(np.asarray(ds.targets)[va]).tolist() == [100, 100]


@needs_real
def test_real_folder_loader():
    tf = T.Compose([T.Resize(256), T.RandomCrop(227), T.RandomHorizontalFlip(), T.ToArray()])
    ds = stratified_subset(ImageFolder(REAL, transform=tf), 24, seed=0)
    loader = DataLoader(ds, 8, shuffle=True, seed=0, num_workers=2)
    batches = list(loader)
    assert len(batches) == 3
    for x, y in batches:
        assert x.shape == (8, 3, 227, 227) and x.dtype == np.float32 and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    ref = list(DataLoader(ds, 8, shuffle=True, seed=0))
    np.testing.assert_array_equal(ref[1][0], batches[1][0])
    eval_tf = T.Compose([T.Resize(256), T.TenCrop(227)])
    x, y = ImageFolder(REAL, transform=eval_tf, max_images=2)[0]
    assert x.shape == (10, 3, 227, 227)
    vals, vecs = T.compute_rgb_pca(ds, max_images=8, size=64)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(3), atol=1e-8)
    assert vals[0] > vals[1] > vals[2] > 0


def test_custom_dataset_subclasses_work_in_subsets_and_loaders():
    from tinynet.data import Dataset

    class Squares(Dataset):                     # only __len__ / __getitem__
        def __len__(self):
            return 6

        def __getitem__(self, i):
            if not 0 <= i < 6:
                raise IndexError(i)
            return np.full((1, 2, 2), i * i, np.float32), i % 2

    class Noisy(Squares):                       # get(index, rng) without `substitute`
        def get(self, index, rng=None):
            x, y = self[index]
            return x + rng.random(), y

    assert [y for _, y in Squares()] == [0, 1, 0, 1, 0, 1]
    x, y = next(iter(DataLoader(Subset(Squares(), [5, 4]), 2)))
    assert x[:, 0, 0, 0].tolist() == [25.0, 16.0] and y.tolist() == [1, 0]
    a = list(DataLoader(Subset(Noisy(), [1, 2, 3]), 3, seed=4))[0][0]
    b = list(DataLoader(Subset(Noisy(), [1, 2, 3]), 3, seed=4, num_workers=2))[0][0]
    np.testing.assert_array_equal(a, b)
