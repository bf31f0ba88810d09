"""``python -m ssd.parity``: is ssd's vanilla as strong as a plain hand-written loop on the same recipe?

Trains the ``cpu_quick`` recipe (ResNet-20, CIFAR-10 subset, 15 epochs, batch 128, SGD 0.1
Nesterov, cosine, bf16) over several seeds twice: through ``ssd.plainloop`` (about 60 lines,
no framework) and through ``python -m ssd.run experiment=cpu_quick strategy=vanilla``. Both are
tested on the same images under the same fixed evaluation noise, so the difference per seed
is paired. ``--ablate`` also trains the plain loop with each recipe detail where it and ssd
differ switched to ssd's choice, one at a time, and all together: what each detail is worth.

    python -m ssd.parity                       # 3 seeds, sigma 0.2: ssd vs the plain loop
    python -m ssd.parity --ablate --jobs 2     # + the recipe ablation table
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ssd.plainloop import Recipe, load_arrays, train_and_test
from ssd.report.stats import Stat, paired_t
from ssd.results import read_json, write_json_atomic

#: ssd's choice for every recipe detail where the plain loop's default differs
SSD_RECIPE = {"init": "ssd", "warmup_epochs": 1.0, "last_batch": "pad"}


def _plain(job: tuple[dict[str, Any], int, str | None, str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    fields, seed, root, variant = job
    return train_and_test(Recipe(**fields), load_arrays(root, variant), seed)


def _ssd(job: tuple[float, int, str, Sequence[str]]) -> dict[str, Any]:
    """One ``python -m ssd.run`` vanilla run of the cpu_quick recipe, in its own process and cache."""
    sigma, seed, out, extra = job
    run_dir = Path(out) / f"ssd-sigma{sigma:g}-seed{seed}"
    cmd = [
        sys.executable,
        "-m",
        "ssd.run",
        "experiment=cpu_quick",
        "strategy=vanilla",
        "data.val_size=0",
        f"noise.sigma={sigma}",
        "noise.eval_levels=[]",
        f"seed={seed}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"paths.cache_dir={Path(out) / 'cache' / f'seed{seed}'}",  # its own: the run must train
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    results = read_json(run_dir / "results.json") or {}
    if proc.returncode != 0 or results.get("status") != "complete":
        raise RuntimeError(f"ssd run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {"seed": seed, "test_acc": results["test_acc"], "wall_seconds": results["wall_time_s"]}


def _row(name: str, runs: list[dict[str, Any]], baseline: dict[int, float] | None) -> dict[str, Any]:
    accs = {r["seed"]: r["test_acc"] for r in runs}
    stat = Stat.of(list(accs.values()))
    row: dict[str, Any] = {"variant": name, "n": stat.n, "mean": stat.mean, "std": stat.std, "ci": stat.ci}
    if baseline is not None:
        diff = paired_t([100 * (accs[s] - baseline[s]) for s in sorted(accs) if s in baseline])
        row["diff_vs_plain_pts"] = dataclasses.asdict(diff) if diff else None
    return row


def markdown(rows: list[dict[str, Any]], setting: str) -> str:
    lines = [
        f"Setting: {setting}",
        "",
        "| variant | noisy test acc % (mean ± std) | 95% CI | n | − plain loop, pts (paired t, 95% CI) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ci = "—" if r["ci"] is None else f"[{100 * r['ci'][0]:.2f}, {100 * r['ci'][1]:.2f}]"
        std = "" if r["std"] is None else f" ± {100 * r['std']:.2f}"
        d = r.get("diff_vs_plain_pts")
        diff = "—" if not d else f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
        lines.append(f"| {r['variant']} | {100 * r['mean']:.2f}{std} | {ci} | {r['n']} | {diff} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssd.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sigma", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--ablate", action="store_true", help="also measure each recipe difference alone")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--data-root", default=os.environ.get("SSD_DATA_DIR", "../shared/data"))
    parser.add_argument("--variant", default="subset")
    parser.add_argument("--out", type=Path, default=None, help="folder for runs and parity.{json,md}")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="ssd-parity-"))
    out.mkdir(parents=True, exist_ok=True)
    base = {"sigma": args.sigma, "epochs": args.epochs}
    variants: dict[str, dict[str, Any]] = {"plain loop": base}
    if args.ablate:
        for key, value in SSD_RECIPE.items():
            variants[f"plain loop, {key}={value}"] = {**base, key: value}
        variants["plain loop, all of ssd's choices"] = {**base, **SSD_RECIPE}
    extra = [f"trainer.max_epochs={args.epochs}", f"data.variant={args.variant}"]
    os.environ["SSD_DATA_DIR"] = str(Path(args.data_root).resolve())  # the ssd runs read the same data
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        ssd_futures = [pool.submit(_ssd, (args.sigma, s, str(out), extra)) for s in args.seeds]
        plain_futures = {
            name: [pool.submit(_plain, (fields, s, args.data_root, args.variant)) for s in args.seeds]
            for name, fields in variants.items()
        }
        ssd_runs = [f.result() for f in ssd_futures]
        plain_runs = {name: [f.result() for f in fs] for name, fs in plain_futures.items()}
    baseline = {r["seed"]: r["test_acc"] for r in plain_runs["plain loop"]}
    rows = [_row("ssd (python -m ssd.run, strategy=vanilla)", ssd_runs, baseline)]
    rows += [
        _row(name, runs, None if name == "plain loop" else baseline) for name, runs in plain_runs.items()
    ]
    setting = (
        f"cpu_quick recipe, ResNet-20, CIFAR-10 {args.variant} ({args.data_root}), sigma={args.sigma:g}, "
        f"{args.epochs} epochs, val_size=0, seeds {args.seeds}, one thread per run"
    )
    write_json_atomic(
        out / "parity.json", {"setting": setting, "rows": rows, "ssd": ssd_runs, "plain": plain_runs}
    )
    text = markdown(rows, setting)
    (out / "parity.md").write_text(text)
    print(text)
    print(f"written: {out / 'parity.json'}, {out / 'parity.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
