"""Every invertible layer of the course, under one import path.

    from nvp_edu.flows import Flow, Sequential, AffineCoupling, AdditiveCoupling, Squeeze, BatchNormFlow

Each lives in the module named after its concept (``coupling.py``, ``squeeze.py``,
``batchnorm.py``); this file only gathers them.
"""
from .base import Flow, Sequential, sum_except_batch
from .batchnorm import BatchNormFlow
from .coupling import AdditiveCoupling, AffineCoupling
from .squeeze import Squeeze

__all__ = ["Flow", "Sequential", "AffineCoupling", "AdditiveCoupling", "Squeeze",
           "BatchNormFlow", "sum_except_batch"]
