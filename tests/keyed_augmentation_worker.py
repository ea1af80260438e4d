"""The program tests/data/test_keyed_augmentation.py starts under ``mpiexec -n N`` (and without it).

    python tests/keyed_augmentation_worker.py DATA OUT --batch GLOBAL [--epochs E] [--workers W]
                                              [--save-after STEPS] [--resume CHECKPOINT]

Trains a small CNN with SGD (momentum, weight decay) on the JPEGs of DATA through AlexNet's
training augmentation at a toy size (resize, random crop, random flip, PCA colour noise,
normalisation), each of the N ranks taking GLOBAL / N samples of every step, one process taking
all GLOBAL.  Rank 0 writes OUT/last.npz (weights, optimizer, loader position, steps) at the end,
and the same state after ``--save-after`` steps to OUT/step<STEPS>.npz, what an interrupted run
would have left; ``--resume CHECKPOINT`` continues from such a file, with whatever number of
processes this run has.
"""
import argparse
import os

# started by the tests with this checkout first on PYTHONPATH (tests/mpi.py)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import tinynet  # noqa: E402
from tinynet import distributed as dist  # noqa: E402
from tinynet import nn  # noqa: E402
from tinynet.data import DataLoader, DistributedDataLoader, ImageFolder, Subset, train_val_split  # noqa: E402
from tinynet.data import transforms as T  # noqa: E402
from tinynet.nn import functional as F  # noqa: E402

CROP = 12
SEED = 0


def write_jpegs(root, count=24, seed=0):
    """``count`` noise photos of 22x30 px, alternately ``dog.K.jpg`` and ``cat.K.jpg`` (flat layout).

    Noise has no two equal windows, so a crop one pixel off or a missing flip changes the pixels.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for k in range(count):
        pixels = rng.integers(0, 256, size=(22, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, f"{'cat' if k % 2 else 'dog'}.{k}.jpg"), quality=95)


def train_transform():
    """The training pipeline of examples/alexnet_catdog.py (make_transforms) at a 12 px crop."""
    eigenvectors, _ = np.linalg.qr(np.array([[1.0, 0.4, 0.1], [1.0, -0.5, 0.3], [1.0, 0.1, -0.6]]))
    return T.Compose([T.Resize(14), T.RandomCrop(CROP), T.RandomHorizontalFlip(), T.ToArray(),
                      T.PCAColorAugmentation([0.2, 0.05, 0.01], eigenvectors),
                      T.Normalize([0.5, 0.45, 0.4], [0.25, 0.25, 0.25])])


def training_set(data):
    folder = ImageFolder(data, transform=train_transform())
    train, _ = train_val_split(folder, val_fraction=0.25, seed=SEED)
    return Subset(folder, train)


def make_model():
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(6 * (CROP // 2) ** 2, 2))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, required=True, help="the global batch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--save-after", type=int, default=None)
    parser.add_argument("--resume", default=None)
    args = parser.parse_args()

    group = dist.init()
    tinynet.manual_seed(SEED)
    model = make_model()
    optimizer = tinynet.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    dataset = training_set(args.data)
    if group.world_size == 1:   # as the AlexNet script: a plain DataLoader in one process
        loader = DataLoader(dataset, args.batch, shuffle=True, seed=SEED, num_workers=args.workers)
    else:
        loader = DistributedDataLoader(dataset, args.batch // group.world_size, shuffle=True, seed=SEED,
                                       num_workers=args.workers)
    steps = 0
    if args.resume:
        state = tinynet.load(args.resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        loader.load_state_dict(state["loader"])
        steps = int(state["steps"])
    ddp = dist.DistributedDataParallel(model)

    def save(name):
        dist.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "loader": loader.state_dict(), "steps": steps, "world_size": group.world_size},
                             os.path.join(args.out, name))

    for epoch in range(loader.state_dict()["epoch"], args.epochs):
        loader.set_epoch(epoch)   # what a PyTorch-style loop calls; it keeps a resumed epoch's position
        for images, labels in loader:
            loss = F.cross_entropy(ddp(tinynet.Tensor(images)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if steps == args.save_after:
                save(f"step{steps}.npz")
    save("last.npz")
    dist.print0(f"finished {steps} steps on {group.world_size} process(es)")


if __name__ == "__main__":
    main()
