"""Strategies: interchangeable LightningModules built from ``cfg.strategy._target_``.

Adding a strategy = one file here with a ``NoisyImageModule`` subclass and one yaml in
``conf/strategy/`` whose ``_target_`` names it.
"""

from ssd.strategies.base import NoisyImageModule, build_classifier_from_cfg

__all__ = ["NoisyImageModule", "build_classifier_from_cfg"]
