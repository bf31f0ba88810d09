"""The report: per-row statistics, ratios to the raw loop and to vanilla, the targets, the printed table."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from ssd.bench.settings import TARGET_DATA_NOISE_SHARE, TARGET_STUDENT_STEP, TARGET_VANILLA_VS_RAW
from ssd.bench.timing import RowResult, paired_ratio


def summarise(results: dict[str, RowResult], batch_size: int, cpu_clock: bool) -> list[dict[str, Any]]:
    """Per row: median images/s with its spread, step time, ratios to raw and vanilla, data + noise share."""
    raw, vanilla = results.get("raw"), results.get("vanilla")
    rows = []
    for res in results.values():
        row: dict[str, Any] = {
            "name": res.name,
            "kind": res.kind,
            "frozen": res.frozen,
            "variant": res.variant,
            "error": res.error,
        }
        if res.windows:
            ips = [w.images_per_s for w in res.windows]
            median = statistics.median(ips)
            step_s = batch_size / median
            data_noise = statistics.median(res.data_noise_s) if res.data_noise_s else None
            row.update(
                images_per_s=median,
                images_per_s_min=min(ips),
                images_per_s_max=max(ips),
                spread=(max(ips) - min(ips)) / median,
                repeats=len(ips),
                steps=[w.steps for w in res.windows],
                step_ms=1000 * step_s,
                vs_raw=paired_ratio(res, raw) if raw and raw.windows else None,
                vs_vanilla=paired_ratio(res, vanilla) if vanilla and vanilla.windows else None,
                # best windows: on a shared machine load only ever slows a window down
                best_vs_raw=max(ips) / max(w.images_per_s for w in raw.windows)
                if raw and raw.windows
                else None,
                best_vs_vanilla=max(ips) / max(w.images_per_s for w in vanilla.windows)
                if vanilla and vanilla.windows
                else None,
                # the same ratios in this process's CPU time (training on a CPU): robust to other jobs' load
                cpu_vs_raw=paired_ratio(res, raw, "images_per_cpu_s")
                if cpu_clock and raw and raw.windows
                else None,
                cpu_vs_vanilla=paired_ratio(res, vanilla, "images_per_cpu_s")
                if cpu_clock and vanilla and vanilla.windows
                else None,
                data_noise_ms=None if data_noise is None else 1000 * data_noise,
                data_noise_share=None if data_noise is None else data_noise / step_s,
                per_round_images_per_s=dict(zip(res.rounds, ips, strict=True)),
            )
        rows.append(row)
    return rows


def check_targets(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The three speed ratios and whether each meets its target (None: row not measured).

    The student-step target applies to the strategies' own rows, not to named variants (e.g. a
    reference path kept to measure what a switch saves).
    """
    by_name = {r["name"]: r for r in rows if r.get("images_per_s")}
    vanilla = by_name.get("vanilla", {})
    vs_raw = vanilla.get("vs_raw")
    share = vanilla.get("data_noise_share")
    students = [
        r for r in by_name.values() if "teacher" in r["frozen"] and r.get("vs_vanilla") and not r["variant"]
    ]

    def cpu_inverse(r: Mapping[str, Any]) -> float | None:
        return 1 / r["cpu_vs_vanilla"] if r.get("cpu_vs_vanilla") else None

    return {
        "vanilla_vs_raw": {
            "value": vs_raw,
            "target": f">= {TARGET_VANILLA_VS_RAW}",
            "met": None if vs_raw is None else vs_raw >= TARGET_VANILLA_VS_RAW,
            "cpu_time_value": vanilla.get("cpu_vs_raw"),
        },
        "student_step_vs_vanilla": {
            r["name"]: {
                "value": 1 / r["vs_vanilla"],
                "target": f"<= {TARGET_STUDENT_STEP}",
                "met": 1 / r["vs_vanilla"] <= TARGET_STUDENT_STEP,
                "cpu_time_value": cpu_inverse(r),
            }
            for r in students
        },
        "data_noise_share": {
            "value": share,
            "target": f"<= {TARGET_DATA_NOISE_SHARE}",
            "met": None if share is None else share <= TARGET_DATA_NOISE_SHARE,
        },
    }


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_table(report: Mapping[str, Any]) -> str:
    """The printed table: one line per row, then the targets."""
    s, m = report["settings"], report["machine"]
    lines = [
        f"ssd.bench  {s['model']}  batch {s['batch_size']}  {report['resolved']['precision']}"
        f"{'  channels_last' if report['resolved']['channels_last'] else ''}{'  compiled' if s['compile'] else ''}"
        f"  {m['device']}  torch {m['torch']}  lightning {m['lightning']}  {m['date']}",
        f"{'row':<24} {'frozen stages':<36} {'img/s':>8} {'[min - max]':>17} {'step ms':>8} {'x raw':>6} {'x vanilla':>9} {'data+noise':>10}",
    ]
    for r in report["rows"]:
        frozen = ", ".join(f"{k}={v}" for k, v in r["frozen"].items()) or "-"
        label = "raw PyTorch loop" if r["kind"] == "raw" else r["name"] + ("*" if r["variant"] else "")
        if not r.get("images_per_s"):
            lines.append(f"{label:<24} {frozen:<36} not measured: {r.get('error') or 'skipped'}")
            continue
        lines.append(
            f"{label:<24} {frozen:<36} {r['images_per_s']:8.1f} {'[' + format(r['images_per_s_min'], '.1f') + ' - ' + format(r['images_per_s_max'], '.1f') + ']':>17}"
            f" {r['step_ms']:8.1f} {_fmt(r['vs_raw'], '6.2f')} {_fmt(r['vs_vanilla'], '9.2f')} {_fmt(None if r['data_noise_share'] is None else 100 * r['data_noise_share'], '9.1f', '%')}"
        )
    t = report["targets"]

    def verdict(met: bool | None) -> str:
        return "n/a" if met is None else "met" if met else "NOT met"

    def cpu(v: Mapping[str, Any]) -> str:
        return "" if v.get("cpu_time_value") is None else f" [CPU time: {v['cpu_time_value']:.3f}]"

    lines.append(
        f"targets: vanilla/raw images/s {_fmt(t['vanilla_vs_raw']['value'], '.3f')}{cpu(t['vanilla_vs_raw'])}"
        f" (>= {TARGET_VANILLA_VS_RAW}: {verdict(t['vanilla_vs_raw']['met'])})"
        f"; data+noise share of vanilla's step {_fmt(None if t['data_noise_share']['value'] is None else 100 * t['data_noise_share']['value'], '.1f', '%')}"
        f" (<= {100 * TARGET_DATA_NOISE_SHARE:.0f}%: {verdict(t['data_noise_share']['met'])})"
    )
    for name, v in t["student_step_vs_vanilla"].items():
        lines.append(
            f"         {name} student step / vanilla step {v['value']:.3f}{cpu(v)} (<= {TARGET_STUDENT_STEP}: {verdict(v['met'])})"
        )
    for r in report["rows"]:
        if r["variant"]:
            lines.append(f"*{r['name']}: {' '.join(r['variant'])}")
    load = m.get("load_before_after")
    lines.append(
        f"ratios: medians of per-round ratios, rows interleaved, {max((r.get('repeats') or 0) for r in report['rows'])} rounds at most;"
        f" measuring took {report['wall_s']:.0f} s"
        + (f"; load average {load[0]:.1f} -> {load[1]:.1f}" if load else "")
    )
    return "\n".join(lines)
