"""nvp_edu: a course on Real NVP normalizing flows (Dinh et al., arXiv:1605.08803).

Modules, one concept each, in the order the notebooks teach them:
``base``/``flows`` (the flow protocol), ``toys`` (2-D data), ``models`` (Real NVP),
``coupling``, ``masks``, ``squeeze``, ``batchnorm``, ``checks`` (the log-det oracle);
after Real NVP: ``actnorm`` and ``invconv`` (Glow).
"""
__version__ = "0.1.0"
