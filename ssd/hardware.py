"""Backend speed settings and a description of the hardware a run used.

Why: on a GPU, convolution autotuning (``cudnn.benchmark``) and TF32 tensor cores on
Ampere and later are free speed for fixed-size image batches, and PyTorch leaves TF32
off for matmuls by default. A results file should also say what it was measured on, or
images/s from two machines get compared as if they were one.

``configure_backends`` must run before the ``lightning.Trainer`` is built (with the
Trainer's ``benchmark`` left at ``None``, Lightning keeps the session's setting).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ACCELERATORS",
    "configure_backends",
    "describe_hardware",
    "device_type",
    "resolve_channels_last",
    "resolve_precision",
]

#: ``trainer.accelerator`` values this module understands (Lightning's names).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
#: compute capability from which tensor cores do TF32 (Ampere)
_TF32_CAPABILITY = (8, 0)


def device_type(accelerator: str) -> str:
    """``cuda``, ``mps`` or ``cpu``: what ``trainer.accelerator`` runs on, on this machine."""
    if accelerator not in ACCELERATORS:
        raise ValueError(
            f"trainer.accelerator={accelerator!r} is not allowed: must be one of {list(ACCELERATORS)}"
        )
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if accelerator == "mps" or (accelerator == "auto" and mps is not None and mps.is_available()):
        return "mps"
    return "cpu"


def _all_gpus_do_tf32() -> bool:
    count = torch.cuda.device_count()
    return count > 0 and all(torch.cuda.get_device_capability(i) >= _TF32_CAPABILITY for i in range(count))


def configure_backends(accelerator: str, *, deterministic: bool = False) -> dict[str, bool]:
    """Turn on cuDNN autotuning and TF32 (matmul and convolution) where they help; no-op on a CPU.

    ``deterministic`` keeps autotuning off (it picks kernels by timing, so runs may differ).
    Returns what is now on, for the results file.
    """
    if device_type(accelerator) != "cuda":
        return {"cudnn_benchmark": False, "tf32": False}
    torch.backends.cudnn.benchmark = not deterministic
    tf32 = _all_gpus_do_tf32()
    if tf32:
        # the documented switch for matmuls (also what Lightning's tensor-core hint asks for);
        # cuDNN convolutions already default to TF32, set it anyway in case a library turned it off
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
    return {"cudnn_benchmark": not deterministic, "tf32": tf32}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_supports_bf16() -> bool:
    """Native bf16 on this CPU (AVX512-BF16 or AMX); without it bf16 autocast is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` -> bf16-mixed where the device computes bf16 natively, else 16-mixed (CUDA) or 32-true."""
    if precision != "auto":
        return precision
    if uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def resolve_channels_last(value: Any, accelerator: str) -> Any:
    """``auto`` -> channels_last for CUDA and for CPUs with native bf16 (oneDNN prefers NHWC); any other
    value as it is (the config check rejects what is not a bool)."""
    if value != "auto":
        return value
    return uses_cuda(accelerator) or cpu_supports_bf16()


def describe_hardware(precision: str, accelerator: str = "auto") -> dict[str, Any]:
    """What a run ran on, for ``results.json``: device name and count, threads, precision, versions.

    ``precision`` is the trainer's; ``auto`` is resolved the way the run resolves it. Every
    key is always present (``None`` where it does not apply), so results files share one shape.
    """
    kind = device_type(accelerator)
    precision = resolve_precision(precision, accelerator)
    cuda = kind == "cuda"
    return {
        "device_type": kind,
        "device_name": torch.cuda.get_device_name(0) if cuda else (_cpu_name() if kind == "cpu" else kind),
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "cpu_threads": torch.get_num_threads(),
        "precision": precision,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if cuda else None,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
        "float32_matmul_precision": torch.get_float32_matmul_precision() if cuda else None,
    }
