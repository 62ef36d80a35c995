"""Datasets: scikit-learn's 8x8 digits (bundled, no download) for CPU image work.

Digits: 1,797 grey images of 8x8 pixels with 17 intensity levels (0..16). Every notebook
and benchmark uses the same 80/20 split (``random_state=0``), so held-out numbers are
comparable across the course.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

DIGITS_LEVELS = 17  # pixel values 0..16


def load_digits_split(test_size: float = 0.2, random_state: int = 0) -> tuple[Tensor, Tensor]:
    """scikit-learn digits as integer images ``(N, 1, 8, 8)`` (uint8, values 0..16).

    Returns ``(train, test)``: 1,437 and 360 images with the default 80/20 split.

    Example:
        >>> train, test = load_digits_split()
        >>> train.shape, test.shape, int(train.max())
        (torch.Size([1437, 1, 8, 8]), torch.Size([360, 1, 8, 8]), 16)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images = load_digits().images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    train, test = train_test_split(images, test_size=test_size, random_state=random_state)
    return (torch.from_numpy(train).unsqueeze(1), torch.from_numpy(test).unsqueeze(1))
from .cifar import CIFAR10
