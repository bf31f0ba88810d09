"""Feature-quality analysis: CKA / relative MSE by hand, and the command on a run folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ssd.analysis import TapAgreement, feature_agreement, linear_gram, unbiased_hsic
from ssd.analyze_features import main as analyze_main
from ssd.cache import StageCache, sha256_file
from ssd.parts import build_noise, classifier_factory
from ssd.pipeline import load_data
from ssd.results import write_json_atomic
from ssd.stages import data_fingerprint, entry_name, stage_config, stage_key
from tests.helpers import TINY, compose_cfg


def hsic_by_hand(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al. (2012), eq. 5, written with explicit sums over index pairs."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    trace = sum(kt[i, j] * lt[j, i] for i in range(n) for j in range(n))
    sums = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * sum(kt[i, :].sum() * lt[i, :].sum() for i in range(n))
    return (trace + sums - cross) / (n * (n - 3))


def test_unbiased_hsic_matches_hand_computation() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 3))
    k, l = x @ x.T, y @ y.T  # noqa: E741
    got = unbiased_hsic(torch.from_numpy(k), torch.from_numpy(l)).item()
    assert got == pytest.approx(hsic_by_hand(k, l), rel=1e-10)
    assert torch.allclose(
        linear_gram(torch.from_numpy(x).float().view(7, 5, 1)), torch.from_numpy(k), atol=1e-4
    )
    with pytest.raises(ValueError, match="at least 4"):
        unbiased_hsic(torch.eye(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))


def test_cka_properties() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 8, 2, 2)
    rotation, _ = torch.linalg.qr(torch.randn(32, 32))
    same, rotated, unrelated = TapAgreement(), TapAgreement(), TapAgreement()
    for chunk in x.split(16):
        same.update(chunk, chunk)
        rotated.update(
            3.0 * chunk.flatten(1) @ rotation, chunk
        )  # rotation and scale: the same representation
        unrelated.update(torch.randn_like(chunk), chunk)
    assert same.cka == pytest.approx(1.0) and same.rel_mse == 0.0
    assert rotated.cka == pytest.approx(1.0, abs=1e-4) and rotated.rel_mse is None  # shapes differ: no MSE
    assert abs(unrelated.cka) < 0.25


def test_relative_mse_by_hand() -> None:
    agg = TapAgreement()
    ref = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    feat = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    agg.update(feat, ref)
    # squared error 0 + 1 + 1 + 0 = 2; reference energy 25 + 0 + 1 + 1 = 27
    assert agg.rel_mse == pytest.approx(2 / 27)


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished self_distill run folder whose networks are untrained (analysis needs no training)."""
    tmp = tmp_path_factory.mktemp("fq")
    cfg: dict[str, Any] = OmegaConf.to_container(
        compose_cfg(
            [*TINY, "strategy=self_distill", "data.test=32", "data.eval_batch_size=16"], tmp_path=tmp
        ),
        resolve=True,
    )
    run = tmp / "run"
    run.mkdir()
    OmegaConf.save(OmegaConf.create(cfg), run / "config.resolved.yaml")
    _, info = load_data(cfg)
    torch.manual_seed(0)
    paths = {}
    for role, stage_cfg in (
        ("clean", stage_config(cfg, {"strategy": "clean"})),
        ("vanilla", stage_config(cfg, cfg["strategy"]["teacher"])),
        ("student", cfg),
    ):
        paths[role] = run / f"{role}.pt"
        torch.save(classifier_factory(stage_cfg["model"], info)().state_dict(), paths[role])
    stages = {
        "teacher": {"strategy": "vanilla", "net": str(paths["vanilla"])},
        "main": {"strategy": "self_distill", "net": str(paths["student"])},
    }
    write_json_atomic(run / "results.json", {"status": "complete", "stages": stages, "config": cfg})
    return run


def test_command_on_a_run_folder(fake_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # no clean teacher in the run or the cache: a clear error
    assert analyze_main([str(fake_run)]) == 2
    assert "no clean teacher found" in capsys.readouterr().err
    assert analyze_main([str(fake_run), "--clean-teacher", str(fake_run / "clean.pt")]) == 0
    summary = json.loads((fake_run / "feature_quality.json").read_text())
    assert summary["taps"] == ["stem", "layer1", "layer2", "layer3"] and summary["images"] == 32
    assert set(summary["comparisons"]) == {"clean_teacher", "noisy_teacher", "student"}
    assert summary["networks"]["noisy_teacher"]["net"] == str(fake_run / "vanilla.pt")
    for comp in summary["comparisons"].values():
        assert comp["input"] == "noisy" and set(comp["cka"]) == set(summary["taps"])
        assert all(v is not None and v > 0 for v in comp["rel_mse"].values())
    assert (fake_run / "feature_quality.png").stat().st_size > 1000
    assert "noisy_teacher" in capsys.readouterr().out


def test_clean_teacher_found_in_the_stage_cache(fake_run: Path, tmp_path: Path) -> None:
    """A student_teacher or clean run with the same settings left a clean teacher in the cache: found by its key."""
    cfg = OmegaConf.to_container(OmegaConf.load(fake_run / "config.resolved.yaml"), resolve=True)
    teacher_cfg = stage_config(cfg, {"strategy": "clean"})
    key = stage_key(teacher_cfg, {}, data_fingerprint(load_data(cfg)[0]))
    StageCache(Path(cfg["paths"]["cache_dir"]) / "stages").publish(
        entry_name(teacher_cfg, key), fake_run / "clean.pt", {"key": key}
    )
    try:
        assert analyze_main([str(fake_run), "--out", str(tmp_path), "--num-images", "16"]) == 0
        summary = json.loads((tmp_path / "feature_quality.json").read_text())
        assert summary["images"] == 16
        assert summary["networks"]["clean_teacher"]["sha256"] == sha256_file(fake_run / "clean.pt")
    finally:
        shutil.rmtree(Path(cfg["paths"]["cache_dir"]) / "stages")


def test_identical_network_on_clean_input_agrees_exactly(fake_run: Path) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(fake_run / "config.resolved.yaml"), resolve=True)
    datamodule, info = load_data(cfg)
    net = classifier_factory(cfg["model"], info)()
    other = classifier_factory(cfg["model"], info)()
    other.load_state_dict(net.state_dict())

    def batches():
        for batch in datamodule.test_dataloader():
            x, _, idx = datamodule.on_after_batch_transfer(batch, 0)
            yield x, idx

    out = feature_agreement(
        net,
        {"copy": (other, "clean"), "noisy": (other, "noisy")},
        batches(),
        build_noise(cfg["noise"]),
        0,
        ["stem", "layer3"],
        max_images=20,
    )
    assert out["copy"]["images"] == 20
    assert out["copy"]["cka"]["stem"] == pytest.approx(1.0) and out["copy"]["rel_mse"][
        "layer3"
    ] == pytest.approx(0.0)
    assert out["noisy"]["rel_mse"]["stem"] > 0 and out["noisy"]["cka"]["stem"] < 1.0
