"""``python -m ssd.parity``: is ssd as strong as a plain hand-written loop on the same recipe?

Two questions, each answered by training the same recipe through ``ssd.plainloop`` (a plain
loop, no framework) and through ``python -m ssd.run``, tested on the same images under the
same fixed evaluation noise, paired by seed:

* the recipe (default): ssd's ``vanilla`` against the plain loop; ``--ablate`` also trains the
  plain loop with each recipe detail where it and ssd differ switched to ssd's choice, one at a
  time and all together: what each detail is worth;
* the distillation gain (``--distill``): STL − vanilla and SSD − vanilla, in ssd and in the plain
  loop with its student step. ``--student-init`` says where students start, in both loops: ``random``
  (ssd's default: own initial weights, order, crops and noise), ``teacher_init`` (the teacher's initial
  weights, its own streams), ``teacher`` (the trained teacher's weights) or ``shared`` (the teacher's seed
  for everything: what a loop that calls ``torch.manual_seed(seed)`` before each model does; ssd's
  ``stage_seeds=shared``).

    python -m ssd.parity                       # 3 seeds, sigma 0.2: ssd vs the plain loop
    python -m ssd.parity --ablate --jobs 2     # + the recipe ablation table
    python -m ssd.parity --ablate candidates   # only the candidates on top of ssd's recipe
    python -m ssd.parity --distill --variant full --limit-train 5085 --student-init random teacher_init
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from ssd.plainloop import Recipe, load_arrays, train_and_test
from ssd.report.stats import Stat, paired_t
from ssd.results import json_digest, read_json, write_json_atomic

#: ssd's choice for every recipe detail where the plain loop's default differs (reflect padding: adopted
#: after ``--ablate candidates`` measured it, docs/results/parity.md)
SSD_RECIPE = {"init": "ssd", "warmup_epochs": 1.0, "last_batch": "pad", "pad_mode": "reflect"}
#: recipe details measured on top of ssd's choices: plain-loop fields (ssd: data.pad_mode=zeros,
#: optim/scheduler=multistep)
RECIPE_CANDIDATES = {
    "pad_mode=constant": {"pad_mode": "constant"},
    "schedule=multistep": {"schedule": "multistep"},
    "pad_mode=constant, schedule=multistep": {"pad_mode": "constant", "schedule": "multistep"},
}
#: where a student starts, in both loops (see the module docstring): ssd's ``strategy.student_init`` values,
#: and ``shared`` (the teacher's seed for everything: ssd's ``stage_seeds=shared``)
STUDENT_STARTS = ("random", "teacher_init", "teacher", "shared")
#: the ssd overrides of each start
SSD_STARTS = {
    "random": ["strategy.student_init=random"],
    "teacher_init": ["strategy.student_init=teacher_init"],
    "teacher": ["strategy.student_init=teacher"],
    "shared": ["strategy.student_init=random", "stage_seeds=shared"],
}
#: the distillation methods: (teacher recipe, teacher_input, ssd strategy overrides)
DISTILL = {
    "STL": ("clean", "clean", ["strategy=student_teacher"]),
    "SSD": ("vanilla", "same", ["strategy=self_distill", "strategy.teacher_input=same"]),
}


def _data(job: dict[str, Any]) -> dict[str, Any]:
    return load_arrays(job["root"], job["variant"], job.get("limit_train"))


def _plain(job: dict[str, Any]) -> dict[str, Any]:
    """One plain-loop run (``job``: recipe fields, seed, data); with ``teacher`` the path of a
    teacher's weights and ``teacher_fields`` its recipe; ``save``: where to keep this run's weights."""
    import torch

    from ssd.plainloop import cifar10_classifier

    torch.set_num_threads(1)
    teacher = None
    if job.get("teacher"):
        teacher = cifar10_classifier(job["arch"])
        teacher.load_state_dict(torch.load(job["teacher"], weights_only=True))
        if job["fields"].get("bf16", True):
            teacher = teacher.to(memory_format=torch.channels_last)
    result = train_and_test(
        Recipe(**job["fields"]), _data(job), job["seed"], teacher=teacher, init_seed=job.get("init_seed")
    )
    net = result.pop("net")
    if job.get("save"):
        tmp = Path(job["save"]).with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, job["save"])
    return {**result, "name": job["name"], "run_seed": job["run_seed"]}


def _ssd(job: dict[str, Any]) -> dict[str, Any]:
    """One ``python -m ssd.run`` run of the cpu_quick recipe, in its own process; ``job["cache"]``: its stage cache."""
    run_dir = Path(job["out"]) / re.sub(r"[^A-Za-z0-9_.-]+", "-", job["name"]).strip("-")  # Hydra's grammar
    cmd = [
        sys.executable,
        "-m",
        "ssd.run",
        "experiment=cpu_quick",
        "data.val_size=0",
        f"noise.sigma={job['sigma']}",
        "noise.eval_levels=[]",
        f"seed={job['run_seed']}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"paths.cache_dir={job['cache']}",
        f"hydra.run.dir={run_dir}",
        *job["extra"],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    results = read_json(run_dir / "results.json") or {}
    if proc.returncode != 0 or results.get("status") != "complete":
        raise RuntimeError(f"ssd run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    stages = {
        role: {
            "test_acc": rec.get("test_acc"),
            "clean_acc": rec.get("clean_acc"),
            "source": rec.get("source"),
        }
        for role, rec in results["stages"].items()
    }
    return {
        "name": job["name"],
        "seed": job["run_seed"],
        "run_seed": job["run_seed"],
        "test_acc": results["test_acc"],
        "clean_acc": results["clean_acc"],
        "wall_seconds": results["wall_time_s"],
        "stages": stages,
    }


def _row(
    name: str, runs: list[dict[str, Any]], baseline: dict[int, float] | None, against: str = "plain loop"
) -> dict[str, Any]:
    """One table row; with ``baseline`` (accuracy by seed of the row ``against``) its paired difference."""
    accs = {r["seed"]: r["test_acc"] for r in runs}
    stat = Stat.of(list(accs.values()))
    row: dict[str, Any] = {"variant": name, "n": stat.n, "mean": stat.mean, "std": stat.std, "ci": stat.ci}
    if baseline is not None:
        diff = paired_t([100 * (accs[s] - baseline[s]) for s in sorted(accs) if s in baseline])
        row["diff_vs_plain_pts"] = dataclasses.asdict(diff) if diff else None
        row["against"] = against
    return row


def markdown(rows: list[dict[str, Any]], setting: str) -> str:
    lines = [
        f"Setting: {setting}",
        "",
        "| variant | noisy test acc % (mean ± std) | 95% CI | n | paired difference, pts (95% CI, paired t) | against |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ci = "—" if r["ci"] is None else f"[{100 * r['ci'][0]:.2f}, {100 * r['ci'][1]:.2f}]"
        std = "" if r["std"] is None else f" ± {100 * r['std']:.2f}"
        d = r.get("diff_vs_plain_pts")
        diff = "—" if not d else f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
        against = r.get("against", "—")
        lines.append(
            f"| {r['variant']} | {100 * r['mean']:.2f}{std} | {ci} | {r['n']} | {diff} | {against} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the distillation gain
def plain_seed(run_seed: int, what: str) -> int:
    """A plain-loop stage's own seed: distinct for every (run seed, what is trained), as in ssd."""
    return 1000 * run_seed + {"vanilla": 1, "clean": 2, "STL": 3, "SSD": 4}[what]


