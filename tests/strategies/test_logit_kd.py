"""A new strategy that needs a teacher stage is one small file and one YAML, kept outside ssd.

``tests/strategies/logit_kd.py`` (logit-only KD) and ``tests/conf/strategy/logit_kd.yaml``, found
through Hydra's search path: the strategy contract (ssd.strategies.base) does the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from ssd.config import ConfigError
from ssd.config.validate import validate
from ssd.pipeline import build_datamodule
from ssd.run import run_config
from ssd.stages import stage_config
from ssd.strategies.base import build_classifier_from_cfg
from ssd.strategies.losses import logit_kd
from tests.helpers import SMALL, compose_cfg
from tests.strategies.logit_kd import LogitKD

pytestmark = pytest.mark.usefixtures("one_thread")

STRATEGY_FILE = Path(__file__).with_name("logit_kd.py")
SEARCH_PATH = f"hydra.searchpath=[file://{Path(__file__).resolve().parents[1] / 'conf'}]"


def logit_kd_cfg(*overrides: str, tmp_path: Path | None = None) -> DictConfig:
    """``strategy=logit_kd`` composed by Hydra from tests/conf (ssd's conf/ does not have it)."""
    return compose_cfg([*SMALL, SEARCH_PATH, "strategy=logit_kd", *overrides], tmp_path)


def test_the_strategy_is_one_small_file_and_one_yaml() -> None:
    assert len(STRATEGY_FILE.read_text().splitlines()) <= 45
    cfg = logit_kd_cfg()
    assert cfg.strategy._target_ == "tests.strategies.logit_kd.LogitKD"
    assert cfg.strategy.teacher.strategy == "vanilla" and cfg.strategy.temperature == 4.0
    with pytest.raises(Exception, match="strategy/logit_kd"):  # not one of ssd's own strategies
        compose_cfg([*SMALL, "strategy=logit_kd"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy.temperature=0"], "strategy.temperature=0 is not allowed: must be a number > 0"),
        # from the contract, not from logit_kd.py: the teacher stage's whole config ...
        (["strategy.teacher.strategy=nope"], "strategy.teacher.strategy='nope' is not allowed"),
        (
            ["strategy.teacher.overrides={model: {arch: resnet99}}"],
            "stage teacher (strategy.teacher): model.arch",
        ),
        (["strategy.teacher.ckpt=/no/such/net.pt"], "strategy.teacher.ckpt='/no/such/net.pt' is not allowed"),
        # ... and an optimizer section of its own
        (
            ["+strategy.optim={optimizer: {_target_: torch.optim.Nope, lr: 0.1}, scheduler: {name: cosine}}"],
            "strategy.optim.optimizer._target_='torch.optim.Nope' is not allowed",
        ),
    ],
)
def test_config_errors_name_the_key(overrides: list[str], message: str) -> None:
    validate(logit_kd_cfg())
    with pytest.raises(ConfigError) as err:
        validate(logit_kd_cfg(*overrides))
    assert message in str(err.value)


def module_and_batch() -> tuple[LogitKD, torch.Tensor, torch.Tensor]:
    cfg: dict[str, Any] = OmegaConf.to_container(logit_kd_cfg(), resolve=True)
    datamodule, info = build_datamodule(cfg)
    with pytest.raises(ValueError, match=r"LogitKD needs frozen\['teacher'\]"):  # the contract checks roles
        LogitKD(cfg, info, {})
    torch.manual_seed(0)
    teacher = build_classifier_from_cfg(stage_config(cfg, cfg["strategy"]["teacher"]), info)
    x, y, _ = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    return LogitKD(cfg, info, {"teacher": teacher}), x, y


def test_loss_is_cross_entropy_plus_hinton_kd_on_the_noisy_image() -> None:
    module, x, y = module_and_batch()
    module.eval()  # batch-independent BatchNorm: the reference below sees the same networks
    x_noisy = module.training_input(x)  # the contract's one noise draw
    assert not torch.equal(x_noisy, x)
    loss, logits, terms = module.training_loss(x, x_noisy, y)
    teacher_logits = module.frozen["teacher"](x_noisy)
    expected_kd = logit_kd(module.net(x_noisy), teacher_logits, 4.0)  # ssd's own implementation
    assert terms["kd"].item() == pytest.approx(expected_kd.item(), rel=1e-5) and terms["kd"].item() > 0
    assert loss.item() == pytest.approx((F.cross_entropy(logits, y) + expected_kd).item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in module.frozen["teacher"].parameters())
    assert all(p.grad is not None for p in module.net.parameters() if p.requires_grad)


def test_end_to_end_the_teacher_stage_then_the_student(tmp_path: Path) -> None:
    results = run_config(logit_kd_cfg(tmp_path=tmp_path), tmp_path / "run", "g")
    assert results["status"] == "complete" and results["strategy"] == "logit_kd"
    assert results["method"] == "logit_kd"
    teacher, main = results["stages"]["teacher"], results["stages"]["main"]
    assert teacher["strategy"] == "vanilla" and teacher["source"] == "train"
    assert Path(teacher["net"]).is_file() and 0.0 <= teacher["test_acc"] <= 1.0
    assert main["strategy"] == "logit_kd" and main["source"] == "train" and main["epochs"] == 1
    assert 0.0 <= main["test_acc"] <= 1.0 and results["test_acc"] == main["test_acc"]
    assert (tmp_path / "run" / "main" / "net.pt").is_file()
