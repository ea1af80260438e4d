"""tinynet.data: datasets, image folders, transforms and the batching ``DataLoader``.

Typical AlexNet training input::

    from tinynet.data import ImageFolder, DataLoader, Subset, train_val_split
    from tinynet.data import transforms as T

    train_tf = T.Compose([T.Resize(256), T.RandomCrop(227), T.RandomHorizontalFlip(),
                          T.ToArray(), T.PCAColorAugmentation(eigvals, eigvecs),
                          T.Normalize(mean, std)])
    full = ImageFolder("data/catdog/train", transform=train_tf)
    train_idx, val_idx = train_val_split(full, val_fraction=0.1, seed=0)
    loader = DataLoader(Subset(full, train_idx), batch_size=128, shuffle=True,
                        num_workers=2, device="gpu")
    for images, labels in loader:     # float32 (N, 3, 227, 227), int64 (N,)
        ...
"""
from . import transforms
from .dataset import ArrayDataset, BadSampleError, Dataset, Subset, dataset_labels, get_sample
from .image_folder import (IMG_EXTENSIONS, BadImageError, ImageFolder, NoImagesError,
                           UnreadableImageWarning, load_image, stratified_indices,
                           stratified_subset, train_val_split, train_val_test_split)
from .loader import DataLoader, default_collate, sample_rng
from .distributed_sampler import DistributedDataLoader, DistributedSampler
from .mnist import IDXError, MNIST, MNISTNotFoundError, load_mnist, read_idx
from .digits import DigitTransform, input_scaling
from .transforms import (CenterCrop, Compose, Normalize, PCAColorAugmentation, RandomCrop,
                         RandomHorizontalFlip, RandomResizedCrop, Resize, TenCrop, ToArray,
                         compute_mean_std, compute_rgb_pca, compute_rgb_stats)

__all__ = [
    "transforms", "Dataset", "Subset", "ArrayDataset", "BadSampleError", "dataset_labels",
    "get_sample", "ImageFolder", "load_image", "train_val_split", "train_val_test_split",
    "stratified_indices",
    "stratified_subset", "BadImageError", "NoImagesError", "UnreadableImageWarning",
    "IMG_EXTENSIONS", "DataLoader", "default_collate", "sample_rng", "Compose", "Resize",
    "RandomCrop", "CenterCrop", "RandomResizedCrop", "RandomHorizontalFlip", "ToArray",
    "Normalize", "PCAColorAugmentation", "TenCrop", "compute_rgb_pca", "compute_mean_std",
    "compute_rgb_stats", "MNIST", "IDXError", "MNISTNotFoundError", "load_mnist", "read_idx",
    "DigitTransform", "input_scaling",
    "DistributedSampler", "DistributedDataLoader",
]
