"""The course's one trainer for image models, as a small package: one concern per module.

Start with :mod:`nvp_edu.training.loop` (the loop a learner reads after notebook 9); its
docstring says where everything else lives. ``nvp_edu.train`` is the front door:
``python -m nvp_edu.train ...`` and ``from nvp_edu.train import Config, train``.

Nothing is imported here, so that importing one module (say ``fit2d``, notebook 2's loop)
does not import the whole trainer.
"""
