"""The data pipeline: tinynet's ImageFolder + DataLoader against a torchvision-style PIL pipeline.

A section of ``python benchmarks/run.py`` (``--only data``).
"""
from __future__ import annotations

import os
import tempfile
import time

from harness import DEFAULT_DATA, MEAN, PCA_EIGVAL, PCA_EIGVEC, STD, _alternate, _median


# ====================================================================== data pipeline
class TorchStylePipeline:
    """The torchvision recipe without torchvision: PIL decode (full size), Resize(256),
    RandomCrop(227), RandomHorizontalFlip, ToTensor, PCA lighting, Normalize."""

    def __init__(self, files, size, seed=0):
        self.files, self.size, self.seed = files, size, seed

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        import numpy as np
        import torch
        from PIL import Image
        path, label = self.files[index]
        rng = np.random.default_rng((self.seed, index))
        with Image.open(path) as img:
            img = img.convert("RGB")
        short = max(self.size, int(round(self.size * 256 / 227)))
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.Resampling.BILINEAR)
        w, h = img.size
        left, top = int(rng.integers(0, w - self.size + 1)), int(rng.integers(0, h - self.size + 1))
        img = img.crop((left, top, left + self.size, top + self.size))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(255.0)
        alpha = rng.normal(0.0, 0.1, size=3)
        offset = np.asarray(PCA_EIGVEC) @ (alpha * np.asarray(PCA_EIGVAL))
        x.add_(torch.from_numpy(offset.astype(np.float32)).view(3, 1, 1))
        x.sub_(torch.tensor(MEAN).view(3, 1, 1)).div_(torch.tensor(STD).view(3, 1, 1))
        return x, label


def _synthetic_folder(count, size):
    """A temporary flat Kaggle-style folder of ``count`` JPEGs (smoke runs need no data)."""
    import numpy as np
    from PIL import Image
    folder = tempfile.mkdtemp(prefix="tinynet-bench-")
    rng = np.random.default_rng(0)
    for k in range(count):
        pixels = rng.integers(0, 256, size=(size + 40, size + 60, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{'cat' if k % 2 else 'dog'}.{k}.jpg"), quality=90)
    return folder


def bench_data(args, table, results, headlines):
    import torch
    from tinynet.data import DataLoader, ImageFolder
    from tinynet.data import transforms as T

    root = args.data or DEFAULT_DATA
    synthetic = None
    if args.smoke and args.data is None or not os.path.isdir(root):
        if not args.smoke:
            print(f"  data folder {root} not found: using synthetic JPEGs", flush=True)
        root = synthetic = _synthetic_folder(max(args.data_images, 4), 300)
    size = args.size
    resize = max(size, int(round(size * 256 / 227)))
    train_tf = T.Compose([T.Resize(resize), T.RandomCrop(size), T.RandomHorizontalFlip(), T.ToArray(),
                          T.PCAColorAugmentation(PCA_EIGVAL, PCA_EIGVEC), T.Normalize(MEAN, STD)])
    dataset = ImageFolder(root, transform=train_tf, max_images=args.data_images, seed=0)
    batch = 4 if args.smoke else 64
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=args.workers, seed=0)
    for path, _ in dataset.samples:          # page cache: time decoding, not the disk
        with open(path, "rb") as f:
            f.read()

    torch_set = TorchStylePipeline(dataset.samples, size)
    torch_loader = torch.utils.data.DataLoader(
        torch_set, batch_size=batch, shuffle=True, num_workers=args.workers,
        persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(0))

    def run_tiny():
        t0 = time.perf_counter()
        n = 0
        for images, labels in loader:
            n += len(labels)
        return {"s": time.perf_counter() - t0, "n": n}

    def run_torch():
        t0 = time.perf_counter()
        n = 0
        for images, labels in torch_loader:
            n += len(labels)
        return {"s": time.perf_counter() - t0, "n": n}

    warmup, reps = args.data_reps
    tiny, ref = _alternate([run_tiny, run_torch], warmup, reps)
    del torch_loader
    t = _median([n / s for n, s in zip(tiny["n"], tiny["s"])])
    r = _median([n / s for n, s in zip(ref["n"], ref["s"])])
    results["data"] = {"root": root, "images": len(dataset), "batch": batch, "workers": args.workers,
                       "tinynet_img_per_s": [n / s for n, s in zip(tiny["n"], tiny["s"])],
                       "torch_img_per_s": [n / s for n, s in zip(ref["n"], ref["s"])]}
    label = "catdog" if synthetic is None else "synthetic"
    table.add(f"data pipeline {label} {size}px ({args.workers} workers)", "img/s", t, r, t / r,
              note="torch = PIL torchvision-style, worker processes")
    line = (f"data pipeline {label} decode+augment {size}px: tinynet {t:.1f} img/s, torch {r:.1f} img/s, "
            f"ratio {t / r:.2f}")
    step = results.get("net", {}).get("train_step", {})
    key = 64 if 64 in step else (max(step) if step else None)
    if key is not None:
        train_rate = key / _median(step[key]["tinynet_s"])
        cover = t / train_rate
        results["data"]["over_train_step"] = {"batch": key, "train_img_per_s": train_rate, "factor": cover}
        table.add(f"data pipeline / tinynet train_step b={key}", "x", cover, None, cover, (">=", 3.0),
                  note="pipeline img/s over training img/s")
        line += f"; {cover:.1f}x tinynet's train_step b={key} ({train_rate:.1f} img/s)"
    headlines.append(line)
    print("  " + line, flush=True)
    if synthetic is not None:
        import shutil
        shutil.rmtree(synthetic, ignore_errors=True)
