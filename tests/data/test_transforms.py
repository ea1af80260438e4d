"""Transforms: shapes, determinism under a seed, exact crop/flip geometry, PCA noise, stats."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tinynet.data import transforms as T
from tinynet.data import ArrayDataset


def coord_image(h, w):
    """HWC uint8 image with R = row, G = column, B = (row + column) % 256: crops are traceable."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([rows % 256, cols % 256, (rows + cols) % 256], axis=-1).astype(np.uint8)


def rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------- Resize
@pytest.mark.parametrize("h, w, expected", [(300, 400, (256, 341)), (400, 300, (341, 256)),
                                            (100, 100, (256, 256)), (256, 342, (256, 342))])
def test_resize_shorter_side(h, w, expected):
    a = coord_image(h, w)
    out = T.Resize(256)(a, rng())
    assert out.shape == expected + (3,) and out.dtype == np.uint8
    pil = T.Resize(256)(Image.fromarray(a), rng())
    assert isinstance(pil, Image.Image) and (pil.height, pil.width) == expected
    np.testing.assert_array_equal(np.asarray(pil), out)


def test_resize_noop_and_pair_and_hint():
    a = coord_image(256, 300)
    assert T.Resize(256)(a) is a
    assert T.Resize((20, 30))(a).shape == (20, 30, 3)
    assert T.Resize(256).decode_hint == (256, 256)
    assert T.Resize((20, 30)).decode_hint == (30, 20)
    assert T.Compose([T.Resize(128), T.CenterCrop(100)]).decode_hint == (128, 128)
    assert T.Compose([T.RandomResizedCrop(64)]).decode_hint is None


def test_resize_antialiases_when_shrinking():
    checker = (np.indices((200, 200)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small = T.Resize(50)(checker[:, :, None].repeat(3, axis=2))
    assert abs(small.astype(float).mean() - 127.5) < 3 and small.std() < 10


# ----------------------------------------------------------------- crops
def test_center_crop_slice():
    a = coord_image(40, 51)
    out = T.CenterCrop((10, 20))(a)
    np.testing.assert_array_equal(out, a[15:25, 15:35])
    chw = T.ToArray()(a)
    np.testing.assert_array_equal(T.CenterCrop((10, 20))(chw), chw[:, 15:25, 15:35])
    with pytest.raises(ValueError, match="larger"):
        T.CenterCrop(41)(a)


def test_random_crop_is_a_window_and_deterministic():
    a = coord_image(60, 80)
    crop = T.RandomCrop(32)
    seen = set()
    for seed in range(20):
        out = crop(a, rng(seed))
        top, left = int(out[0, 0, 0]), int(out[0, 0, 1])
        np.testing.assert_array_equal(out, a[top:top + 32, left:left + 32])
        np.testing.assert_array_equal(out, crop(a, rng(seed)))
        pil = crop(Image.fromarray(a), rng(seed))
        np.testing.assert_array_equal(np.asarray(pil), out)
        seen.add((top, left))
    assert len(seen) > 10
    out = T.RandomCrop(60)(a[:60, :60], rng())
    np.testing.assert_array_equal(out, a[:60, :60])


@settings(max_examples=60)
@given(h=st.integers(8, 300), w=st.integers(8, 300), seed=st.integers(0, 2 ** 32 - 1),
       lo=st.floats(0.05, 1.0), ratio_hi=st.floats(1.0, 3.0))
def test_random_resized_crop_params_in_bounds(h, w, seed, lo, ratio_hi):
    t = T.RandomResizedCrop(16, scale=(lo, 1.0), ratio=(1 / ratio_hi, ratio_hi))
    top, left, ch, cw = t.get_params(h, w, rng(seed))
    assert 0 <= top and 0 <= left and 0 < ch and 0 < cw
    assert top + ch <= h and left + cw <= w


def test_random_resized_crop_shape_determinism_fallback():
    a = coord_image(90, 120)
    t = T.RandomResizedCrop((24, 32))
    out = t(a, rng(3))
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, t(a, rng(3)))
    np.testing.assert_array_equal(np.asarray(t(Image.fromarray(a), rng(3))), out)
    assert not np.array_equal(out, t(a, rng(4)))
    # a 4x400 strip cannot hold a 3/4..4/3 window of >= 50% area: central fallback
    t2 = T.RandomResizedCrop(8, scale=(0.5, 1.0))
    assert t2.get_params(4, 400, rng(0)) == (0, 200 - 3, 4, 5)


# ----------------------------------------------------------------- flip
def test_flip_really_mirrors():
    a = coord_image(5, 7)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(a, rng()), a[:, ::-1])
    np.testing.assert_array_equal(np.asarray(T.RandomHorizontalFlip(1.0)(Image.fromarray(a), rng())),
                                  a[:, ::-1])
    chw = T.ToArray()(a)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(chw, rng()), chw[:, :, ::-1])
    assert T.RandomHorizontalFlip(0.0)(a, rng()) is a
    flips = sum(T.RandomHorizontalFlip()(a, rng(s))[0, 0, 1] != 0 for s in range(400))
    assert 150 < flips < 250


# ----------------------------------------------------------------- arrays
def test_to_array():
    a = coord_image(6, 9)
    out = T.ToArray()(a)
    assert out.shape == (3, 6, 9) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, a.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_array_equal(T.ToArray()(Image.fromarray(a)), out)
    gray = T.ToArray()(Image.fromarray(a[:, :, 0]))
    assert gray.shape == (1, 6, 9)
    assert T.ToArray()(Image.fromarray(a).convert("RGBA")).shape == (3, 6, 9)
    assert T.ToArray()(out) is not None and T.ToArray()(out).shape == (3, 6, 9)


