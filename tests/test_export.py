"""``ssd-export``'s bad inputs end with exit 2 and a message naming the value and what is allowed, before
anything is loaded (the round trip of a real run is in tests/test_load.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ssd.export import main

ONNX = importlib.util.find_spec("onnx") is not None


def test_unknown_format_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--format", "tflite"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "'tflite'" in err and "'onnx', 'torchscript'" in err


def test_not_a_run_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "results.json" in err


def test_unfinished_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"status": "failed"}))
    assert main([str(tmp_path)]) == 2
    assert "status='failed'" in capsys.readouterr().err


@pytest.mark.skipif(ONNX, reason="onnx is installed here")
def test_onnx_without_onnx_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--format", "onnx"]) == 2  # before the folder is even looked at
    err = capsys.readouterr().err
    assert "needs onnx" in err and "pip install onnx" in err and "--format=torchscript" in err
