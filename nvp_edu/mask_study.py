"""Notebook 4's mask study, under its old import path.

The study trains with the course's trainer, so it lives in
:mod:`nvp_edu.training.mask_study`; its poor mask, :func:`nvp_edu.masks.top_half_mask`,
lives with the other masks.
"""
from .masks import top_half_mask  # noqa: F401
from .training.mask_study import coupling_stack, train_mask_study  # noqa: F401