def distill_jobs(args: argparse.Namespace, out: Path, base: dict[str, Any]) -> tuple[list, dict]:
    """(jobs that need nothing, {teacher job name: jobs that need its weights}) of ``--distill``."""
    data = {
        "root": args.data_root,
        "variant": args.variant,
        "limit_train": args.limit_train,
        "arch": "resnet20",
    }
    ready: list[tuple[Callable, dict]] = []
    after: dict[str, list[tuple[Callable, dict]]] = {}
    (out / "plain").mkdir(parents=True, exist_ok=True)
    for s in args.seeds:
        for kind in ("vanilla", "clean"):
            name = f"plain {kind} s{s}"
            weights = out / "plain" / f"{kind}-seed{s}.pt"
            fields = {**base, "train_on": kind}
            ready.append(
                (
                    _plain,
                    {
                        **data,
                        "name": name,
                        "fields": fields,
                        "seed": plain_seed(s, kind),
                        "run_seed": s,
                        "save": str(weights),
                    },
                )
            )
            for method, (teacher_kind, teacher_input, _) in DISTILL.items():
                if teacher_kind != kind:
                    continue
                for mode in args.student_init:
                    if mode == "shared" and method == "SSD":
                        continue  # the student would replay its teacher exactly: it *is* the vanilla run
                    own = plain_seed(s, method)
                    seed = plain_seed(s, kind) if mode == "shared" else own
                    init = plain_seed(s, kind) if mode == "teacher_init" else None
                    student = {
                        **base,
                        "train_on": "distill",
                        "lam": args.lam,
                        "teacher_input": teacher_input,
                        "from_teacher": mode == "teacher",
                    }
                    after.setdefault(name, []).append(
                        (
                            _plain,
                            {
                                **data,
                                "name": f"plain {method} ({mode}) s{s}",
                                "fields": student,
                                "seed": seed,
                                "init_seed": init,
                                "run_seed": s,
                                "teacher": str(weights),
                            },
                        )
                    )
        for method, (_, _, overrides) in DISTILL.items():
            for mode in args.student_init:
                if mode == "shared" and method == "SSD":
                    continue  # as in the plain loop
                ready.append(
                    (
                        _ssd,
                        {
                            "name": f"ssd {method} ({mode}) s{s}",
                            "out": str(out / "ssd"),
                            "sigma": args.sigma,
                            "run_seed": s,
                            # stage_seeds=shared trains other teachers: a cache of their own
                            "cache": str(
                                out / "ssd" / "cache" / f"seed{s}{'-shared' if mode == 'shared' else ''}"
                            ),
                            "extra": [
                                *overrides,
                                *SSD_STARTS[mode],
                                f"strategy.lambda={args.lam}",
                                *args.ssd_extra,
                                *_ssd_data(args),
                            ],
                        },
                    )
                )
    return ready, after


