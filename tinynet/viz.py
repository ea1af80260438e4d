"""Pictures of what a network holds: its filters as a grid of tiles (AlexNet's Figure 3).

    from tinynet.viz import filter_grid
    image = filter_grid(model.features.conv1.weight.numpy())     # (H, W, 3) uint8, 8 x 12 tiles for 96
    PIL.Image.fromarray(image).save("conv1.png")

docs/filters-and-features.md shows and explains the picture.
"""
import math

import numpy as np

__all__ = ["grid_shape", "grid_size", "normalize_filters", "filter_grid"]


def grid_shape(count):
    """Rows and columns for ``count`` tiles: 8x12 for AlexNet's 96 (the paper's layout), else about square."""
    if count == 96:
        return 8, 12
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def grid_size(rows, cols, tile_h, tile_w, scale=4, pad=1):
    """``(height, width)`` in pixels of a grid of ``rows x cols`` tiles of ``tile_h x tile_w`` weights."""
    return rows * tile_h * scale + (rows + 1) * pad, cols * tile_w * scale + (cols + 1) * pad


def normalize_filters(weight, mode="filter"):
    """Map weights (O, C, kh, kw) to [0, 1]: per filter (its min -> 0, max -> 1) or with one global scale.

    A constant filter (nothing to show) becomes mid grey.
    """
    w = np.asarray(weight, dtype=np.float64)
    if mode == "filter":
        low = w.min(axis=(1, 2, 3), keepdims=True)
        high = w.max(axis=(1, 2, 3), keepdims=True)
    elif mode == "global":
        low, high = w.min(), w.max()
    else:
        raise ValueError(f"normalize must be 'filter' or 'global', got {mode!r}")
    span = np.asarray(high - low)
    scaled = np.where(span > 0, (w - low) / np.where(span > 0, span, 1.0), 0.5)
    return scaled


def filter_grid(weight, rows=None, cols=None, scale=4, pad=1, normalize="filter", background=255):
    """An (H, W, 3) uint8 image of the filters of ``weight`` (O, C, kh, kw), one tile per filter, row by row.

    C = 3 is drawn as RGB, C = 1 as grey; other channel counts show the mean over channels in grey.
    """
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"expected a convolution weight (O, C, kh, kw), got shape {weight.shape}")
    count, channels, kh, kw = weight.shape
    if rows is None or cols is None:
        rows, cols = grid_shape(count)
    if rows * cols < count:
        raise ValueError(f"a {rows}x{cols} grid has no room for {count} filters")
    tiles = normalize_filters(weight, normalize)
    if channels != 3:
        tiles = np.repeat(tiles.mean(axis=1, keepdims=True), 3, axis=1)
    tiles = np.round(tiles.transpose(0, 2, 3, 1) * 255).astype(np.uint8)     # (O, kh, kw, 3)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)                 # nearest-neighbour zoom
    height, width = grid_size(rows, cols, kh, kw, scale, pad)
    image = np.full((height, width, 3), background, dtype=np.uint8)
    th, tw = kh * scale, kw * scale
    for index in range(count):
        r, c = divmod(index, cols)
        top, left = pad + r * (th + pad), pad + c * (tw + pad)
        image[top:top + th, left:left + tw] = tiles[index]
    return image
