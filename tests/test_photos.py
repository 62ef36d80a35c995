"""The photos dataset: CIFAR-10-shaped patches of scikit-learn's two photographs, with
train and test cut from disjoint regions (no pixel shared), deterministic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nvp_edu.photos import (PATCH, PHOTO_HEIGHT, PHOTO_NAMES, PHOTO_WIDTH, PHOTOS_LEVELS,
                            load_photos, load_photos_split, patch_origins, photo_regions)


@pytest.fixture(scope="module")
def split():
    return load_photos_split()


def coverage(split_name: str, stride: int) -> np.ndarray:
    """Boolean (H, W) map of the pixels that some patch of the split contains."""
    covered = np.zeros((PHOTO_HEIGHT, PHOTO_WIDTH), dtype=bool)
    for row, col in patch_origins(split_name, stride):
        covered[row:row + PATCH, col:col + PATCH] = True
    return covered


def test_shapes_and_dtype(split):
    train, test = split
    assert train.shape == (5400, 3, 32, 32) and test.shape == (350, 3, 32, 32)
    assert train.dtype == test.dtype == torch.uint8
    assert PHOTOS_LEVELS == 256


def test_counts_follow_the_strides():
    for stride in (8, 16, 32):
        train, test = load_photos_split(train_stride=stride, test_stride=stride)
        assert len(train) == len(PHOTO_NAMES) * len(patch_origins("train", stride))
        assert len(test) == len(PHOTO_NAMES) * len(patch_origins("test", stride))


def test_deterministic(split):
    train, test = load_photos_split()
    assert torch.equal(train, split[0]) and torch.equal(test, split[1])


def test_patches_are_the_pixels_at_their_coordinates(split):
    """The coordinates the disjointness test reasons about are those of the tensors."""
    train, test = split
    photos = load_photos()
    for tensor, name, stride in ((train, "train", 8), (test, "test", 16)):
        corners = patch_origins(name, stride)
        for k, photo_name in enumerate(PHOTO_NAMES):
            for i in (0, len(corners) // 2, len(corners) - 1):
                row, col = corners[i]
                expected = photos[photo_name][row:row + PATCH, col:col + PATCH]
                assert np.array_equal(tensor[k * len(corners) + i].numpy(),
                                      expected.transpose(2, 0, 1))


@pytest.mark.parametrize("train_stride,test_stride", [(8, 16), (1, 1), (5, 3)])
def test_no_pixel_shared_between_train_and_test(train_stride, test_stride):
    train, test = coverage("train", train_stride), coverage("test", test_stride)
    assert train.any() and test.any()
    assert not (train & test).any(), "a pixel lies in both a train and a test patch"
    # and at least 16 columns apart (the guard bands): no near-copy across the split
    train_cols, test_cols = np.flatnonzero(train.any(0)), np.flatnonzero(test.any(0))
    assert np.abs(train_cols[:, None] - test_cols[None, :]).min() >= 16


def test_regions_are_inside_the_photo_and_disjoint():
    regions = photo_regions()
    assert {r.split for r in regions} == {"train", "test"}
    for r in regions:
        assert 0 <= r.top < r.bottom <= PHOTO_HEIGHT and 0 <= r.left < r.right <= PHOTO_WIDTH
    for a in regions:
        for b in regions:
            if a.split != b.split:
                assert a.right <= b.left or b.right <= a.left or a.bottom <= b.top or b.bottom <= a.top


def test_values_look_like_photographs(split):
    for x in split:
        f = x.float()
        assert int(x.min()) <= 5 and int(x.max()) >= 250  # the full 8-bit range is used
        assert 60 < f.mean() < 180 and f.std() > 50
        assert f.std(dim=(2, 3)).mean() > 10  # patches have texture, not flat colour
    train, test = split
    assert not torch.equal(train[: len(test)], test)
    # no test patch is an exact copy of a train patch
    train_set = {bytes(p.numpy()) for p in train}
    assert not any(bytes(p.numpy()) in train_set for p in test)


def test_bad_arguments():
    with pytest.raises(ValueError, match="stride"):
        load_photos_split(train_stride=0)
    with pytest.raises(ValueError, match="split"):
        patch_origins("validation", 8)
