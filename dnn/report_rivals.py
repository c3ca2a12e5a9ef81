"""The rivals table and figure: BN-only mitigation against drift compensation, LoRA and VeRA.

Reads evaluation results (``dnn.results.EvaluationResult``) and writes, per non-ideality (scenario x
circuit) and method variant (method, rank, calibration images), accuracy mean +- std over seeds, the
accuracy *recovered* (the share of the gap between no mitigation and software that the method closes,
per seed, then mean +- std), trained parameters, bytes stored per chip, calibration images and wall time;
and a figure of accuracy recovered against trained parameters, one panel per non-ideality and
calibration size. Torch-free.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .report import MIN_SEEDS, Interval, ReportSettings, paired_points, seed_interval
from .results import EvaluationResult

METHOD_ORDER = ("none", "drift_compensation", "bn_adapt", "bn_finetune", "adapt_finetune", "lora", "vera", "retrain")
MARKERS = {"none": "o", "drift_compensation": "v", "bn_adapt": "o", "bn_finetune": "s", "adapt_finetune": "s",
           "lora": "^", "vera": "D", "retrain": "*"}
COLOURS = {"none": "0.5", "drift_compensation": "tab:purple", "bn_adapt": "tab:blue", "bn_finetune": "tab:orange",
           "adapt_finetune": "tab:brown", "lora": "tab:green", "vera": "tab:red", "retrain": "k"}


def _stats(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else (math.nan, 0.0)


def recovered(acc: float, none: float, software: float) -> float:
    """The share of the gap between no mitigation and software closed: (acc - none) / (software - none);
    NaN when there is no gap (no mitigation already at software)."""
    gap = software - none
    return (acc - none) / gap if gap > 0 else math.nan


def load_rows(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per result file x method entry (see the module docstring); accuracies in [0, 1]."""
    rows = []
    for path in paths:
        r = EvaluationResult.read(path)
        none = r.methods.get("none")
        for label, m in r.methods.items():
            per_seed = list(m.accuracy_per_seed)
            rec = [recovered(a, n, r.software_accuracy) for a, n in zip(per_seed, none.accuracy_per_seed, strict=True)] \
                if none is not None and len(none.accuracy_per_seed) == len(per_seed) else []
            acc_mean, acc_std = _stats(per_seed)
            rec_mean, rec_std = _stats([v for v in rec if not math.isnan(v)])
            kept = [s.get("kept_epoch") for s in m.safeguard]
            rows.append({
                "scenario": r.scenario, "circuit": r.circuit, "model": r.model, "label": label,
                "method": m.method or label, "rank": m.rank, "param_budget_x_bn": list(m.param_budget_x_bn),
                "calibration_images": m.calibration_images, "seeds": len(per_seed),
                "software": r.software_accuracy, "accuracy_mean": acc_mean, "accuracy_std": acc_std,
                "accuracy_per_seed": per_seed,
                "recovered_mean": rec_mean, "recovered_std": rec_std, "trainable_params": m.trainable_params,
                "bytes_per_chip": m.bytes_per_chip, "wall_s": m.wall_s, "safeguard_kept_epochs": kept,
            })
    rows.sort(key=lambda x: (x["scenario"], x["circuit"], x["calibration_images"] or 0,
                             METHOD_ORDER.index(x["method"]) if x["method"] in METHOD_ORDER else 99, x["rank"] or 0))
    return rows


