"""Photos: 32x32 colour patches of scikit-learn's two bundled photographs.

What: the offline stand-in for CIFAR-10. scikit-learn ships two real photographs,
``china.jpg`` (a temple, trees, water, sky) and ``flower.jpg`` (a dahlia on a blurred
background), each 427x640 pixels, RGB, 8 bits per channel. Cutting 32x32 patches out of
them gives images of CIFAR-10's shape and pixel format, ``(N, 3, 32, 32)`` uint8 with
256 levels, so a CPU-sized run can exercise the same code path as the CIFAR-10 notebook.

Why: CIFAR-10 is a 163 MB download; these photographs are already on disk with
scikit-learn (reading them needs Pillow, which matplotlib already requires). They are
real photographs, so the statistics are those of natural images (smooth regions, edges,
textures, correlated colour channels), not of synthetic noise.

Region layout (the same for both photographs; columns are half-open pixel ranges, every
region spans all 427 rows)::

    columns   0 .. 368   train  (left band)
    columns 368 .. 384   unused guard band
    columns 384 .. 512   test   (a vertical band of 128 columns)
    columns 512 .. 528   unused guard band
    columns 528 .. 640   train  (right band)

A patch is cut only where it lies entirely inside one band, so no pixel of a test patch
belongs to any train patch. The guard bands keep every train pixel at least 16 columns
away from every test pixel: neighbouring pixels of a photograph are nearly equal, and
without a gap a train patch touching the test band would be almost a copy of a test
patch's edge. The test band sits in the middle so that it holds the same kinds of content
as the train bands (sky, water, trees; petals of both dahlias and blurred leaves), not
only background. It is still a different part of each scene: its patches are brighter on
average than the train patches (more sky), a mild shift of the kind a held-out split of
real photographs has.

Patches are cut on a grid, row by row, china first, then flower: no randomness, so two
calls return equal tensors (shuffling is the data loader's job). With the default
strides, train patches start every 8 pixels (2,700 per photograph, 5,400 in all; they
overlap, which acts like translation augmentation) and test patches every 16 pixels
(175 per photograph, 350 in all).

Example:
    >>> train, test = load_photos_split()
    >>> train.shape, test.shape, train.dtype
    (torch.Size([5400, 3, 32, 32]), torch.Size([350, 3, 32, 32]), torch.uint8)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

PHOTOS_LEVELS = 256  # 8-bit pixels, as in CIFAR-10
PATCH = 32  # patch side, CIFAR-10's image size
PHOTO_NAMES = ("china.jpg", "flower.jpg")
PHOTO_HEIGHT, PHOTO_WIDTH = 427, 640


@dataclass(frozen=True)
class Region:
    """A box of one photograph, half-open pixel ranges ``[top, bottom) x [left, right)``."""

    split: str  # "train" or "test"
    top: int
    bottom: int
    left: int
    right: int


def photo_regions() -> list[Region]:
    """The train and test boxes (the same for both photographs), e.g. to draw them.

    Example:
        >>> [(r.split, r.left, r.right) for r in photo_regions()]
        [('train', 0, 368), ('test', 384, 512), ('train', 528, 640)]
    """
    return [Region("train", 0, PHOTO_HEIGHT, 0, 368),
            Region("test", 0, PHOTO_HEIGHT, 384, 512),
            Region("train", 0, PHOTO_HEIGHT, 528, 640)]


def patch_origins(split: str, stride: int) -> list[tuple[int, int]]:
    """Top-left corners ``(row, column)`` of the patches of one split, in cutting order.

    A corner is kept only if its whole 32x32 patch lies inside one region of that split.

    Example:
        >>> len(patch_origins("train", 8)), len(patch_origins("test", 16))
        (2700, 175)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"stride must be a positive integer; got {stride!r}")
    corners = []
    for region in (r for r in photo_regions() if r.split == split):
        for row in range(region.top, region.bottom - PATCH + 1, stride):
            for col in range(region.left, region.right - PATCH + 1, stride):
                corners.append((row, col))
    return sorted(corners)  # row by row across the bands, as a reader scans the photo


def load_photos() -> dict[str, np.ndarray]:
    """The two photographs as ``(427, 640, 3)`` uint8 arrays, keyed by file name."""
    from sklearn.datasets import load_sample_image

    return {name: load_sample_image(name) for name in PHOTO_NAMES}


def _cut(photo: np.ndarray, corners: list[tuple[int, int]]) -> np.ndarray:
    patches = [photo[r:r + PATCH, c:c + PATCH] for r, c in corners]
    return np.stack(patches).transpose(0, 3, 1, 2)  # HWC -> CHW, as torch wants


def load_photos_split(train_stride: int = 8, test_stride: int = 16) -> tuple[Tensor, Tensor]:
    """32x32 patches of the two photographs as ``(train, test)``, uint8 ``(N, 3, 32, 32)``.

    Train patches come from the train bands, test patches from the test band (see the
    module docstring): no pixel is shared. The defaults give 5,400 train and 350 test
    patches; a smaller stride gives more, overlapping, patches.

    Example:
        >>> train, test = load_photos_split(train_stride=16, test_stride=32)
        >>> train.shape, test.shape, int(train.min()), int(train.max())
        (torch.Size([1400, 3, 32, 32]), torch.Size([104, 3, 32, 32]), 0, 255)
    """
    train_corners = patch_origins("train", train_stride)
    test_corners = patch_origins("test", test_stride)
    photos = load_photos()
    train = np.concatenate([_cut(photos[name], train_corners) for name in PHOTO_NAMES])
    test = np.concatenate([_cut(photos[name], test_corners) for name in PHOTO_NAMES])
    return (torch.from_numpy(np.ascontiguousarray(train)),
            torch.from_numpy(np.ascontiguousarray(test)))
