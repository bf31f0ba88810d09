"""Make torchvision importable beside a CPU-only torch (upstream pytorch/vision#9085).

torchvision 0.28.0's wheel is a CUDA build. Beside the CPU wheel of torch its C extension
does not load, and ``import torchvision`` then crashes in ``_meta_registrations.py``: the
fake-kernel registrations of ``torchvision::nms`` and ``torchvision::qnms`` are not
guarded by ``extension._has_ops()`` as every other registration in that file is.
torchmetrics imports torchvision, so Lightning crashes with it.

This script applies exactly that missing guard, and only when it is needed:

* it does nothing when ``import torchvision`` already works (a GPU machine, a fixed
  torchvision release, or a second run of this script);
* it refuses to touch anything when the import fails for any other reason;
* it rewrites only the two decorator lines, keeps a ``.orig`` copy, and checks the import
  afterwards in a fresh interpreter.

Run it with the interpreter of the environment to fix: ``.venv/bin/python tools/patch_torchvision.py``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = "# ssd: guarded, see tools/patch_torchvision.py (pytorch/vision#9085)"
OPS = ("nms", "qnms")
EXPECTED_ERROR = "operator torchvision::nms does not exist"


def _import_error() -> str | None:
    """Return the error of ``import torchvision`` in a fresh interpreter, or None if it works."""
    proc = subprocess.run(
        [sys.executable, "-c", "import torchvision"], capture_output=True, text=True, check=False
    )
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def main() -> int:
    error = _import_error()
    if error is None:
        print("patch_torchvision: torchvision imports cleanly; nothing to do.")
        return 0
    if EXPECTED_ERROR not in error:
        print(f"patch_torchvision: torchvision fails with an unknown error, not patching: {error}")
        return 1
    spec = importlib.util.find_spec("torchvision")
    target = Path(spec.origin).parent / "_meta_registrations.py"
    text = target.read_text()
    patched = text
    for op in OPS:
        old = f'@torch.library.register_fake("torchvision::{op}")\n'
        new = (
            f'@(torch.library.register_fake("torchvision::{op}") '
            f"if torchvision.extension._has_ops() else (lambda fn: fn))  {MARKER}\n"
        )
        if old not in patched:
            print(f"patch_torchvision: expected line not found in {target}: {old.strip()}")
            return 1
        patched = patched.replace(old, new)
    shutil.copyfile(target, target.with_suffix(".py.orig"))
    target.write_text(patched)
    error = _import_error()
    if error is not None:
        shutil.copyfile(target.with_suffix(".py.orig"), target)
        print(f"patch_torchvision: import still fails after the patch, restored original: {error}")
        return 1
    print(f"patch_torchvision: guarded torchvision::nms/qnms fake kernels in {target} (pytorch/vision#9085).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
