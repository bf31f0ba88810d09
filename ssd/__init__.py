"""ssd: simple self-distillation (Sasaya et al., ICIP 2023) and its baselines for noisy image classification."""
