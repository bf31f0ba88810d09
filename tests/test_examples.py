"""The out-of-tree examples (``examples/``, README "Add your own"): salt-and-pepper noise, an
SVHN-like dataset, a torchvision backbone with feature taps, a logit-KD strategy and an early-stopping
callback, each run end to end by ``python -m ssd.run`` from a copy of the folder outside the
repository, reached by ``hydra.searchpath``, with no file of ``ssd/`` or ``conf/`` touched.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssd.config import ConfigError
from ssd.fit import build_module
from ssd.models import tap_shapes
from ssd.noise import check_draws_only
from ssd.parts import build_datamodule, build_noise, classifier_factory
from ssd.pipeline import load_data
from ssd.stages import stage_config
from ssd.strategies.losses import logit_kd
from ssd.validate import validate
from tests.helpers import ONE_THREAD, REPO, compose_cfg

EXAMPLES = REPO / "examples"
CLASSES = 5
#: the examples' parts at the size of a test: 96 train / 32 test SVHN-like images, 3 epochs at most
USER_RUN = [
    "data=svhn_like",
    "data.root=arrays",
    f"data.num_classes={CLASSES}",
    "data.batch_size=16",
    "data.val_size=0",
    "noise=salt_pepper",
    "noise.eval_levels=[0.0,0.2]",
    "model=mobilenet_v3_small",
    "logger=csv",
    "trainer.max_epochs=3",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "trainer.enable_progress_bar=false",
]


def write_svhn_like(folder: Path, n_train: int = 96, n_test: int = 32, seed: int = 0) -> None:
    """SVHN-shaped arrays: uint8 (N, 3, 32, 32), labels 0..CLASSES-1, learnable (brightness = class)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % CLASSES).astype(np.int64)
        x = (y[:, None, None, None] * 45 + rng.integers(0, 40, (n, 3, 32, 32))).astype(np.uint8)
        np.savez(folder / f"{split}.npz", X=x, y=y)


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``examples/`` outside the repository, with its data beside it."""
    folder = tmp_path_factory.mktemp("elsewhere") / "my_project"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("__pycache__"))
    write_svhn_like(folder / "arrays")
    return folder


@pytest.fixture
def user_parts(user_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``my_parts`` importable in this process, as ``python -m ssd.run`` makes it from the user's folder."""
    monkeypatch.syspath_prepend(str(user_folder))
    monkeypatch.chdir(user_folder)
    yield user_folder
    for name in [m for m in sys.modules if m == "my_parts" or m.startswith("my_parts.")]:
        del sys.modules[name]


def user_cfg(folder: Path, *overrides: str) -> dict:
    from omegaconf import OmegaConf

    cfg = compose_cfg([f"hydra.searchpath=[file://{folder}/conf]", *USER_RUN, *overrides], folder / "out")
    return OmegaConf.to_container(cfg, resolve=True)


