"""Config composition and validation: every bad value fails before anything is built."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ssd.config import ConfigError
from ssd.paths import conf_dir
from ssd.validate import resolve_auto, validate
from tests.helpers import TINY, compose_cfg, run_cli


def test_default_config_is_the_research_recipe() -> None:
    assert compose_cfg(return_hydra=True).hydra.job.chdir is False  # DDP children rely on it
    cfg = compose_cfg()
    validate(cfg)
    assert cfg.data.name == "cifar10" and cfg.strategy.name == "vanilla"
    assert cfg.model._target_ == "ssd.models.resnet18_cifar"
    assert cfg.optim.optimizer.lr == 0.1 and cfg.optim.optimizer.nesterov and cfg.data.batch_size == 128


def test_cpu_quick_preset() -> None:
    cfg = compose_cfg(["experiment=cpu_quick"])
    validate(cfg)
    assert cfg.model._target_ == "ssd.models.resnet20" and cfg.data.variant == "subset"
    assert cfg.trainer.max_epochs <= 20


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("noise.sigma=-0.1", "noise.sigma=-0.1"),
        ("noise.sigma=abc", "noise.sigma='abc'"),
        ("data.batch_size=0", "data.batch_size=0"),
        ("data.batch_size=-4", "data.batch_size=-4"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0"),
        ("model._target_=ssd.models.resnet99", "model._target_='ssd.models.resnet99'"),
        ("noise._target_=ssd.noise.Speckle", "ssd.noise.Speckle"),
        ("+logger.mlflow._target_=mlflow.Logger", "logger.mlflow._target_='mlflow.Logger'"),
        ("seed=-1", "seed=-1"),
        ("data.val_size=1.5", "data.val_size=1.5"),
        ("trainer.precision=fp8", "trainer.precision='fp8'"),
        ("noise=poisson noise.ppp=0", "noise.ppp=0"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    cfg = compose_cfg(override.split())
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


@pytest.mark.parametrize("precision", ["32", "16", "64", "bf16-mixed", "32-true"])
def test_lightning_precision_names_pass_also_as_bare_numbers(precision: str) -> None:
    """``trainer.precision=32`` reaches the config as the int 32 (Hydra parses it); Lightning takes it."""
    validate(compose_cfg([f"trainer.precision={precision}"]))


def test_batch_size_must_split_over_devices() -> None:
    cfg = compose_cfg(["trainer.devices=3", "data.batch_size=128"])
    with pytest.raises(ConfigError, match="divisible"):
        validate(cfg)


def test_auto_settings_are_resolved_once_into_a_plain_container() -> None:
    """``resolve_auto``: what a run validates and uses; keys that interpolate a setting follow it."""
    container = resolve_auto(compose_cfg([*TINY, "trainer.channels_last=auto"]))
    assert isinstance(container, dict) and container["trainer"]["channels_last"] in (True, False)
    assert container["data"]["channels_last"] == container["trainer"]["channels_last"]
    assert container["trainer"]["precision"] == "32-true"
    validate(container)
    with pytest.raises(ConfigError, match="data.channels_last='auto'"):  # never resolved: not a bool
        validate(OmegaConf.to_container(compose_cfg([*TINY, "trainer.channels_last=auto"]), resolve=True))


def test_cli_errors_are_one_line_and_fail_fast(tmp_path) -> None:
    bad = run_cli([*TINY, "noise.sigma=-0.1"], tmp_path, timeout=120)
    assert bad.returncode == 2
    assert "noise.sigma=-0.1 is not allowed" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = run_cli(["strategy=nope"], tmp_path, timeout=120)
    assert unknown.returncode == 2  # a config error like any other (ssd.run.main)
    assert "strategy=nope is not allowed" in unknown.stderr and "vanilla" in unknown.stderr


@pytest.mark.parametrize(
    "experiment",
    sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml") if p.stem != "imagenet_folder"),
)
def test_every_shipped_experiment_validates_with_every_kind_of_strategy(experiment: str) -> None:
    """A new check (a warm-up within the run, a value class) must not reject a preset the docs tell people
    to run; ``imagenet_folder`` needs its image folder to validate (the data root is checked)."""
    for strategy in ("vanilla", "student_teacher", "self_distill", "online_distill", "joint", "denoise"):
        validate(compose_cfg([f"experiment={experiment}", f"strategy={strategy}"]))