def _ssd_data(args: argparse.Namespace) -> list[str]:
    extra = [f"trainer.max_epochs={args.epochs}", f"data.variant={args.variant}"]
    if args.limit_train is not None:
        extra.append(f"data.limit_train={args.limit_train}")
    return extra


def run_jobs(ready: list, after: dict, jobs: int, done_dir: Path) -> dict[str, dict[str, Any]]:
    """Run every job (a job's dependants start when it ends); each result is kept in ``done_dir``,
    so a rerun of the same command skips what already finished."""
    done_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}

    def path(job: dict) -> Path:
        """The job's result file: its name and a digest of what it trains (a changed recipe is a new job)."""
        what = json_digest(
            {k: job.get(k) for k in ("fields", "extra", "seed", "init_seed", "sigma")}, length=8
        )
        return done_dir / (job["name"].replace(" ", "_").replace("(", "").replace(")", "") + f"-{what}.json")

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        running: dict[Future, dict] = {}

        def submit(fn: Callable, job: dict) -> None:
            known = read_json(path(job))
            if known is not None and (not job.get("save") or Path(job["save"]).exists()):
                results[job["name"]] = known
                for dep in after.get(job["name"], []):
                    submit(*dep)
                return
            running[pool.submit(fn, job)] = job

        for item in ready:
            submit(*item)
        while running:
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                name = job["name"]
                results[name] = fut.result()
                write_json_atomic(path(job), results[name])
                print(f"done: {name}: {100 * results[name]['test_acc']:.2f}%", flush=True)
                for dep in after.get(name, []):
                    submit(*dep)
    return results


