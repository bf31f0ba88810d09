"""``python -m ssd.analyze_features RUN_DIR``: how close noisy-input features get to a clean teacher's.

For a finished run (any of ``vanilla``, ``clean``, ``student_teacher``, ``self_distill``) it
finds three networks trained with the run's settings:

* the **clean teacher** (strategy ``clean``): its features of clean test images are the reference,
* the **noisy teacher** (strategy ``vanilla``), fed the noisy test images,
* the run's **student** (a distillation run's main network), fed the noisy test images,

taking each from the run's own stages, else from the stage cache (``paths.cache_dir``)
under the key the pipeline would use, else from ``--clean-teacher``/``--noisy-teacher``/
``--student`` (net.pt or Lightning .ckpt; these always win). It also measures the clean
teacher on noisy images (how far noise alone moves the target). Writes
``feature_quality.json`` and ``feature_quality.png`` into the run folder (or ``--out``).

    python -m ssd.analyze_features outputs/runs/self_distill-gaussian/2026-01-01_00-00-00
    python -m ssd.analyze_features --config RUN/config.resolved.yaml --clean-teacher a.pt --noisy-teacher b.pt --out /tmp/fq
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from ssd.analysis.features import feature_agreement, plot_agreement
from ssd.cache import StageCache, sha256_file
from ssd.data.protocol import DataFacts
from ssd.models import resolve_taps
from ssd.parts import build_noise, classifier_factory, strategy_class
from ssd.pipeline import load_data
from ssd.results import read_json, write_json_atomic
from ssd.stages import data_fingerprint, entry_name, load_net_weights, stage_config, stage_key
from ssd.strategies.distill import FeatureDistillation

log = logging.getLogger("ssd.analyze_features")

#: which stage strategy plays which teacher
TEACHER_ROLES = {"clean": "clean_teacher", "vanilla": "noisy_teacher"}


class AnalysisError(RuntimeError):
    """The networks to compare could not be found."""


def run_networks(run_dir: Path, cfg: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Networks of a finished run folder by analysis role: (net path, the config it was trained with)."""
    results = read_json(run_dir / "results.json") or {}
    if results.get("status") != "complete":
        raise AnalysisError(f"{run_dir} has no complete results.json (status: {results.get('status')})")
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for role, record in results.get("stages", {}).items():
        if role == "main":
            continue
        strategy = record.get("strategy")
        if strategy in TEACHER_ROLES and record.get("net"):
            found[TEACHER_ROLES[strategy]] = (record["net"], stage_config(cfg, cfg["strategy"][role]))
    main = results["stages"]["main"]
    name = cfg["strategy"]["name"]
    if name in TEACHER_ROLES:
        found[TEACHER_ROLES[name]] = (main["net"], dict(cfg))
    elif issubclass(strategy_class(cfg["strategy"]), FeatureDistillation):
        found["student"] = (main["net"], dict(cfg))
    return found


