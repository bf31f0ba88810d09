"""Tests for ssd.hardware: backend speed settings (CUDA faked on a CPU machine) and the hardware record."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch

from ssd.hardware import configure_backends, describe_hardware, device_type


@pytest.fixture
def backend_state() -> Iterator[None]:
    """Restore the global backend flags a test changes."""
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.set_float32_matmul_precision(saved[2])


def fake_cuda(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], count: int = 1) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capability)


def test_cpu_is_a_no_op(backend_state):
    torch.backends.cudnn.benchmark = False
    torch.set_float32_matmul_precision("highest")
    assert configure_backends("cpu") == {"cudnn_benchmark": False, "tf32": False}
    if not torch.cuda.is_available():
        assert configure_backends("auto") == {"cudnn_benchmark": False, "tf32": False}
    assert torch.backends.cudnn.benchmark is False
    assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "auto"])
def test_ampere_turns_on_benchmark_and_tf32(monkeypatch, backend_state, accelerator):
    fake_cuda(monkeypatch, (8, 0), count=2)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    assert configure_backends(accelerator) == {"cudnn_benchmark": True, "tf32": True}
    assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.allow_tf32 is True
    assert torch.get_float32_matmul_precision() == "high"


def test_pre_ampere_keeps_full_fp32(monkeypatch, backend_state):
    fake_cuda(monkeypatch, (7, 0))
    torch.set_float32_matmul_precision("highest")
    assert configure_backends("gpu") == {"cudnn_benchmark": True, "tf32": False}
    assert torch.get_float32_matmul_precision() == "highest"


def test_mixed_gpus_need_all_ampere(monkeypatch, backend_state):
    fake_cuda(monkeypatch, (8, 0), count=2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 6) if i == 0 else (7, 5))
    torch.set_float32_matmul_precision("highest")
    assert configure_backends("gpu")["tf32"] is False


def test_deterministic_keeps_autotuning_off(monkeypatch, backend_state):
    fake_cuda(monkeypatch, (9, 0))
    torch.backends.cudnn.benchmark = True
    assert configure_backends("gpu", deterministic=True) == {"cudnn_benchmark": False, "tf32": True}
    assert torch.backends.cudnn.benchmark is False


def test_bad_accelerator_names_the_key():
    with pytest.raises(ValueError, match=r"trainer.accelerator='tpu' is not allowed: must be one of"):
        configure_backends("tpu")
    with pytest.raises(ValueError, match="trainer.accelerator"):
        describe_hardware("32-true", "quantum")


def test_device_type_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_type("cpu") == "cpu"
    assert device_type("gpu") == "cpu"  # Lightning itself reports a missing GPU


def test_describe_hardware_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = describe_hardware("bf16-mixed", "cpu")
    assert info["device_type"] == "cpu"
    assert isinstance(info["device_name"], str) and info["device_name"]
    assert info["gpu_count"] == 0
    assert info["cpu_threads"] == torch.get_num_threads() >= 1
    assert info["precision"] == "bf16-mixed"
    assert info["torch_version"] == torch.__version__
    assert info["cuda_version"] is None and info["cudnn_benchmark"] is None
    json.dumps(info)  # goes into results.json as is


def test_describe_hardware_resolves_auto_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from ssd.hardware import resolve_precision

    info = describe_hardware("auto", "cpu")
    assert info["precision"] == resolve_precision("auto", "cpu") != "auto"


def test_describe_hardware_same_keys_on_cuda(monkeypatch):
    fake_cuda(monkeypatch, (8, 0), count=4)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake A100")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    info = describe_hardware("bf16-mixed", "gpu")
    assert info["device_type"] == "cuda" and info["device_name"] == "Fake A100" and info["gpu_count"] == 4
    assert info["cudnn_version"] == 90100 and info["float32_matmul_precision"] in (
        "highest",
        "high",
        "medium",
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert set(describe_hardware("32-true", "cpu")) == set(info)
