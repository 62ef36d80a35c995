"""The photos dataset: CIFAR-10-shaped patches of nine photographs from installed wheels,
with whole photographs held out as the test set, deterministic, read without a download."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nvp_edu import photos
from nvp_edu.photos import (PATCH, PHOTOS, PHOTOS_LEVELS, Photo, cut_patches, load_photos,
                            load_photos_split, patch_origins, photo_path, read_photo)


@pytest.fixture(scope="module")
def split():
    return load_photos_split()


@pytest.fixture(scope="module")
def all_photos():
    return load_photos()


def test_every_photo_is_on_disk_and_rgb(all_photos):
    assert [p.name for p in PHOTOS] == list(all_photos)
    for photo in PHOTOS:
        assert photo_path(photo).is_file()
        image = all_photos[photo.name]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 300  # a real photograph, not a thumbnail


def test_whole_photographs_are_held_out(all_photos):
    test_names = {p.name for p in PHOTOS if p.split == "test"}
    assert test_names == {"chelsea.png", "grace_hopper.jpg"}
    # the stereo pair is one scene: both halves on the same side of the split
    assert {p.split for p in PHOTOS if p.name.startswith("motorcycle")} == {"train"}
    # no held-out photograph equals a training one
    train_images = [all_photos[p.name] for p in PHOTOS if p.split == "train"]
    for name in test_names:
        assert not any(a.shape == all_photos[name].shape and np.array_equal(a, all_photos[name])
                       for a in train_images)


def test_shapes_and_counts_follow_the_strides(split, all_photos):
    train, test = split
    assert train.dtype == test.dtype == torch.uint8 and PHOTOS_LEVELS == 256
    assert train.shape[1:] == test.shape[1:] == (3, 32, 32)
    for stride_train, stride_test in ((8, 16), (32, 32), (5, 3)):
        tr, te = load_photos_split(stride_train, stride_test)
        expected = {s: sum(len(patch_origins(*all_photos[p.name].shape[:2], st))
                           for p in PHOTOS if p.split == s)
                    for s, st in (("train", stride_train), ("test", stride_test))}
        assert (len(tr), len(te)) == (expected["train"], expected["test"])
    assert (len(train), len(test)) == (29157, 1575)


def test_patches_are_the_pixels_at_their_coordinates(all_photos):
    """cut_patches' fast strided view gives exactly the slices patch_origins names."""
    for name, stride in (("china.jpg", 8), ("chelsea.png", 16), ("grace_hopper.jpg", 7)):
        image = all_photos[name]
        corners = patch_origins(*image.shape[:2], stride)
        patches = cut_patches(image, stride)
        assert len(patches) == len(corners)
        for i in (0, 1, len(corners) // 2, len(corners) - 1):
            row, col = corners[i]
            assert np.array_equal(patches[i], image[row:row + PATCH, col:col + PATCH].transpose(2, 0, 1))


def test_test_split_is_the_held_out_photos_only(split, all_photos):
    _, test = split
    held_out = np.concatenate([cut_patches(all_photos[p.name], 16) for p in PHOTOS if p.split == "test"])
    assert np.array_equal(test.numpy(), held_out)


def test_deterministic(split):
    train, test = load_photos_split()
    assert torch.equal(train, split[0]) and torch.equal(test, split[1])


def test_values_look_like_photographs(split):
    for x in split:
        f = x.float()
        assert int(x.min()) <= 5 and int(x.max()) >= 250  # the full 8-bit range is used
        assert 60 < f.mean() < 180 and f.std() > 40
        assert f.std(dim=(2, 3)).mean() > 5  # patches have texture, not flat colour


def test_bad_arguments_and_missing_files(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="stride must be a positive integer; got 0"):
        load_photos_split(train_stride=0)
    with pytest.raises(ValueError, match="split must be"):
        load_photos("validation")
    missing = Photo("no_such_photo.png", "skimage", "train")
    with pytest.raises(FileNotFoundError, match="no_such_photo.png not found"):
        read_photo(missing)
    real_find_spec = photos.importlib.util.find_spec
    monkeypatch.setattr(photos.importlib.util, "find_spec",
                        lambda name: None if name == "skimage" else real_find_spec(name))
    with pytest.raises(ModuleNotFoundError, match="pip install scikit-image"):
        read_photo(Photo("astronaut.png", "skimage", "train"))
