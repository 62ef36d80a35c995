"""Photos: 32x32 colour patches of nine photographs that ship inside installed wheels.

What: the offline stand-in for CIFAR-10. Three well-kept packages carry real colour
photographs in their wheels, readable by file path with no download:

- scikit-learn: ``china.jpg`` (a temple, trees, water, sky) and ``flower.jpg`` (a dahlia);
- scikit-image: ``astronaut.png`` (a portrait with flag and shuttle), ``chelsea.png`` (a
  cat's face), ``coffee.png`` (a cup on a saucer), ``rocket.jpg`` (a launch pad at dusk)
  and the stereo pair ``motorcycle_left.png`` / ``motorcycle_right.png`` (a workshop);
- matplotlib: ``grace_hopper.jpg`` (a portrait in uniform).

Cutting 32x32 patches out of them gives images of CIFAR-10's shape and pixel format,
``(N, 3, 32, 32)`` uint8 with 256 levels, so a CPU-sized run exercises the same code path
as the CIFAR-10 notebook on natural-image statistics (smooth regions, edges, textures,
correlated colour channels).

Held out means unseen: **whole photographs** form the test set (``chelsea.png`` and
``grace_hopper.jpg``), so no test patch shares a pixel, or a scene, with any training
patch. They were chosen so that the training photos hold something alike (a portrait:
the astronaut; a close-up of a textured subject: the flower) without holding the same
thing. The two motorcycle photographs are one scene seen from two camera positions: they
are both in the training set (where a near-duplicate acts like augmentation), never split
across train and test.

Patches are cut on a grid, photograph by photograph in the order of :data:`PHOTOS`, row by
row: no randomness, so two calls return equal tensors (shuffling is the data loader's
job). Training patches start every 8 pixels (they overlap, which acts like translation
augmentation), test patches every 16.

Example:
    >>> train, test = load_photos_split()
    >>> train.shape, test.shape, train.dtype
    (torch.Size([29157, 3, 32, 32]), torch.Size([1575, 3, 32, 32]), torch.uint8)
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

PHOTOS_LEVELS = 256  # 8-bit pixels, as in CIFAR-10
PATCH = 32  # patch side, CIFAR-10's image size


@dataclass(frozen=True)
class Photo:
    """One bundled photograph: its file, the package whose wheel carries it, its split."""

    name: str
    package: str  # "sklearn", "skimage" or "matplotlib"
    split: str  # "train" or "test"


PHOTOS: tuple[Photo, ...] = (
    Photo("china.jpg", "sklearn", "train"),
    Photo("flower.jpg", "sklearn", "train"),
    Photo("astronaut.png", "skimage", "train"),
    Photo("coffee.png", "skimage", "train"),
    Photo("rocket.jpg", "skimage", "train"),
    Photo("motorcycle_left.png", "skimage", "train"),
    Photo("motorcycle_right.png", "skimage", "train"),
    Photo("chelsea.png", "skimage", "test"),
    Photo("grace_hopper.jpg", "matplotlib", "test"),
)
STRIDES = {"train": 8, "test": 16}


def photo_path(photo: Photo) -> Path:
    """Where the installed package keeps the file (found without importing the package)."""
    if photo.package == "matplotlib":
        import matplotlib.cbook

        return Path(matplotlib.cbook.get_sample_data(photo.name, asfileobj=False))
    spec = importlib.util.find_spec(photo.package)
    if spec is None or not spec.submodule_search_locations:
        dist = {"sklearn": "scikit-learn", "skimage": "scikit-image"}[photo.package]
        raise ModuleNotFoundError(
            f"the photos dataset reads {photo.name} from the {dist} package, which is not "
            f"installed; install the course's dependencies (pip install -e .) or "
            f"pip install {dist}")
    folder = "datasets/images" if photo.package == "sklearn" else "data"
    return Path(spec.submodule_search_locations[0]) / folder / photo.name


def read_photo(photo: Photo) -> np.ndarray:
    """One photograph as an ``(H, W, 3)`` uint8 array, with a clear error if it is missing."""
    from PIL import Image

    path = photo_path(photo)
    if not path.is_file():
        raise FileNotFoundError(
            f"photo {photo.name} not found at {path}: this version of {photo.package} does "
            "not ship it in its wheel (scikit-image >= 0.25 does); upgrade the package")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def load_photos(split: str | None = None) -> dict[str, np.ndarray]:
    """The photographs (of one split, or all) as ``(H, W, 3)`` uint8 arrays, by file name."""
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None; got {split!r}")
    return {p.name: read_photo(p) for p in PHOTOS if split in (None, p.split)}


def _check_stride(stride: object) -> None:
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"stride must be a positive integer; got {stride!r}")


def patch_origins(height: int, width: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners ``(row, column)`` of the 32x32 patches of an image, row by row.

    Example:
        >>> patch_origins(48, 40, 8)
        [(0, 0), (0, 8), (8, 0), (8, 8), (16, 0), (16, 8)]
    """
    _check_stride(stride)
    return [(row, col) for row in range(0, height - PATCH + 1, stride)
            for col in range(0, width - PATCH + 1, stride)]


def cut_patches(photo: np.ndarray, stride: int) -> np.ndarray:
    """All 32x32 patches of one ``(H, W, 3)`` photograph as ``(N, 3, 32, 32)`` uint8."""
    _check_stride(stride)
    # windows[i, j] is the patch whose corner is (i * stride, j * stride), already (3, 32, 32):
    # the same corners, in the same order, as patch_origins
    windows = np.lib.stride_tricks.sliding_window_view(photo, (PATCH, PATCH), axis=(0, 1))
    return windows[::stride, ::stride].reshape(-1, 3, PATCH, PATCH)


def load_photos_split(train_stride: int = STRIDES["train"],
                      test_stride: int = STRIDES["test"]) -> tuple[Tensor, Tensor]:
    """32x32 patches as ``(train, test)``, uint8 ``(N, 3, 32, 32)``: test patches come
    from the held-out photographs only (see the module docstring).

    Example:
        >>> train, test = load_photos_split(train_stride=32, test_stride=32)
        >>> train.shape, test.shape, int(train.min()), int(train.max())
        (torch.Size([1942, 3, 32, 32]), torch.Size([414, 3, 32, 32]), 0, 255)
    """
    strides = {"train": train_stride, "test": test_stride}
    for stride in strides.values():
        _check_stride(stride)  # before any file is read
    parts: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for photo in PHOTOS:
        parts[photo.split].append(cut_patches(read_photo(photo), strides[photo.split]))
    return tuple(torch.from_numpy(np.ascontiguousarray(np.concatenate(parts[s])))
                 for s in ("train", "test"))
