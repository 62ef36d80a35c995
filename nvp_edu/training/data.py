"""The data of a run: images as uint8 tensors, the validation split, flips, recalibration.

``load_data(cfg)`` gives ``(train, test, levels, flip)``: integer images ``(N, C, H, W)``,
the number of intensity levels (256 for CIFAR-10, 17 for the digits) and whether a
left-right flip is a valid augmentation (a mirrored digit is not a digit). The datasets
(notebook 6 explains why they are integers): ``cifar10`` (the official tarball,
:mod:`nvp_edu.cifar`), ``photos`` (patches of bundled photographs, :mod:`nvp_edu.photos`),
``digits`` (scikit-learn's 8x8 digits) and ``synthetic`` (CIFAR-shaped random images for
smoke runs).

Example:
    >>> train_x, val_x = split_validation(synthetic_images(10, seed=0), 0.2)
    >>> train_x.shape, val_x.shape
    (torch.Size([8, 3, 32, 32]), torch.Size([2, 3, 32, 32]))
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..batchnorm import recompute_running_stats
from .objective import dequantized_model_space
from .settings import DATASETS, Config


def synthetic_images(n: int, seed: int, size: int = 32) -> Tensor:
    """CIFAR-shaped uint8 images (n, 3, size, size): smooth random colour fields plus noise.

    Deterministic in ``seed``. For smoke runs and CI where the real tarball is absent.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                       align_corners=False)
    noisy = smooth + 0.08 * torch.randn(n, 3, size, size, generator=g)
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)


def load_data(cfg: Config) -> tuple[Tensor, Tensor, int, bool]:
    """``(train, test, levels, flip)``: uint8 images (N, C, H, W), intensity levels, flips."""
    if cfg.dataset == "cifar10":
        from ..cifar import CIFAR10
        train = CIFAR10(cfg.data_root, train=True, download=cfg.download).data
        test = CIFAR10(cfg.data_root, train=False, download=cfg.download).data
        levels, flip = 256, True
    elif cfg.dataset == "photos":
        from ..photos import PHOTOS_LEVELS, load_photos_split
        train, test = load_photos_split()
        levels, flip = PHOTOS_LEVELS, True  # a mirrored photograph is still a photograph
    elif cfg.dataset == "synthetic":
        train, test = synthetic_images(2048, seed=1), synthetic_images(512, seed=2)
        levels, flip = 256, True
    elif cfg.dataset == "digits":
        from ..data import DIGITS_LEVELS, load_digits_split
        train, test = load_digits_split()
        levels, flip = DIGITS_LEVELS, False  # a mirrored digit is not a digit
    else:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {cfg.dataset!r}")
    if cfg.limit_train is not None:
        train = train[:cfg.limit_train]
    if cfg.limit_test is not None:
        test = test[:cfg.limit_test]
    return train, test, levels, flip


def random_hflip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2 (the paper's augmentation)."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def split_validation(train_x: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed random ``fraction`` of the training images, held out for model selection.

    A fraction that rounds to no image (or to all of them) is an error: the run would
    otherwise select on the test set, or train on nothing, without a word.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1); got {fraction}")
    perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(fraction * len(train_x)))
    if fraction > 0 and not 0 < n_val < len(train_x):
        raise ValueError(f"--val-fraction {fraction} of {len(train_x)} training images is "
                         f"{n_val} images: give a fraction that leaves at least one image on "
                         "each side (or 0 for no validation split)")
    return train_x[perm[n_val:]], train_x[perm[:n_val]]


def recalibration_images(train_x: Tensor, n: int, seed: int) -> Tensor:
    """The training images whose statistics :func:`recalibrate_batch_norm` recomputes:
    all of them if there are at most ``n``, else a fixed random ``n`` (seeded). Not the
    first ``n``: a dataset stored in order (the photos, photograph by photograph) would
    give the statistics of one photograph."""
    if len(train_x) <= n:
        return train_x
    pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:n]
    return train_x[pick.to(train_x.device)]


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, images: Tensor, levels: int,
                           batch_size: int = 256, seed: int = 777,
                           dequantizer: nn.Module | None = None) -> None:
    """Exact batch-norm running statistics from integer training ``images`` (notebook 8):
    one fixed dequantization draw (from ``dequantizer`` if given), every batch weighted
    equally."""
    g = torch.Generator(device=images.device).manual_seed(seed)
    was_training = dequantizer is not None and dequantizer.training
    if dequantizer is not None:
        dequantizer.eval()  # draws noise; its own statistics stay as they are
    batches = [dequantized_model_space(xb, levels, g, dequantizer)[0]
               for xb in images.split(batch_size)]
    if dequantizer is not None:
        dequantizer.train(was_training)
    recompute_running_stats(model, batches)