def cached_teacher(
    cfg: Mapping[str, Any], strategy: str, fingerprint: Mapping[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """The stage-cache entry of a ``strategy`` teacher trained with ``cfg``'s settings and data (None if absent)."""
    overrides = (cfg["strategy"].get("teacher") or {}).get("overrides") or {}
    teacher_cfg = stage_config(cfg, {"strategy": strategy, "overrides": overrides})
    key = stage_key(teacher_cfg, {}, fingerprint)
    hit = StageCache(Path(cfg["paths"]["cache_dir"]) / "stages").lookup(entry_name(teacher_cfg, key))
    return (hit["net"] if hit else None), teacher_cfg


def find_networks(
    cfg: Mapping[str, Any],
    run_dir: Path | None,
    explicit: Mapping[str, str | None],
    fingerprint: Mapping[str, Any],
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Clean teacher, noisy teacher and student: explicit paths, else the run's stages, else the cache."""
    found = run_networks(run_dir, cfg) if run_dir is not None else {}
    for strategy, role in TEACHER_ROLES.items():
        if role not in found:
            path, teacher_cfg = cached_teacher(cfg, strategy, fingerprint)
            if path:
                found[role] = (path, teacher_cfg)
            elif not explicit.get(role):
                log.warning("no %s (strategy %s) with this run's settings in the stage cache", role, strategy)
    for role, path in explicit.items():
        if path:
            own_cfg = (
                dict(cfg)
                if role == "student"
                else cached_teacher(cfg, "clean" if role == "clean_teacher" else "vanilla", fingerprint)[1]
            )
            found[role] = (str(Path(path).resolve()), own_cfg)
    if "clean_teacher" not in found:
        raise AnalysisError(
            "no clean teacher found: run `python -m ssd.run strategy=clean` (or strategy=student_teacher) with the same "
            "settings and cache dir, or pass --clean-teacher PATH"
        )
    if len(found) < 2:
        raise AnalysisError(
            "nothing to compare with the clean teacher: give a self_distill/student_teacher run, --noisy-teacher or --student"
        )
    return found


def load_network(path: str, cfg: Mapping[str, Any], facts: DataFacts) -> nn.Module:
    net = classifier_factory(cfg["model"], facts)()
    load_net_weights(net, path)
    return net


def _has_tap(net: nn.Module, tap: str) -> bool:
    try:
        resolve_taps([tap], net)
    except ValueError:
        return False
    return True


def analyze(
    cfg: Mapping[str, Any],
    out_dir: Path,
    run_dir: Path | None = None,
    explicit: Mapping[str, str | None] | None = None,
    taps: str | Sequence[str] | None = None,
    num_images: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Measure, write ``feature_quality.json`` + ``.png`` into ``out_dir``, and return the summary."""
    datamodule, facts = load_data(cfg)
    nets_found = find_networks(cfg, run_dir, explicit or {}, data_fingerprint(datamodule))
    nets = {role: load_network(path, net_cfg, facts) for role, (path, net_cfg) in nets_found.items()}
    reference = nets["clean_teacher"]
    if taps is None:
        taps = cfg["strategy"].get("taps", "all")
    tap_names = list(resolve_taps(taps, reference))
    for net in nets.values():
        tap_names = [t for t in tap_names if _has_tap(net, t)]
    compared = {"clean_teacher": (reference, "noisy")}
    compared.update({role: (nets[role], "noisy") for role in ("noisy_teacher", "student") if role in nets})
    noise = build_noise(cfg["noise"])
    model = str(cfg["model"]["_target_"]).rsplit(".", 1)[-1]

    def batches():
        for batch in datamodule.test_dataloader():
            x, _, idx = datamodule.on_after_batch_transfer(batch, 0)
            yield x, idx

    comparisons = feature_agreement(
        reference, compared, batches(), noise, int(cfg["eval_seed"]), tap_names, device, num_images
    )
    summary = {
        "reference": "clean teacher (strategy clean) on clean test images",
        "noise": noise.describe(),
        "eval_seed": int(cfg["eval_seed"]),
        "taps": tap_names,
        "images": next(iter(comparisons.values()))["images"],
        "networks": {
            role: {"net": path, "sha256": sha256_file(path)} for role, (path, _) in nets_found.items()
        },
        "student_strategy": cfg["strategy"]["name"] if "student" in nets else None,
        "comparisons": {
            role: {k: v for k, v in comp.items() if k != "images"} for role, comp in comparisons.items()
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "feature_quality.json", summary)
    title = f"{cfg['data'].get('name')} {model} {noise.describe()}: per-tap features vs the clean teacher's on clean images"
    plot_agreement(summary, str(out_dir / "feature_quality.png"), title)
    return summary


def format_table(summary: Mapping[str, Any]) -> str:
    """A plain-text table: one row per comparison, CKA / relative MSE per tap."""
    taps = summary["taps"]
    lines = [
        f"{'network (noisy input)':<24}" + "".join(f"{t:>18}" for t in taps),
        f"{'':<24}" + "".join(f"{'CKA / relMSE':>18}" for _ in taps),
    ]
    for role, comp in summary["comparisons"].items():
        cells = []
        for t in taps:
            cka, rel = comp["cka"].get(t), comp["rel_mse"].get(t)
            cells.append(f"{'-' if cka is None else f'{cka:.3f}'} / {'-' if rel is None else f'{rel:.3f}'}")
        lines.append(f"{role:<24}" + "".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ssd.analyze_features", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "run_dir",
        nargs="?",
        type=Path,
        help="a finished run folder (holds results.json and config.resolved.yaml)",
    )
    parser.add_argument(
        "--config", type=Path, help="run config to use instead of RUN_DIR/config.resolved.yaml"
    )
    parser.add_argument("--clean-teacher", help="net.pt / .ckpt of the clean teacher (the reference)")
    parser.add_argument("--noisy-teacher", help="net.pt / .ckpt of the noisy (vanilla) teacher")
    parser.add_argument("--student", help="net.pt / .ckpt of a student trained with the run's config")
    parser.add_argument(
        "--taps", help="comma-separated tap names (default: the run's strategy.taps, else all)"
    )
    parser.add_argument("--num-images", type=int, default=None, help="use only the first N test images")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when available)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR)")
    args = parser.parse_args(argv)
    if args.run_dir is None and (args.config is None or args.out is None):
        parser.error("give RUN_DIR, or --config and --out")
    if args.num_images is not None and args.num_images < 1:
        parser.error(f"--num-images must be >= 1, got {args.num_images}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    config_path = args.config or args.run_dir / "config.resolved.yaml"
    if not config_path.exists():
        print(f"ssd.analyze_features: no config at {config_path}", file=sys.stderr)
        return 2
    cfg = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    explicit = {
        "clean_teacher": args.clean_teacher,
        "noisy_teacher": args.noisy_teacher,
        "student": args.student,
    }
    try:
        summary = analyze(
            cfg,
            args.out or args.run_dir,
            args.run_dir,
            explicit,
            taps=args.taps.split(",") if args.taps else None,
            num_images=args.num_images,
            device=device,
        )
    except (AnalysisError, ValueError, FileNotFoundError) as err:
        print(f"ssd.analyze_features: {err}", file=sys.stderr)
        return 2
    print(format_table(summary))
    print(f"-> {(args.out or args.run_dir) / 'feature_quality.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
