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
from typing import Annotated, Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ssd.config import Range
from ssd.config.errors import ConfigError
from ssd.strategies.denoise_classify import ClassifyDenoised, DenoiseThenClassify

Weight = Annotated[float, Range(ge=0)]


class Joint(ClassifyDenoised):
    """``D`` fine-tuned through ``g``: ``w_rec`` and ``w_cls`` weigh the two losses (not both 0);
    ``train_classifier`` updates ``g`` too, at ``classifier_lr``."""

    requires: ClassVar[tuple[str, ...]] = ("denoiser", "classifier")

    def __init__(
        self,
        *,
        w_rec: Weight,
        w_cls: Weight,
        train_classifier: bool,
        classifier_lr: Annotated[float, Range(gt=0)],
        **common: Any,
    ):
        if w_rec == 0 and w_cls == 0:
            raise ConfigError(
                "strategy.w_rec, strategy.w_cls=(0, 0) is not allowed: at least one weight must be > 0"
            )
        self.train_classifier = train_classifier
        super().__init__(**common)
        self.w_rec, self.w_cls = float(w_rec), float(w_cls)
        self.classifier_lr = float(classifier_lr)

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
                    "lr": self.classifier_lr,
                }
            )
        return groups