def gain_rows(results: dict[str, dict[str, Any]], seeds: Sequence[int], modes: Sequence[str]) -> list[dict]:
    """Per (loop, model) row: accuracies and the paired gain over the same loop's vanilla, by seed.

    ssd's vanilla and clean numbers are the teacher stages of its random-start students (the same
    stages a ``vanilla`` or ``clean`` run trains); under ``stage_seeds=shared`` its teachers are others."""
    acc: dict[str, dict[int, float]] = {}
    for s in seeds:
        for kind in ("vanilla", "clean"):
            acc.setdefault(f"plain {kind}", {})[s] = results[f"plain {kind} s{s}"]["test_acc"]
        for method in DISTILL:
            teacher = "clean" if method == "STL" else "vanilla"
            for mode in modes:
                for loop in ("plain", "ssd"):
                    run = results.get(f"{loop} {method} ({mode}) s{s}")
                    if run is None:
                        continue
                    acc.setdefault(f"{loop} {method} ({mode})", {})[s] = run["test_acc"]
                    if loop == "ssd" and mode != "shared":
                        acc.setdefault(f"ssd {teacher}", {})[s] = run["stages"]["teacher"]["test_acc"]
    order = ["plain vanilla", "ssd vanilla", "plain clean", "ssd clean"]
    order += [f"{loop} {m} ({mode})" for m in DISTILL for mode in modes for loop in ("plain", "ssd")]
    rows = []
    for name in (n for n in order if n in acc):
        by_seed = acc[name]
        loop = name.split()[0]
        stat = Stat.of([by_seed[s] for s in seeds if s in by_seed])
        row = {"row": name, "n": stat.n, "mean": stat.mean, "std": stat.std, "gain": None}
        if "STL" in name or "SSD" in name:
            base = acc[f"{loop} vanilla"]
            diff = paired_t([100 * (by_seed[s] - base[s]) for s in seeds if s in by_seed and s in base])
            row["gain"] = dataclasses.asdict(diff) if diff else None
        rows.append(row)
    return rows


