"""Pictures of a trace: channel grids, gradient grids, filters, saliency (NumPy arrays -> Pillow).

The grids return ``(PIL.Image, layout)`` where ``layout`` tells where each tile sits (``cols``,
``tile_h``, ``tile_w``, ``scale``, ``pad``), so that a page can map a click on the image back to
a channel and a position.  Tiles are laid out as ``tinynet.viz`` lays out filters (8 x 12 for 96).
"""
import math

import numpy as np
from PIL import Image

from .. import viz
from ..viz import grid_shape

__all__ = ["channel_grid", "vector_image", "filter_grid", "saliency_images", "photo_image", "grid_shape"]


def _scale_for(h, target=40):
    return max(1, int(math.ceil(target / max(h, 1))))


def _diverging(values, limit):
    """Blue (negative) - white (zero) - red (positive) colours of ``values`` scaled by ``limit``."""
    t = np.clip(values / limit, -1, 1) if limit > 0 else np.zeros_like(values)
    r = np.where(t < 0, 1 + t, 1.0)
    b = np.where(t > 0, 1 - t, 1.0)
    g = 1 - np.abs(t)
    return np.stack([r, g, b], axis=-1)


def channel_grid(maps, signed=False, pad=2, target=40, largest=64, background=255):
    """Tiles of ``maps`` (C, H, W): each channel grey from its own min (black) to max (white), or
    with ``signed`` one common blue-white-red scale (for gradients: white is zero)."""
    maps = np.asarray(maps, dtype=np.float64)
    count, h, w = maps.shape
    rows, cols = grid_shape(count)
    # small maps are enlarged by a whole factor (pixels stay square); large ones shrunk to about
    # ``largest`` pixels (a 224x224 VGG map would make a grid of 96 tiles some 5,000 pixels wide)
    scale = _scale_for(h, target) if h <= largest else largest / h
    th, tw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    image = np.full((rows * th + (rows + 1) * pad, cols * tw + (cols + 1) * pad, 3), background, dtype=np.uint8)
    # gradients are heavy-tailed: scale by a high percentile, not the largest, or most tiles look white
    limit = float(np.percentile(np.abs(maps), 99.5)) or float(np.abs(maps).max()) if signed else 0.0
    for index in range(count):
        m = maps[index]
        if signed:
            rgb = _diverging(m, limit)
        else:
            low, high = m.min(), m.max()
            grey = (m - low) / (high - low) if high > low else np.full_like(m, 0.5)
            rgb = np.repeat(grey[..., None], 3, axis=-1)
        tile = np.round(rgb * 255).astype(np.uint8)
        if h <= largest:
            tile = tile.repeat(scale, axis=0).repeat(scale, axis=1)
        else:
            tile = np.asarray(Image.fromarray(tile).resize((tw, th), Image.BOX))
        r, c = divmod(index, cols)
        top, left = pad + r * (th + pad), pad + c * (tw + pad)
        image[top:top + th, left:left + tw] = tile
    return Image.fromarray(image), {"cols": cols, "rows": rows, "tile_h": th, "tile_w": tw, "scale": scale,
                                    "pad": pad, "map_h": h, "map_w": w, "count": count}


def vector_image(values, signed=False, scale=4):
    """A vector (F,) as a square-ish block of cells, read row by row."""
    values = np.asarray(values, dtype=np.float64).ravel()
    cols = int(math.ceil(math.sqrt(values.size)))
    rows = int(math.ceil(values.size / cols))
    grid = np.full(rows * cols, np.nan)
    grid[:values.size] = values
    grid = grid.reshape(rows, cols)
    if signed:
        finite = np.abs(grid[np.isfinite(grid)])
        rgb = _diverging(np.nan_to_num(grid), float(np.percentile(finite, 99.5)) or float(finite.max()) or 1.0)
    else:
        low, high = np.nanmin(grid), np.nanmax(grid)
        grey = (grid - low) / (high - low) if high > low else np.full_like(grid, 0.5)
        rgb = np.repeat(np.nan_to_num(grey, nan=1.0)[..., None], 3, axis=-1)
    scale = max(1, min(scale, 256 // cols if cols else 1))
    tile = np.round(rgb * 255).astype(np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)
    return Image.fromarray(tile), {"cols": cols, "rows": rows, "scale": scale}


def filter_grid(weight, scale=4):
    """First-layer filters (O, C, kh, kw) as tiles, each from its own min to max: ``tinynet.viz``'s
    picture (the AlexNet paper's figure 3), as a Pillow image."""
    return Image.fromarray(viz.filter_grid(np.asarray(weight), scale=scale))


def photo_image(x, rgb=None):
    """What the network saw: ``rgb`` (H, W, 3 uint8) if given, else input ``x`` (C, H, W) min-max scaled."""
    if rgb is not None:
        return Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    x = np.asarray(x, dtype=np.float64)
    low, high = x.min(), x.max()
    x = (x - low) / (high - low) if high > low else np.zeros_like(x)
    image = np.round(x.transpose(1, 2, 0) * 255).astype(np.uint8)
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def saliency_images(saliency, photo):
    """(heat map, heat map over the photo) of |d loss / d input| (H, W), scaled to its 99.5th percentile."""
    s = np.asarray(saliency, dtype=np.float64)
    # scaled by a high percentile: a few extreme pixels would otherwise leave the rest pale
    top = float(np.percentile(s, 99.5)) or float(s.max())
    s = np.clip(s / top, 0, 1) if top > 0 else s
    heat = np.stack([np.ones_like(s), 1 - s, 1 - s], axis=-1)          # white -> red
    heat_image = Image.fromarray(np.round(heat * 255).astype(np.uint8))
    base = np.asarray(photo.convert("RGB"), dtype=np.float64) / 255
    grey = base.mean(axis=-1, keepdims=True) * 0.6 + 0.2
    over = grey * (1 - s[..., None]) + np.array([1.0, 0.1, 0.0]) * s[..., None]
    return heat_image, Image.fromarray(np.round(np.clip(over, 0, 1) * 255).astype(np.uint8))
