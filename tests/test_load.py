"""``ssd.load(run_dir, stage)`` gives a finished run's network, which reproduces the run's own test
predictions; ``ssd-export`` writes it as TorchScript that gives the same logits."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ssd
from ssd.export import main as export_main
from ssd.noise import fixed_noisy
from ssd.parts import build_datamodule, build_noise
from ssd.report.predictions import load_predictions
from ssd.run import execute
from tests.helpers import SMALL, compose_cfg

#: a tiny run in-process (~5 s on this machine), then loads and exports of it
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp_path = tmp_path_factory.mktemp("load")
    run_dir = tmp_path / "run"
    status, results = execute(compose_cfg([*SMALL, "strategy=self_distill"], tmp_path), run_dir, "g")
    assert status == 0 and results["status"] == "complete"
    return run_dir, results


def run_test_images(results: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The run's whole test set (x in [0, 1], y, idx) and its images under the run's evaluation noise."""
    cfg = results["config"]
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    xs, idxs = [], []
    for batch in datamodule.test_dataloader():
        x, _, idx = datamodule.on_after_batch_transfer(batch, 0)
        xs.append(x)
        idxs.append(idx)
    x, idx = torch.cat(xs), torch.cat(idxs)
    return x, fixed_noisy(build_noise(cfg["noise"]), x, idx, int(cfg["eval_seed"])), idx


def test_loaded_network_gives_the_runs_test_predictions(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, results = tiny_run
    rng = torch.get_rng_state()
    net = ssd.load(run_dir)  # the callable module, as a user writes it
    assert torch.equal(rng, torch.get_rng_state())  # loading leaves the caller's random streams alone
    assert isinstance(net, torch.nn.Module) and not net.training
    x, noisy, idx = run_test_images(results)
    saved = load_predictions(run_dir)
    assert saved is not None and np.array_equal(saved.idx, idx.numpy())
    with torch.no_grad():
        assert np.array_equal(net(noisy).argmax(1).numpy(), saved.pred)  # the stored accuracy's predictions
        assert np.array_equal(net(x).argmax(1).numpy(), saved.pred_clean)
    # the teacher stage loads too, with its own weights
    teacher = ssd.load.load(run_dir, stage="teacher")
    assert any(
        not torch.equal(a, b)
        for a, b in zip(teacher.state_dict().values(), net.state_dict().values(), strict=True)
    )
    info = ssd.load.info(run_dir)
    assert (info.channels, info.image_size, info.num_classes, info.outputs) == (3, x.shape[-1], 4, "logits")


def test_bad_stage_names_the_value_and_the_stages(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = tiny_run
    with pytest.raises(
        ValueError, match=r"stage='student' is not a stage of this run; allowed: teacher, main"
    ):
        ssd.load(run_dir, stage="student")


def test_torchscript_export_round_trip(
    tiny_run: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, results = tiny_run
    out = run_dir / "exported.pt"
    assert export_main([str(run_dir), "--format", "torchscript", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    scripted = torch.jit.load(str(out))
    _, noisy, _ = run_test_images(results)  # another batch size than the trace's
    with torch.no_grad():
        torch.testing.assert_close(scripted(noisy), ssd.load(run_dir)(noisy), rtol=0, atol=1e-5)


ONNX_RUNTIME = all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime"))


@pytest.mark.skipif(not ONNX_RUNTIME, reason="needs onnx and onnxruntime (pip install onnx onnxruntime)")
def test_onnx_export_round_trip(
    tiny_run: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The ONNX file, run by onnxruntime at another batch size than the export's, gives the network's logits."""
    import onnxruntime

    run_dir, results = tiny_run
    out = run_dir / "exported.onnx"
    assert export_main([str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "largest difference from the network" in printed
    _, noisy, _ = run_test_images(results)
    session = onnxruntime.InferenceSession(str(out))
    (logits,) = session.run(None, {"images": noisy.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), ssd.load(run_dir)(noisy), rtol=1e-5, atol=1e-4)
