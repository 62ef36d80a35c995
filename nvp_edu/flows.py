"""Every invertible layer of the course, under one import path.

    from nvp_edu.flows import Flow, Sequential, AffineCoupling, Squeeze, BatchNormFlow, ActNorm

Each lives in the module named after its concept (``coupling.py``, ``squeeze.py``,
``batchnorm.py``, ``rotation.py``, and Glow's ``actnorm.py`` and ``invconv.py``); this file
only gathers them.
"""
from .actnorm import ActNorm
from .base import Flow, Sequential, sum_except_batch
from .batchnorm import BatchNormFlow
from .coupling import AdditiveCoupling, AffineCoupling
from .invconv import InvConv1x1
from .rotation import Rotation
from .squeeze import Squeeze

__all__ = ["Flow", "Sequential", "AffineCoupling", "AdditiveCoupling", "Squeeze",
           "BatchNormFlow", "ActNorm", "InvConv1x1", "Rotation", "sum_except_batch"]
