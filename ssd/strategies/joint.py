"""``joint`` (Liu et al., IJCAI 2018): fine-tune a denoiser through a classifier.

Starts from two stages, a denoiser ``D`` pretrained with MSE (``denoiser``) and a classifier
``g`` trained on clean images (``classifier``), and minimises

    w_rec * MSE(D(x~), x) + w_cls * CE(g(D(x~)), y)

over ``D``. ``g`` stays frozen (eval-mode BatchNorm, no gradients, unchanged) unless
``train_classifier=true``, which updates it too, with its own learning rate
(``classifier_lr``) as a second parameter group of the one optimizer (automatic optimisation
keeps working). The trained networks are copies: the cached stage networks are never changed.
The evaluated network is ``g(D(.))``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ssd.config.checks import is_number, require, require_bool, require_number
from ssd.strategies.denoise_classify import ClassifyDenoised, DenoiseThenClassify
from ssd.strategies.denoiser import check_denoiser_config


class Joint(ClassifyDenoised):
    requires: ClassVar[tuple[str, ...]] = ("denoiser", "classifier")

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        require_number(cfg, "strategy.w_rec", low=0.0)
        require_number(cfg, "strategy.w_cls", low=0.0)
        w_rec, w_cls = cfg["strategy"]["w_rec"], cfg["strategy"]["w_cls"]
        require(
            w_rec > 0 or w_cls > 0,
            "strategy.w_rec, strategy.w_cls",
            (w_rec, w_cls),
            "at least one weight must be > 0",
        )
        require_bool(cfg, "strategy.train_classifier")
        lr = cfg["strategy"]["classifier_lr"]
        require(is_number(lr) and lr > 0, "strategy.classifier_lr", lr, "must be a number > 0")
        check_denoiser_config(cfg)

    def __init__(
        self,
        cfg: Mapping[str, Any],
        data_info: Mapping[str, Any],
        frozen: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__(cfg, data_info, frozen)
        self.w_rec, self.w_cls = float(cfg["strategy"]["w_rec"]), float(cfg["strategy"]["w_cls"])

    @property
    def train_classifier(self) -> bool:
        return bool(self.cfg["strategy"]["train_classifier"])

    def build_net(self) -> nn.Module:
        # trainable copies start in train mode: Lightning keeps the modes modules have at fit start
        denoiser = copy.deepcopy(self.frozen["denoiser"]).train().requires_grad_(True)
        classifier = self.frozen["classifier"]
        if self.train_classifier:
            classifier = copy.deepcopy(classifier).train().requires_grad_(True)
        return DenoiseThenClassify(denoiser, classifier)

    def training_loss(
        self, x: Tensor, x_noisy: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        denoised = self.net.denoiser(x_noisy)
        logits = self.net.classifier(denoised)
        rec = F.mse_loss(denoised.float(), x.float())
        cls = F.cross_entropy(logits, y)
        return self.w_rec * rec + self.w_cls * cls, logits, {"rec": rec, "cls": cls}

    def param_groups(self) -> list[Any]:
        groups: list[dict[str, Any]] = [{"params": list(self.net.denoiser.parameters())}]
        if self.train_classifier:
            groups.append(
                {
                    "params": list(self.net.classifier.parameters()),
                    "lr": float(self.cfg["strategy"]["classifier_lr"]),
                }
            )
        return groups
