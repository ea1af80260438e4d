"""examples/visualize_filters.py and examples/retrieval.py on tiny settings.

The command lines run in-process (``main(argv)``) so that the numba kernels compile once; only
``--help`` starts a subprocess.  Images: a few real photos copied from ``../shared/data/catdog/train``
when that folder exists, generated ones otherwise.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tinynet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CATDOG = ROOT.parent / "shared" / "data" / "catdog" / "train"

import tinynet.models.alexnet as alexnet_module
from scripts import load_script
from tinynet import neighbours, viz

retrieval = load_script("retrieval")
visualize_filters = load_script("visualize_filters")


@pytest.fixture
def image_folder(tmp_path):
    """Six labelled images (flat Kaggle layout: cat.N / dog.N) in a fresh folder."""
    folder = tmp_path / "images"
    folder.mkdir()
    names = [f"{label}.{i}.jpg" for label in ("cat", "dog") for i in (1, 2, 3)]
    if all((CATDOG / name).is_file() for name in names):
        for name in names:
            shutil.copy(CATDOG / name, folder / name)
    else:
        rng = np.random.default_rng(0)
        for k, name in enumerate(names):
            base = np.array([200, 120, 60] if name.startswith("cat") else [60, 120, 200], dtype=np.float64)
            pixels = np.clip(base + rng.normal(0, 40, (90 + 7 * k, 110, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name)
    return folder


# ----------------------------------------------------------------------------- command lines
@pytest.mark.parametrize("script, option", [("visualize_filters.py", "--checkpoint"),
                                            ("retrieval.py", "--max-images")])
def test_help(script, option):
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert option in result.stdout and "--out" in result.stdout


def test_visualize_fresh_model_writes_the_8x12_grid(tmp_path, capsys):
    out = tmp_path / "figures" / "filters.png"
    assert visualize_filters.main(["--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.size == (12 * 11 * 4 + 13, 8 * 11 * 4 + 9) == (541, 361)
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels[0] == 255).all() and (pixels[:, 0] == 255).all()          # the border
    assert (pixels[:, 1 + 44] == 255).all() and (pixels[1 + 44] == 255).all()  # the gaps
    tile = pixels[1:45, 1:45]
    assert tile.min() == 0 and tile.max() == 255                              # stretched per filter
    assert "8x12 grid, 541x361 px" in capsys.readouterr().out


def test_visualize_from_a_checkpoint(tmp_path, monkeypatch):
    built = []

    class RecordingAlexNet(alexnet_module.AlexNet):
        def __init__(self, **kwargs):
            built.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(alexnet_module, "AlexNet", RecordingAlexNet)
    model, _ = alexnet_module.load_alexnet(None, num_classes=3, groups=2)
    pattern = np.random.default_rng(1).standard_normal((96, 3, 11, 11)).astype(np.float32)
    model.features.conv1.weight.data = pattern
    path = tmp_path / "model.npz"
    tinynet.save({"model": model.state_dict()}, path)       # a bare checkpoint: no config, no classes
    del model
    out = tmp_path / "filters.png"
    assert visualize_filters.main(["--checkpoint", str(path), "--out", str(out), "--scale", "2",
                                   "--pad", "0"]) == 0
    assert built[-1]["num_classes"] == 3 and built[-1]["groups"] == 2    # read from FC8 and CONV2
    with Image.open(out) as image:
        drawn = np.asarray(image.convert("RGB"))
    assert drawn.shape == (8 * 22, 12 * 22, 3)
    np.testing.assert_array_equal(drawn, viz.filter_grid(pattern, scale=2, pad=0))


def test_retrieval_lists_neighbours_and_draws_the_sheet(image_folder, tmp_path, capsys):
    inside = image_folder / "cat.1.jpg"
    outside = tmp_path / "dog.99.png"
    with Image.open(image_folder / "dog.2.jpg") as image:
        image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(outside)
    out = tmp_path / "sheet.png"
    code = retrieval.main(["--data", str(image_folder), "--query", str(inside), str(outside), "--k", "3",
                           "--image-size", "67", "--thumb", "48", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "FC7 features (4096-d) of 6 images" in printed
    blocks = printed.split("\nquery: ")[1:]
    assert len(blocks) == 2
    for block, query in zip(blocks, [inside, outside]):
        lines = [line for line in block.splitlines() if "distance" in line]
        assert len(lines) == 3
        assert str(query) not in "\n".join(lines)                      # a query is not its own neighbour
        distances = [float(line.split("distance")[1].split()[0]) for line in lines]
        assert distances == sorted(distances) and all(d >= 0 for d in distances)
        assert "neighbours share the query's class" in block
    assert blocks[0].startswith(f"{inside} (cat)") and blocks[1].startswith(f"{outside} (dog)")
    with Image.open(out) as sheet:
        assert (sheet.height, sheet.width) == retrieval.sheet_size(2, 3, thumb=48) == (2 * 64 + 12, 4 * 48 + 20)


# ----------------------------------------------------------------------------- the pieces
def test_grid_layout_and_normalisation():
    assert viz.grid_shape(96) == (8, 12)
    assert viz.grid_shape(10) == (3, 4)
    assert viz.grid_size(8, 12, 11, 11, scale=4, pad=1) == (361, 541)
    weight = np.zeros((3, 1, 2, 2))
    weight[0, 0] = [[0, 1], [2, 4]]
    weight[1, 0] = [[-2, -2], [-2, -2]]        # constant: mid grey
    weight[2, 0] = [[0, 0], [0, 8]]
    grid = viz.filter_grid(weight, rows=1, cols=3, scale=1, pad=1, background=7)
    assert grid.shape == (4, 10, 3) and (grid[0] == 7).all()
    assert grid[1:3, 1:3, 0].tolist() == [[0, 64], [128, 255]] and (grid[1:3, 1:3, 0] == grid[1:3, 1:3, 2]).all()
    assert (grid[1:3, 4:6] == 128).all()
    global_grid = viz.filter_grid(weight, rows=1, cols=3, scale=1, pad=1, normalize="global")
    assert global_grid[1:3, 1:3, 0].tolist() == [[51, 76], [102, 153]]     # (w + 2) / 10 * 255, w in -2..8
    with pytest.raises(ValueError, match="no room"):
        viz.filter_grid(weight, rows=1, cols=2)


def test_distances_and_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((20, 16)).astype(np.float32)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    brute = np.linalg.norm(queries[:, None, :].astype(np.float64) - items[None], axis=2)
    np.testing.assert_allclose(neighbours.euclidean_distances(queries, items), brute, rtol=1e-6, atol=1e-6)
    order, distances = neighbours.nearest_neighbours(items[4], items, k=5, exclude=4)
    expected = [i for i in np.argsort(np.linalg.norm(items - items[4], axis=1)) if i != 4][:5]
    assert order.tolist() == expected and 4 not in order.tolist()
    assert np.all(np.diff(distances) >= 0)
    assert len(neighbours.nearest_neighbours(items[0], items[:3], k=10, exclude=0)[0]) == 2


def test_fc7_features_skip_unreadable_images(tmp_path):
    good = tmp_path / "cat.1.png"
    Image.fromarray(np.full((70, 70, 3), 100, dtype=np.uint8)).save(good)
    bad = tmp_path / "cat.2.jpg"
    bad.write_bytes(b"not an image")

    class Stub:
        def fc7_features(self, x):
            return tinynet.tensor(np.ones((x.shape[0], 4096), dtype=np.float32))

    with pytest.warns(UserWarning, match="skipping"):
        features, kept = retrieval.fc7_features(Stub(), [str(good), str(bad)], retrieval.make_transform(67))
    assert features.shape == (1, 4096) and kept == [str(good)]
