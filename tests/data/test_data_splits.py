"""ImageFolder.fingerprint and allow_missing_classes: what alexnet_catdog.py's --resume and --eval-only rely on."""
import shutil

import numpy as np
import pytest
from PIL import Image

from tinynet.data import ImageFolder, NoImagesError


def photo(path, value=0):
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)


@pytest.fixture
def flat(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for name in ("cat.1.jpg", "cat.2.jpg", "dog.1.jpg"):
        photo(root / name)
    return root


def test_fingerprint_follows_names_and_labels_not_the_location(flat, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(flat, copy)
    photo(copy / "cat.2.jpg", value=200)  # other pixels, same name: the fingerprint does not read pixels
    assert ImageFolder(flat).fingerprint() == ImageFolder(copy).fingerprint()

    (copy / "cat.2.jpg").rename(copy / "dog.2.jpg")  # a label changes
    assert ImageFolder(copy).fingerprint() != ImageFolder(flat).fingerprint()
    photo(flat / "cat.3.jpg")  # a file more
    assert ImageFolder(flat).fingerprint() != ImageFolder(flat, max_images=3, seed=0).fingerprint()


def test_a_class_may_be_absent_only_when_allowed(flat, tmp_path):
    dogs = tmp_path / "dogs"
    dogs.mkdir()
    photo(dogs / "dog.7.jpg")
    with pytest.raises(NoImagesError, match=r"no images of class\(es\) \['cat'\]"):
        ImageFolder(dogs, classes=["cat", "dog"])
    folder = ImageFolder(dogs, classes=["cat", "dog"], allow_missing_classes=True)
    assert folder.classes == ["cat", "dog"] and folder.targets == [1]  # labels keep the model's numbering
