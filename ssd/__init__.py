"""ssd: simple self-distillation (Sasaya et al., ICIP 2023) and its baselines for noisy image classification."""

from ssd import resolvers  # noqa: F401 - registers the OmegaConf resolvers ssd's configs use