def ssd_tree() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file of ssd/ and conf/: what must not change."""
    return {
        str(p): (p.stat().st_mtime_ns, p.stat().st_size)
        for top in ("ssd", "conf")
        for p in (REPO / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def run_from(folder: Path, *args: str) -> dict:
    """``python -m ssd.run`` started in ``folder`` (so ``my_parts`` imports from there); its results."""
    run_dir = (
        folder / "out" / f"run{len(list((folder / 'out').glob('run*'))) if (folder / 'out').exists() else 0}"
    )
    cmd = [
        sys.executable,
        "-m",
        "ssd.run",
        f"hydra.searchpath=[file://{folder}/conf]",
        *USER_RUN,
        *args,
        f"paths.log_dir={folder}/out",
        f"paths.cache_dir={folder}/cache",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, **ONE_THREAD, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)  # nothing but the folder it runs in finds my_parts
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow  # ~50 s; each example's part has a fast test below
def test_the_five_examples_run_end_to_end_from_a_folder_outside_the_repo(user_folder: Path) -> None:
    before = ssd_tree()
    # the strategy, the callback, the data, the noise and the backbone, in one run
    kd = run_from(
        user_folder,
        "strategy=logit_kd",
        "callbacks=stop_on_plateau",
        "callbacks.stop_on_plateau.patience=1",
        "callbacks.stop_on_plateau.min_delta=100",  # no epoch improves the loss by 100: it stops early
    )
    assert kd["status"] == "complete" and kd["method"] == "logit_kd"
    teacher, main = kd["stages"]["teacher"], kd["stages"]["main"]
    assert teacher["strategy"] == "vanilla" and main["strategy"] == "logit_kd"
    assert kd["config"]["model"]["_target_"] == "my_parts.backbones.mobilenet_v3_small"
    assert kd["noise"]["name"] == "salt_pepper" and kd["noise"]["level_name"] == "amount"
    assert set(kd["robustness"]) == {"amount=0", "amount=0.2"}
    assert kd["data"]["source"].startswith("SVHN-like arrays") and kd["data"]["splits"]["train"] == 96
    assert main["epochs"] == teacher["epochs"] == 2  # early stopping ended both stages before max_epochs=3
    # the backbone's feature taps, by name and by any module path, distilled from a cached teacher
    sd = run_from(
        user_folder,
        "strategy=self_distill",
        "strategy.taps=[features.2.block.0,middle]",
        "trainer.log_every_n_steps=1",
    )
    assert sd["status"] == "complete" and sd["stages"]["teacher"]["source"] == "train"  # other callbacks
    with open(Path(sd["run_dir"]) / "main" / "metrics.csv", newline="") as handle:
        columns = next(csv.reader(handle))
    assert {"train/feat/features.2.block.0", "train/feat/middle"} <= set(columns)
    assert ssd_tree() == before  # nothing of ssd/ or conf/ was written


def test_salt_and_pepper_noise_keeps_the_noise_contract(user_parts: Path) -> None:
    noise = build_noise(user_cfg(user_parts)["noise"])
    check_draws_only(noise)
    x = torch.full((2, 3, 8, 8), 0.5)
    noisy = noise.at_level(1.0)(x, generator=torch.Generator().manual_seed(0))
    assert set(noisy.unique().tolist()) <= {0.0, 1.0}  # every pixel hit: black or white, all channels alike
    assert torch.equal(noisy[:, 0], noisy[:, 2])


def test_svhn_like_data_declares_its_classes_before_reading(user_parts: Path) -> None:
    cfg = user_cfg(user_parts)
    datamodule = build_datamodule(cfg)
    assert (datamodule.num_classes, datamodule.image_size) == (CLASSES, 32) and datamodule._splits is None
    datamodule.setup("fit")
    x, y = datamodule.split("train")
    assert x.shape == (96, 3, 32, 32) and int(y.max()) == CLASSES - 1
    with pytest.raises(ConfigError, match="data.image_size=0"):
        validate(
            compose_cfg([f"hydra.searchpath=[file://{user_parts}/conf]", *USER_RUN, "data.image_size=0"])
        )


def test_the_torchvision_backbone_taps_named_and_dotted_modules(user_parts: Path) -> None:
    cfg = user_cfg(user_parts, "strategy=self_distill")
    _, facts = load_data(cfg)
    net = classifier_factory(cfg["model"], facts)()
    shapes = tap_shapes(net, "all", (3, 32, 32))
    assert list(shapes) == ["stem", "middle", "late"]
    assert list(tap_shapes(net, ["features.9", "features.2.block.0"], (3, 32, 32))) == [
        "features.2.block.0",
        "features.9",
    ]  # network order, whatever order the list gives


def test_logit_kd_is_cross_entropy_plus_hinton_kd(user_parts: Path) -> None:
    cfg = user_cfg(
        user_parts, "strategy=logit_kd", "model=resnet20"
    )  # MobileNet's logits start all but equal
    datamodule, facts = load_data(cfg)
    with pytest.raises(ValueError, match=r"LogitKD needs frozen\['teacher'\]"):  # the contract checks roles
        build_module(cfg, facts, {})
    torch.manual_seed(0)
    teacher = classifier_factory(stage_config(cfg, cfg["strategy"]["teacher"])["model"], facts)()
    module = build_module(cfg, facts, {"teacher": teacher}).eval()
    x, y, _ = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    x_noisy = module.training_input(x)  # the contract's one noise draw
    loss, logits, terms = module.training_loss(x, x_noisy, y)
    expected_kd = logit_kd(module.net(x_noisy), teacher(x_noisy), 4.0)  # ssd's own implementation
    assert terms["kd"].item() == pytest.approx(expected_kd.item(), rel=1e-5) and terms["kd"].item() > 0
    assert loss.item() == pytest.approx((F.cross_entropy(logits, y) + expected_kd).item(), rel=1e-5)
    with pytest.raises(ConfigError, match="strategy.temperature=0 is not allowed"):
        validate(
            compose_cfg(
                [
                    f"hydra.searchpath=[file://{user_parts}/conf]",
                    *USER_RUN,
                    "strategy=logit_kd",
                    "strategy.temperature=0",
                ]
            )
        )
