"""``denoiser`` stage: train the denoiser network ``D`` (``cfg.denoiser``) on noisy images.

* ``target=clean``: ``MSE(D(x~), x)``.
* ``target=noise2noise``: ``MSE(D(x~1), x~2)`` with two independent noise draws of the same
  clean image (Lehtinen et al., 2018). No clean image enters the loss; for zero-mean noise
  the minimiser is the same as with clean targets.

Its product (``.net``) is ``D``: frozen by ``denoise``, the starting point of ``joint``. It is
measured by image quality instead of accuracy: PSNR and SSIM of ``D(x~)`` against ``x`` under
the fixed evaluation noise, next to the PSNR of the noisy input itself, plus a picture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ssd.strategies.base import NoisyImageModule
from ssd.viz import save_denoising_grid

#: what ``D(x~)`` is regressed to: the clean image, or a second independent noisy draw (Noise2Noise)
Target = Literal["clean", "noise2noise"]


class DenoisingEvaluation(nn.Module):
    """What a denoiser is measured by at test time: PSNR, SSIM, PSNR of the noisy input, a picture.

    PSNR is computed per image and averaged over images (the denoising papers' convention, not
    the PSNR of the dataset-wide MSE), on the raw outputs (what a classifier downstream sees).
    Metric states are synchronised across DDP ranks when computed. The first images seen are
    kept for the clean/noisy/denoised grid.
    """

    METRICS = ("psnr", "ssim", "psnr_noisy")

    def __init__(self, grid_images: int = 8) -> None:
        super().__init__()
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.psnr_noisy = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
        self.grid_images = grid_images
        self.samples: tuple[Tensor, Tensor, Tensor] | None = None

    def update(self, clean: Tensor, noisy: Tensor, denoised: Tensor) -> None:
        clean, noisy, denoised = clean.float(), noisy.float(), denoised.detach().float()
        self.psnr.update(denoised, clean)
        self.ssim.update(denoised, clean)
        self.psnr_noisy.update(noisy, clean)
        if self.samples is None:
            self.samples = tuple(t[: self.grid_images].cpu() for t in (clean, noisy, denoised))  # type: ignore[assignment]

    def compute_and_reset(self, prefix: str = "test") -> dict[str, Tensor]:
        """``{prefix}/psnr``, ``{prefix}/ssim``, ``{prefix}/psnr_noisy``; clears the states."""
        values = {f"{prefix}/{name}": getattr(self, name).compute() for name in self.METRICS}
        for name in self.METRICS:
            getattr(self, name).reset()
        return values

    def log_to(self, module: NoisyImageModule, grid_name: str = "denoising") -> None:
        """Log the test metrics on ``module`` and save/log the grid in its stage folder."""
        for name, value in self.compute_and_reset("test").items():
            module.log(name, value, sync_dist=False)  # compute() already synchronised
        if self.samples is not None:
            save_denoising_grid(module.trainer, *self.samples, name=grid_name)
            self.samples = None


class TrainDenoiser(NoisyImageModule):
    """The denoiser stage: ``self.net`` is ``D`` (the configured ``denoiser``), trained with MSE to a
    clean or a noisy target (``strategy.target``)."""

    monitor: ClassVar[str] = "val/psnr"

    def __init__(self, *, denoiser: Callable[[], nn.Module], target: Target, **common: Any):
        self.make_denoiser = denoiser
        super().__init__(**common)
        self.target = target
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
        self.test_images = DenoisingEvaluation()

    def build_net(self) -> nn.Module:
        return self.make_denoiser()

    def regression_target(self, x: Tensor) -> Tensor:
        """What ``D(x~)`` is regressed to for clean ``x``: ``x`` itself, or a second, independent noisy draw."""
        return self.add_noise(x) if self.target == "noise2noise" else x

    def training_loss(self, x: Tensor, x_noisy: Tensor, y: Tensor) -> tuple[Tensor, None, dict[str, Tensor]]:
        """MSE of ``D(x~)`` to its target; no logits (the base then logs no training accuracy)."""
        return F.mse_loss(self.net(x_noisy).float(), self.regression_target(x).float()), None, {}

    def predict_logits(self, x_noisy: Tensor) -> Tensor:
        raise TypeError(
            "a denoiser stage outputs images, not logits; classify with strategy=denoise or joint"
        )

    def _denoise_fixed(self, x: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        noisy = self.eval_noisy(x, idx)
        return noisy, self.net(noisy)

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        x, _, idx = batch
        _, denoised = self._denoise_fixed(x, idx)
        self.val_psnr(denoised.float(), x.float())
        self.log("val/psnr", self.val_psnr, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        x, _, idx = batch
        noisy, denoised = self._denoise_fixed(x, idx)
        self.test_images.update(x, noisy, denoised)

    def on_test_epoch_end(self) -> None:
        self.test_images.log_to(self)