def test_normalize_math():
    x = rng().random((3, 4, 5), dtype=np.float32)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    out = T.Normalize(mean, std)(x)
    expected = (x - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert out.dtype == np.float32
    ten = np.stack([x] * 10)
    np.testing.assert_allclose(T.Normalize(mean, std)(ten)[7], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="ToArray"):
        T.Normalize(mean, std)(coord_image(4, 5))


# ----------------------------------------------------------------- ten-crop
def test_ten_crop_slices():
    a = coord_image(30, 41)
    chw = T.ToArray()(a)
    out = T.TenCrop((10, 12))(a)
    assert out.shape == (10, 3, 10, 12) and out.dtype == np.float32 and out.flags.c_contiguous
    expected = [chw[:, 0:10, 0:12], chw[:, 0:10, 29:41], chw[:, 20:30, 0:12],
                chw[:, 20:30, 29:41], chw[:, 10:20, 14:26]]
    for k, e in enumerate(expected):
        np.testing.assert_array_equal(out[k], e)
        np.testing.assert_array_equal(out[k + 5], e[:, :, ::-1])
    np.testing.assert_array_equal(T.TenCrop((10, 12))(chw), out)
    pipeline = T.Compose([T.Resize(32), T.TenCrop(28), T.Normalize([0.5] * 3, [0.5] * 3)])
    assert pipeline(a).shape == (10, 3, 28, 28)


# ----------------------------------------------------------------- compose & rng
def test_compose_determinism_and_plain_callables():
    a = coord_image(70, 90)
    tf = T.Compose([T.Resize(64), T.RandomResizedCrop(40), T.RandomHorizontalFlip(),
                    lambda img: img, T.ToArray()])
    out = tf(a, rng(11))
    assert out.shape == (3, 40, 40)
    np.testing.assert_array_equal(out, tf(a, rng(11)))
    assert any(not np.array_equal(out, tf(a, rng(s))) for s in range(12, 16))


def test_default_rng_follows_manual_seed():
    import tinynet.backend as backend
    a = coord_image(50, 50)
    backend.manual_seed(5)
    first = [T.RandomCrop(20)(a)[0, 0, :2].tolist() for _ in range(5)]
    backend.manual_seed(5)
    second = [T.RandomCrop(20)(a)[0, 0, :2].tolist() for _ in range(5)]
    assert first == second


# ----------------------------------------------------------------- PCA lighting
def correlated_images(n=6, size=12, seed=0):
    """Float CHW images whose pixels share a known, correlated RGB covariance."""
    g = np.random.default_rng(seed)
    mix = np.array([[0.20, 0.05, 0.00], [0.15, 0.10, 0.02], [0.10, 0.05, 0.08]])
    px = 0.5 + g.standard_normal((n, size * size, 3)) @ mix.T * 0.5
    return np.ascontiguousarray(px.reshape(n, size, size, 3).transpose(0, 3, 1, 2)).astype(np.float32)


def test_compute_rgb_pca_and_mean_std_exact():
    imgs = correlated_images()
    ds = ArrayDataset(list(imgs), [0] * len(imgs))
    vals, vecs = T.compute_rgb_pca(ds, size=None)
    px = imgs.transpose(0, 2, 3, 1).reshape(-1, 3).astype(np.float64)
    cov = np.cov(px, rowvar=False, bias=True)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(3), atol=1e-10)       # orthonormal
    np.testing.assert_allclose(vecs @ np.diag(vals) @ vecs.T, cov, atol=1e-8)
    assert np.all(np.diff(vals) <= 0) and vals[-1] >= 0
    mean, std = T.compute_mean_std(ds, size=None)
    np.testing.assert_allclose(mean, px.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, px.std(axis=0), rtol=1e-5)
    # uint8 HWC images go through the same path (pixels scaled to [0, 1])
    u8 = [np.clip(i.transpose(1, 2, 0) * 255, 0, 255).astype(np.uint8) for i in imgs]
    m8, _ = T.compute_mean_std(ArrayDataset(u8, [0] * len(u8)), size=None)
    np.testing.assert_allclose(m8, mean, atol=3e-3)


def test_pca_noise_statistics():
    vals = np.array([0.2, 0.05, 0.01])
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))
    t = T.PCAColorAugmentation(vals, q, std=0.1)
    g = rng(2)
    offsets = np.array([t.offset(g) for _ in range(20000)])
    expected = sum((0.1 * vals[i]) ** 2 * np.outer(q[:, i], q[:, i]) for i in range(3))
    np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.cov(offsets, rowvar=False), expected, atol=5e-5, rtol=0.05)
    # the same offset is added to every pixel, drawn from the given generator
    x = rng(3).random((3, 4, 5), dtype=np.float32)
    out = t(x, rng(9))
    delta = out - x
    np.testing.assert_allclose(delta, np.broadcast_to(t.offset(rng(9))[:, None, None], x.shape),
                               atol=1e-6)
    np.testing.assert_array_equal(out, t(x, rng(9)))
    assert out.dtype == np.float32
    with pytest.raises(TypeError, match="ToArray"):
        t(coord_image(4, 4), rng())