def gain_markdown(rows: list[dict], setting: str) -> str:
    lines = [
        f"Setting: {setting}",
        "",
        "| loop, model | noisy test acc % (mean ± std) | n | − same loop's vanilla, pts (paired t, 95% CI) |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        std = "" if r["std"] is None else f" ± {100 * r['std']:.2f}"
        g = r["gain"]
        gain = "—" if not g else f"{g['mean']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}]"
        lines.append(f"| {r['row']} | {100 * r['mean']:.2f}{std} | {r['n']} | {gain} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssd.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sigma", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--ablate",
        nargs="?",
        const="all",
        choices=("all", "candidates"),
        help="also train the plain loop with each of ssd's choices alone (all) and the candidate recipe details "
        "on top of ssd's recipe (all, candidates)",
    )
    parser.add_argument(
        "--distill", action="store_true", help="the distillation gain, in ssd and the plain loop"
    )
    parser.add_argument(
        "--student-init",
        nargs="+",
        choices=STUDENT_STARTS,
        default=["random"],
        help="--distill: where students start, in both loops (ssd: strategy.student_init; shared: stage_seeds=shared)",
    )
    parser.add_argument("--lam", type=float, default=0.1, help="--distill: lambda of the feature loss")
    parser.add_argument(
        "--ssd-extra", nargs="*", default=[], help="--distill: more overrides of the ssd runs"
    )
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--data-root", default=os.environ.get("SSD_DATA_DIR", "../shared/data"))
    parser.add_argument("--variant", default="subset")
    parser.add_argument("--limit-train", type=int, default=None, help="the first N training images")
    parser.add_argument("--out", type=Path, default=None, help="folder for runs and parity.{json,md}")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="ssd-parity-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ["SSD_DATA_DIR"] = str(Path(args.data_root).resolve())  # the ssd runs read the same data
    data = f"CIFAR-10 {args.variant}" + (
        f", first {args.limit_train} train images" if args.limit_train else ""
    )
    base = {"sigma": args.sigma, "epochs": args.epochs}
    if args.distill:
        ready, after = distill_jobs(args, out, {**base, **SSD_RECIPE})
        results = run_jobs(ready, after, args.jobs, out / "done")
        rows = gain_rows(results, args.seeds, args.student_init)
        setting = (
            f"cpu_quick recipe in both loops (plain loop with ssd's choices {SSD_RECIPE}), ResNet-20, {data}, "
            f"val_size=0, sigma={args.sigma:g}, {args.epochs} epochs, lambda={args.lam:g}, all taps, MSE, "
            f"seeds {args.seeds}, students start: {', '.join(args.student_init)}; one thread per run"
        )
        write_json_atomic(out / "distill_parity.json", {"setting": setting, "rows": rows, "runs": results})
        text = gain_markdown(rows, setting)
        (out / "distill_parity.md").write_text(text)
        print(text)
        print(f"written: {out / 'distill_parity.json'}, {out / 'distill_parity.md'}")
        return 0
    # name -> (recipe fields, the row its paired difference is taken against)
    variants: dict[str, tuple[dict[str, Any], str | None]] = {"plain loop": (base, None)}
    if args.ablate:
        for key, value in SSD_RECIPE.items() if args.ablate == "all" else ():
            variants[f"plain loop, {key}={value}"] = ({**base, key: value}, "plain loop")
        ssd_choices = "plain loop, all of ssd's choices"
        variants[ssd_choices] = ({**base, **SSD_RECIPE}, "plain loop")
        for name, fields in RECIPE_CANDIDATES.items():
            variants[f"{ssd_choices} + {name}"] = ({**base, **SSD_RECIPE, **fields}, ssd_choices)
    data_job = {"root": args.data_root, "variant": args.variant, "limit_train": args.limit_train}
    ready = [
        (
            _ssd,
            {
                "name": f"ssd vanilla s{s}",
                "out": str(out),
                "sigma": args.sigma,
                "run_seed": s,
                "cache": str(out / "cache" / f"seed{s}"),
                "extra": ["strategy=vanilla", *_ssd_data(args), *args.ssd_extra],
            },
        )
        for s in args.seeds
    ]
    ready += [
        (
            _plain,
            {
                **data_job,
                "arch": "resnet20",
                "name": f"{name} s{s}",
                "fields": fields,
                "seed": s,
                "run_seed": s,
            },
        )
        for name, (fields, _) in variants.items()
        for s in args.seeds
    ]
    results = run_jobs(ready, {}, args.jobs, out / "done")
    ssd_runs = [{**results[f"ssd vanilla s{s}"], "seed": s} for s in args.seeds]
    plain_runs = {name: [results[f"{name} s{s}"] for s in args.seeds] for name in variants}

    def by_seed(name: str) -> dict[int, float]:
        return {r["seed"]: r["test_acc"] for r in plain_runs[name]}

    rows = [_row("ssd (python -m ssd.run, strategy=vanilla)", ssd_runs, by_seed("plain loop"))]
    rows += [
        _row(name, plain_runs[name], None if ref is None else by_seed(ref), ref)
        for name, (_, ref) in variants.items()
    ]
    best = max(variants, key=lambda name: Stat.of(list(by_seed(name).values())).mean)
    if best != "plain loop":
        rows.append(_row(f"ssd − the best plain recipe ({best})", ssd_runs, by_seed(best), best))
    ssd_settings = " ".join(args.ssd_extra) or "its defaults"
    setting = (
        f"cpu_quick recipe, ResNet-20, {data} ({args.data_root}), sigma={args.sigma:g}, "
        f"{args.epochs} epochs, val_size=0, seeds {args.seeds}, one thread per run; ssd with {ssd_settings}"
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
