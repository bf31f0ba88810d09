"""Strategies: interchangeable LightningModules built from ``cfg.strategy._target_``.

Adding a strategy = one ``NoisyImageModule`` subclass (``training_loss(x, x_noisy, y)``, plus
``requires`` for the stages it needs) and one YAML in a ``strategy`` config group whose
``_target_`` names it: in ssd's ``conf/strategy/``, or in another folder on Hydra's search path
(``tests/strategies/logit_kd.py`` with ``tests/conf/strategy/logit_kd.yaml`` is a whole example).
"""

from ssd.strategies.base import NoisyImageModule, build_classifier_from_cfg

__all__ = ["NoisyImageModule", "build_classifier_from_cfg"]
