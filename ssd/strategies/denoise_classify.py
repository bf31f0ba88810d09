"""``denoise`` (two-stage baseline): denoise with a trained ``D``, then classify ``g(D(x~))``.

Stage 1 is the ``denoiser`` stage (``strategy.target``: clean or noise2noise). Then either

* ``strategy=denoise`` (``Denoise``, the SPEC's two-stage baseline): ``g`` is trained from scratch
  on ``D(x~)`` with ``D`` frozen, ``CE(g(D(x~)), y)``; with ``target=noise2noise`` no clean image
  is used anywhere; or
* ``strategy=denoise_frozen`` (``DenoiseFrozen``): ``g`` is a classifier trained on clean images
  (the ``classifier`` stage), never shown ``D(x~)``; nothing is trained here, the main stage only
  evaluates. Two classes, so a report row never mixes the two.

``D`` outputs [0,1]-space images that go straight into ``g`` (which normalises itself). The
evaluated network (``.net``) is the composite ``g(D(.))``; its test also reports ``D``'s PSNR and
SSIM and saves a clean/noisy/denoised grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd.strategies.base import NoisyImageModule
from ssd.strategies.denoiser import DenoisingEvaluation, Target


class DenoiseThenClassify(nn.Module):
    """``classifier(denoiser(x))``: both take and give images in [0,1]; the classifier normalises."""

    def __init__(self, denoiser: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.denoiser(x))


class ClassifyDenoised(NoisyImageModule):
    """Shared by ``denoise`` and ``joint``: ``self.net`` is a ``DenoiseThenClassify``.

    Adds the denoiser's image metrics and grid to the common test, and keeps the parts of
    ``self.net`` that are frozen stage networks out of checkpoints (like ``frozen`` itself:
    they are recorded by reference in ``results.json``).
    """

    net: DenoiseThenClassify

    def __init__(self, **common: Any):
        super().__init__(**common)
        self.test_images = DenoisingEvaluation()

    def frozen_parts(self) -> list[str]:
        """Names of the parts of ``self.net`` that are (not copies of) frozen stage networks."""
        return [
            name
            for name, part in self.net.named_children()
            if any(part is net for net in self.frozen.values())
        ]

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        x, _, idx = batch
        noisy = self.eval_noisy(x, idx)
        self.test_images.update(x, noisy, self.net.denoiser(noisy))

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.test_images.log_to(self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        prefixes = tuple(f"net.{name}." for name in self.frozen_parts())
        state = checkpoint["state_dict"]
        for key in [k for k in state if prefixes and k.startswith(prefixes)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        prefixes = tuple(f"net.{name}." for name in self.frozen_parts())
        if prefixes:
            checkpoint["state_dict"].update(
                {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}
            )


class Denoise(ClassifyDenoised):
    """``g`` trained from scratch on ``D(x~)``, ``D`` the frozen ``denoiser`` stage."""

    requires: ClassVar[tuple[str, ...]] = ("denoiser",)
    #: ``target``: the denoiser stage's target, passed to ``strategy.denoiser.overrides`` (and the report label)
    section_keys: ClassVar[dict[str, Any]] = {**ClassifyDenoised.section_keys, "target": Target}

    @classmethod
    def method_label(cls, section: Mapping[str, Any]) -> str:
        return f"{section['name']}:{section['target']}"

    def build_net(self) -> nn.Module:
        return DenoiseThenClassify(self.frozen["denoiser"], self.make_classifier())

    def training_loss(
        self, x: Tensor, x_noisy: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        with torch.no_grad():  # D is frozen
            denoised = self.net.denoiser(x_noisy)
        logits = self.net.classifier(denoised)
        return F.cross_entropy(logits, y), logits, {}


class DenoiseFrozen(Denoise):
    """``g(D(x~))`` with both stages frozen: the ``classifier`` stage (clean-trained) never saw ``D(x~)``."""

    requires: ClassVar[tuple[str, ...]] = ("denoiser", "classifier")
    trains: ClassVar[bool] = False

    def build_net(self) -> nn.Module:
        return DenoiseThenClassify(self.frozen["denoiser"], self.frozen["classifier"])
