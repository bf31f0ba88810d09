"""Analyses of trained networks (run by commands such as ``python -m ssd.analyze_features``)."""

from ssd.analysis.features import TapAgreement, feature_agreement, linear_gram, plot_agreement, unbiased_hsic

__all__ = ["TapAgreement", "feature_agreement", "linear_gram", "plot_agreement", "unbiased_hsic"]
