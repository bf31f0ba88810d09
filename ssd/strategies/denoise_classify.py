"""``denoise`` (two-stage baseline): denoise with a trained ``D``, then classify ``g(D(x~))``.

Stage 1 is the ``denoiser`` stage (``strategy.target``: clean or noise2noise). Then either

* ``strategy=denoise`` (``classifier_mode=train``, the SPEC's two-stage baseline): ``g`` is trained
  from scratch on ``D(x~)`` with ``D`` frozen, ``CE(g(D(x~)), y)``; with ``target=noise2noise`` no
  clean image is used anywhere; or
* ``strategy=denoise_frozen`` (``classifier_mode=frozen``): ``g`` is a classifier trained on clean
  images (the ``classifier`` stage), never shown ``D(x~)``; nothing is trained here, the main stage
  only evaluates.

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

from ssd.config.checks import require, require_choice
from ssd.noise import fixed_noisy
from ssd.strategies.base import NoisyImageModule, build_classifier_from_cfg
from ssd.strategies.denoiser import TARGETS, DenoisingEvaluation, check_denoiser_config

CLASSIFIER_MODES = ("frozen", "train")


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
    config_sections: ClassVar[tuple[str, ...]] = ("denoiser",)

    def __init__(
        self,
        cfg: Mapping[str, Any],
        data_info: Mapping[str, Any],
        frozen: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__(cfg, data_info, frozen)
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
        noisy = fixed_noisy(self.noise, x, idx, int(self.cfg["eval_seed"]))
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
    @classmethod
    def required_roles(cls, cfg: Mapping[str, Any]) -> tuple[str, ...]:
        return ("denoiser", "classifier") if cfg["strategy"]["classifier_mode"] == "frozen" else ("denoiser",)

    @classmethod
    def trains(cls, cfg: Mapping[str, Any]) -> bool:
        return cfg["strategy"]["classifier_mode"] == "train"

    @classmethod
    def method_label(cls, cfg: Mapping[str, Any]) -> str:
        return f"{cfg['strategy']['name']}:{cfg['strategy']['target']}"

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        require_choice(cfg, "strategy.target", TARGETS)
        require_choice(cfg, "strategy.classifier_mode", CLASSIFIER_MODES)
        # one name, one method: a report row never mixes the SPEC's baseline with the frozen-classifier variant
        mode, name = cfg["strategy"]["classifier_mode"], cfg["strategy"]["name"]
        expected = {"frozen": "denoise_frozen", "train": "denoise"}[mode]
        require(
            name == expected or name not in ("denoise", "denoise_frozen"),
            "strategy.classifier_mode",
            mode,
            f"is what strategy={expected} does; strategy={name} is "
            + ("g trained on D(x~)" if name == "denoise" else "a frozen clean-trained g"),
        )
        check_denoiser_config(cfg)

    def build_net(self) -> nn.Module:
        train = self.trains(self.cfg)
        classifier = (
            build_classifier_from_cfg(self.cfg, self.data_info) if train else self.frozen["classifier"]
        )
        return DenoiseThenClassify(self.frozen["denoiser"], classifier)

    def training_loss(
        self, x: Tensor, x_noisy: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        with torch.no_grad():  # D is frozen
            denoised = self.net.denoiser(x_noisy)
        logits = self.net.classifier(denoised)
        return F.cross_entropy(logits, y), logits, {}
