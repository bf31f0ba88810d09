"""Strategies: interchangeable LightningModules built from ``strategy._target_`` (``ssd.parts``).

Adding a strategy = one ``NoisyImageModule`` subclass (``training_loss(x, x_noisy, y)``, plus
``requires`` for the stages it needs and its own keys as typed ``__init__`` arguments) and one
YAML in a ``strategy`` config group whose ``_target_`` names it: in ssd's ``conf/strategy/``, or
in a folder of your own on Hydra's search path (``examples/`` holds a whole one: logit KD).
"""

from ssd.strategies.base import Evaluation, NoisyImageModule

__all__ = ["Evaluation", "NoisyImageModule"]
