"""``ssd-export RUN_DIR [--stage main] [--format torchscript|onnx] [--out FILE]``: a finished run's trained
network as a file that runs without ssd (``torch.jit.load``, or any ONNX runtime).

The network is ``ssd.load(RUN_DIR, stage)``: float images in [0, 1], NCHW, at the run's image size in;
logits out; the normalisation inside. TorchScript always works (a trace; any batch size); ONNX needs the
``onnx`` package (``pip install onnx``), checked before anything is loaded. The command checks the file
it wrote against the network on a random batch and prints the largest difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ssd.load import ModelInfo

FORMATS = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
#: what --format onnx needs, by import name
ONNX_NEEDS = ("onnx",)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ssd-export",
        description="Write a finished run's trained network as TorchScript or ONNX (images in [0,1] NCHW -> logits).",
    )
    p.add_argument("run_dir", type=Path, help="the folder of a finished run (it holds results.json)")
    p.add_argument(
        "--stage", default="main", help="main (default) or a required stage: teacher, teacher/teacher, ..."
    )
    p.add_argument("--format", choices=sorted(FORMATS), default="torchscript", help="default: torchscript")
    p.add_argument("--out", type=Path, help="the file to write (default: RUN_DIR/export/<stage><suffix>)")
    return p


def default_out(run_dir: Path, stage: str, fmt: str) -> Path:
    return run_dir / "export" / f"{stage.replace('/', '-')}{FORMATS[fmt]}"


def missing_for(fmt: str) -> list[str]:
    """The packages ``fmt`` needs that are not installed."""
    needs = ONNX_NEEDS if fmt == "onnx" else ()
    return [name for name in needs if importlib.util.find_spec(name) is None]


def export(run_dir: Path, stage: str, fmt: str, out: Path) -> tuple[ModelInfo, float | None]:
    """Write the stage's network to ``out``; returns (what it takes and gives, the largest |difference|
    between the file's outputs and the network's on a random batch; None for ONNX without onnxruntime)."""
    import torch

    from ssd.load import load_module

    module, info = load_module(run_dir, stage)
    net = module.net.eval()
    example = torch.rand(
        2, info.channels, info.image_size, info.image_size, generator=torch.Generator().manual_seed(0)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        expected = net(example)
        if fmt == "torchscript":
            traced = torch.jit.trace(net, example)
            traced.save(str(out))
            got = torch.jit.load(str(out))(example)
        else:
            torch.onnx.export(
                net,
                (example,),
                str(out),
                input_names=["images"],
                output_names=[info.outputs],
                dynamic_axes={"images": {0: "batch"}, info.outputs: {0: "batch"}},
                dynamo=False,
            )
            if importlib.util.find_spec("onnxruntime") is None:
                return info, None  # the file is written; nothing here can run it to compare
            got = _onnx_run(out, example)
    return info, float((got - expected).abs().max())


def _onnx_run(path: Path, x: object) -> object:
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path))
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    missing = missing_for(args.format)
    if missing:
        print(
            f"ssd-export: --format={args.format} needs {', '.join(missing)}, which is not installed "
            f"(pip install {' '.join(missing)}); allowed here: --format=torchscript",
            file=sys.stderr,
        )
        return 2
    if not (args.run_dir / "results.json").is_file():
        print(
            f"ssd-export: RUN_DIR={str(args.run_dir)!r} has no results.json; allowed: a finished run's folder",
            file=sys.stderr,
        )
        return 2
    from ssd.load import RunError

    out = args.out or default_out(args.run_dir, args.stage, args.format)
    try:
        info, diff = export(args.run_dir, args.stage, args.format, out)
    except RunError as err:
        print(f"ssd-export: {err}", file=sys.stderr)
        return 2
    checked = (
        f"largest difference from the network on a batch: {diff:.2e}"
        if diff is not None
        else "not run to compare: pip install onnxruntime to check it"
    )
    print(f"ssd-export: wrote {out} ({args.format}; {checked})")
    shape = f"(N, {info.channels}, {info.image_size}, {info.image_size})"
    print(f"  input: float images in [0, 1], {shape}; output: {info.outputs}, {info.num_classes} classes")
    if info.classes:
        print(f"  classes: {', '.join(info.classes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