def _pct(mean: float, std: float) -> str:
    return "" if math.isnan(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The cost table: one line per non-ideality x method variant."""
    lines = ["| non-ideality | circuit | method | rank | calibration images | accuracy (%) | recovered (%) | "
             "trained params | bytes per chip | wall (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['circuit']} | {r['method']} | {r['rank'] if r['rank'] is not None else ''} | "
                     f"{r['calibration_images'] if r['calibration_images'] is not None else ''} | "
                     f"{_pct(r['accuracy_mean'], r['accuracy_std'])} | {_pct(r['recovered_mean'], r['recovered_std'])} | "
                     f"{r['trainable_params']} | {r['bytes_per_chip'] if r['bytes_per_chip'] is not None else ''} | "
                     f"{r['wall_s']:.1f} |")
    software = {(r["scenario"], r["circuit"]): r["software"] for r in rows}
    if software:
        lines += ["", "Software accuracy: " + ", ".join(f"{s} / {c} {100 * a:.1f}%" for (s, c), a in sorted(software.items()))]
    lines += statement_lines(statements(rows))
    return "\n".join(lines)


def _variant(r: dict[str, Any]) -> tuple[int, int, str]:
    """Sort key and column name of a method variant (method, rank)."""
    order = METHOD_ORDER.index(r["method"]) if r["method"] in METHOD_ORDER else 99
    return order, r["rank"] or 0, _name(r)


def accuracy_table(rows: list[dict[str, Any]]) -> str:
    """Accuracy (%) mean ± std over seeds: a line per non-ideality (scenario / circuit / model) and
    calibration size, a column per method variant ('none' and software in the header note)."""
    variants = sorted({_variant(r) for r in rows if r["method"] != "none"})
    names = [v[2] for v in variants]
    cells: dict[tuple, dict[str, str]] = {}
    for r in rows:
        if r["method"] != "none" and r["calibration_images"]:
            key = (r["scenario"], r["circuit"], r["model"], r["calibration_images"])
            cells.setdefault(key, {})[_name(r)] = _pct(r["accuracy_mean"], r["accuracy_std"])
    lines = ["| non-ideality | circuit | model | images | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for (scenario, circuit, model, images), c in sorted(cells.items()):
        lines.append(f"| {scenario} | {circuit} | {model} | {images} | " + " | ".join(c.get(n, "") for n in names) + " |")
    base = {(r["scenario"], r["circuit"], r["model"]): (r["software"], r["accuracy_mean"], r["accuracy_std"])
            for r in rows if r["method"] == "none"}
    lines += ["", "Software and no mitigation (none): " + "; ".join(
        f"{s} / {c} / {m} {100 * sw:.1f}%, none {_pct(a, sd)}%" for (s, c, m), (sw, a, sd) in sorted(base.items()))]
    return "\n".join(lines)


def cost_table(rows: list[dict[str, Any]]) -> str:
    """Cost per method variant: trained parameters, x the BN gamma/beta count, bytes stored per chip and
    the mean wall time (s) at each calibration size over the non-idealities."""
    bn_count = max((r["trainable_params"] for r in rows if r["method"] in BN_ONLY), default=0)
    sizes = sorted({r["calibration_images"] for r in rows if r["method"] != "none" and r["calibration_images"]})
    lines = ["| method | rank | trained parameters | x BN gamma/beta | bytes per chip | wall (s) at "
             + " / ".join(map(str, sizes)) + " images |", "|---|---|---|---|---|---|"]
    for _, _, name in sorted({_variant(r) for r in rows if r["method"] != "none"}):
        sel = [r for r in rows if _name(r) == name and r["method"] != "none"]
        first = sel[0]
        walls = [statistics.fmean([r["wall_s"] for r in sel if r["calibration_images"] == n] or [math.nan])
                 for n in sizes]
        ratio = f"{first['trainable_params'] / bn_count:.2f}" if bn_count else ""
        per_chip = "" if first["bytes_per_chip"] is None else f"{first['bytes_per_chip']:,}"
        lines.append(f"| {first['method']} | {first['rank'] if first['rank'] is not None else ''} | "
                     f"{first['trainable_params']:,} | {ratio} | {per_chip} | "
                     + " / ".join(f"{w:.1f}" for w in walls) + " |")
    return "\n".join(lines)


BN_ONLY = ("bn_adapt", "bn_finetune", "adapt_finetune")
RIVALS = ("drift_compensation", "lora", "vera")
EQUAL_BUDGET_X = 1.1
"""A rival trained with at most this many times the BN gamma/beta count competes at 'equal budget'."""


def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row of highest mean accuracy (selection by the mean; its interval is then taken seed by seed)."""
    finite = [r for r in rows if math.isfinite(r["accuracy_mean"])]
    return max(finite, key=lambda r: r["accuracy_mean"]) if finite else None


def _name(r: dict[str, Any]) -> str:
    return r["method"] + (f" r{r['rank']}" if r["rank"] is not None else "")


def _decide(interval: Interval | None, threshold: float, n_seeds: int) -> str:
    """'above' / 'below' when the whole interval lies on one side of ``threshold``, else 'inconclusive'
    (the threshold inside it, fewer than MIN_SEEDS seeds, or seeds that do not pair)."""
    if interval is None or n_seeds < MIN_SEEDS:
        return "inconclusive"
    return {1: "above", -1: "below", 0: "inconclusive"}[interval.side(threshold)]


def statements(rows: list[dict[str, Any]], settings: ReportSettings | None = None) -> list[dict[str, Any]]:
    """Per non-ideality (scenario x circuit) and calibration size, three statements, each decided by the
    Student-t interval over seeds (``dnn.report.seed_interval``) of its quantity, in accuracy points:

    - ``bn_suffices``: the best BN-only method (by mean) is within ``settings.close_drop_points`` of
      software (interval of software - accuracy, seed by seed);
    - ``rival_equal_budget``: the best rival trained with at most ``EQUAL_BUDGET_X`` x BN's gamma/beta count
      (drift compensation's 0 included) against the best BN-only method, paired seed by seed;
    - ``rival_any_budget``: the best rival at any budget against the best BN-only method.

    Each verdict is 'yes' / 'NO' for the first, 'beats' / 'behind' for the others, or 'inconclusive' where
    the threshold (``close_drop_points``; 0 for a difference) lies inside the interval or fewer than two
    seeds pair."""
    s = settings or ReportSettings()
    out: list[dict[str, Any]] = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r["method"] != "none" and r["calibration_images"]:
            groups.setdefault((r["scenario"], r["circuit"], r["model"], r["calibration_images"]), []).append(r)
    for (scenario, circuit, model, images), g in sorted(groups.items()):
        bn = _best([r for r in g if r["method"] in BN_ONLY])
        if bn is None:
            continue
        bn_count = max((r["trainable_params"] for r in g if r["method"] in BN_ONLY), default=0)
        where = {"scenario": scenario, "circuit": circuit, "model": model, "calibration_images": images,
                 "software_points": 100 * bn["software"]}
        gap = seed_interval([100 * (bn["software"] - a) for a in bn["accuracy_per_seed"]], s)
        verdict = {"below": "yes", "above": "NO"}.get(_decide(gap, s.close_drop_points, gap.n_seeds), "inconclusive")
        out.append({**where, "kind": "bn_suffices", "verdict": verdict, "method": _name(bn), "reference": "software",
                    "difference_points": gap.to_dict(),
                    "text": f"BN-only suffices ({_name(bn)} within {s.close_drop_points:g} point(s) of software): "
                            f"{verdict}; below software by {gap.text()} points"})
        for kind, pool in (("rival_equal_budget", [r for r in g if r["method"] in RIVALS
                                                   and r["trainable_params"] <= EQUAL_BUDGET_X * bn_count]),
                           ("rival_any_budget", [r for r in g if r["method"] in RIVALS])):
            rival = _best(pool)
            if rival is None:
                continue
            diff = paired_points(rival["accuracy_per_seed"], bn["accuracy_per_seed"])
            interval = seed_interval(diff, s) if diff else None
            verdict = {"above": "beats", "below": "behind"}.get(_decide(interval, 0.0, len(diff or [])), "inconclusive")
            budget = (f"{rival['trainable_params'] / bn_count:.2g}x" if bn_count else f"{rival['trainable_params']}")
            what = "at equal budget" if kind == "rival_equal_budget" else "at any budget"
            text = (f"best rival {what}, {_name(rival)} ({rival['trainable_params']} trained parameters, {budget} BN's "
                    f"{bn_count}), against {_name(bn)}: {verdict}; ")
            text += (f"difference {interval.text()} points" if interval is not None
                     else "seed counts differ: no paired difference")
            out.append({**where, "kind": kind, "verdict": verdict, "method": _name(rival), "reference": _name(bn),
                        "trainable_params": rival["trainable_params"], "bn_params": bn_count,
                        "difference_points": interval.to_dict() if interval is not None else None, "text": text})
    return out


def statement_lines(items: list[dict[str, Any]], settings: ReportSettings | None = None,
                    title: str = "Statements") -> list[str]:
    """Markdown lines of the statements, one per non-ideality x calibration size x kind."""
    s = settings or ReportSettings()
    seeds = sorted({i["difference_points"]["n_seeds"] for i in items if i["difference_points"]})
    head = (f"{title} ({100 * s.confidence:g}% t-interval over {'/'.join(map(str, seeds)) or 'no'} seed(s), "
            f"half-width >= {s.min_half_width_points:g} points; the best method of each kind chosen by its mean)")
    return ["", head, ""] + [f"- {i['scenario']} / {i['circuit']} / {i['model']}, {i['calibration_images']} images: "
                             f"{i['text']}" for i in items]


def statements_table(items: list[dict[str, Any]]) -> str:
    """The statements as a table: a line per non-ideality and calibration size; per kind the verdict, the
    methods compared and the interval (points)."""
    kinds = ("bn_suffices", "rival_equal_budget", "rival_any_budget")
    cells: dict[tuple, dict[str, str]] = {}
    for i in items:
        d = i["difference_points"]
        interval = "" if d is None else Interval(d["estimate"], d["low"], d["high"], d["n_seeds"]).text()
        what = f"{i['method']}: {interval}" if i["kind"] == "bn_suffices" else f"{i['method']} − {i['reference']}: {interval}"
        key = (i["scenario"], i["circuit"], i["model"], i["calibration_images"])
        cells.setdefault(key, {})[i["kind"]] = f"**{i['verdict']}** ({what})"
    lines = ["| non-ideality | circuit | model | images | BN-only within the threshold of software (software − "
             "best BN-only) | best rival at equal budget − best BN-only | best rival at any budget − best BN-only |",
             "|---|---|---|---|---|---|---|"]
    for (scenario, circuit, model, images), c in sorted(cells.items()):
        lines.append(f"| {scenario} | {circuit} | {model} | {images} | " + " | ".join(c.get(k, "") for k in kinds) + " |")
    return "\n".join(lines)


def from_report_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows :func:`statements` reads, from the workflow report's rows (``dnn.report.load_results``);
    empty when no result holds a rival method (the default run's report then has no rivals section)."""
    if not any(r["base_method"] in RIVALS for r in rows):
        return []
    return [{"scenario": r["scenario"], "circuit": r["circuit"], "model": r["model"], "label": r["method"],
             "method": r["base_method"], "rank": r["rank"], "calibration_images": r["calibration_images"],
             "software": r["software_accuracy"], "accuracy_mean": r["accuracy_mean"],
             "accuracy_per_seed": list(r["accuracy_per_seed"]) or [r["accuracy_mean"]],
             "trainable_params": int(r["trainable_params"] or 0)} for r in rows]


def plot(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Accuracy recovered (%) against trained parameters (symmetric log axis: 0 for the training-free
    methods), a panel per non-ideality (columns) and calibration size (rows); error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["scenario"], r["circuit"]) for r in rows})
    sizes = sorted({r["calibration_images"] for r in rows if r["method"] != "none" and r["calibration_images"]})
    width = max(3.2 * len(panels), 6.4)  # room for the legend under a single panel
    fig, axes = plt.subplots(max(len(sizes), 1), max(len(panels), 1), figsize=(width, 2.6 * len(sizes)),
                             squeeze=False, sharex=True, sharey=True)
    seen: set[str] = set()
    for i, n in enumerate(sizes):
        for j, (scenario, circuit) in enumerate(panels):
            ax = axes[i, j]
            sel = [r for r in rows if (r["scenario"], r["circuit"]) == (scenario, circuit)
                   and r["calibration_images"] == n and not math.isnan(r["recovered_mean"])]
            for r in sel:
                label = None if r["method"] in seen else r["method"]
                seen.add(r["method"])
                ax.errorbar(r["trainable_params"], 100 * r["recovered_mean"], yerr=100 * r["recovered_std"],
                            fmt=MARKERS.get(r["method"], "o"), ms=5, mfc="none", capsize=2,
                            color=COLOURS.get(r["method"], "tab:gray"), label=label)
            ax.axhline(100, ls="--", lw=0.8, color="0.4")
            ax.axhline(0, ls=":", lw=0.8, color="0.4")
            ax.set_xscale("symlog", linthresh=10)
            if i == 0:
                ax.set_title(f"{scenario}\n{circuit}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{n} images\nrecovered (%)", fontsize=8)
            if i == len(sizes) - 1:
                ax.set_xlabel("trained parameters", fontsize=8)
            ax.tick_params(labelsize=7)
    ncol = min(len(seen), max(int(width // 1.6), 1))
    legend_rows = -(-len(seen) // ncol)
    fig.legend(loc="lower center", ncol=ncol, fontsize=8, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.3 * legend_rows / (2.6 * max(len(sizes), 1)) + 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
