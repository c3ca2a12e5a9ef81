"""Tables and plots over evaluation results (``python -m dnn report``).

Each evaluation JSON (written by ``python -m dnn evaluate``) holds one circuit x model x scenario::

    {"circuit": str, "model": str, "scenario": str, "software_accuracy": float,
     "methods": {method: {"accuracy_mean": float, "accuracy_std": float, "accuracies": [float],
                          "trainable_params": int, "wall_s": float, "peak_mem_mb": float,
                          "pc2_mean": float, "pc2_per_layer": {layer: float}}}, ...}
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

METHOD_ORDER = ["none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain"]
CSV_COLUMNS = ["circuit", "model", "scenario", "method", "accuracy_mean", "accuracy_std", "n_runs",
               "software_accuracy", "trainable_params", "wall_s", "peak_mem_mb", "pc2_mean"]


def load_results(paths: list[str | Path]) -> list[dict]:
    """One row per circuit x model x scenario x method."""
    rows = []
    for path in paths:
        try:
            result = json.loads(Path(path).read_text())
            methods = result["methods"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ValueError(f"{path}: not an evaluation result ({exc})") from exc
        for method, m in methods.items():
            rows.append({
                "circuit": result["circuit"], "model": result["model"], "scenario": result["scenario"],
                "method": method, "accuracy_mean": m["accuracy_mean"], "accuracy_std": m["accuracy_std"],
                "n_runs": len(m.get("accuracies", [])), "software_accuracy": result["software_accuracy"],
                "trainable_params": m.get("trainable_params", ""), "wall_s": m.get("wall_s", ""),
                "peak_mem_mb": m.get("peak_mem_mb", ""), "pc2_mean": m.get("pc2_mean", ""),
            })
    rows.sort(key=lambda r: (r["circuit"], r["model"], r["scenario"], _method_rank(r["method"])))
    return rows


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: list[dict]) -> str:
    """Accuracy (%) per circuit/model/scenario (rows) and method (columns), mean ± std."""
    methods = sorted({r["method"] for r in rows}, key=_method_rank)
    groups: dict[tuple, dict] = {}
    for r in rows:
        key = (r["circuit"], r["model"], r["scenario"])
        groups.setdefault(key, {"software": r["software_accuracy"]})[r["method"]] = r
    header = "| circuit | model | scenario | software | " + " | ".join(methods) + " |"
    lines = [header, "|" + "---|" * (4 + len(methods))]
    for (circuit, model, scenario), g in groups.items():
        cells = []
        for m in methods:
            r = g.get(m)
            cells.append("" if r is None else f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}")
        lines.append(f"| {circuit} | {model} | {scenario} | {100 * g['software']:.1f} | " + " | ".join(cells) + " |")
    cost = ["", "Cost per method (mean over scenarios): trainable parameters, wall time, peak memory", "",
            "| method | trainable params | wall time (s) | peak memory (MB) |", "|---|---|---|---|"]
    for m in methods:
        sel = [r for r in rows if r["method"] == m and r["wall_s"] != ""]
        if sel:
            cost.append(f"| {m} | {sel[0]['trainable_params']} | {sum(r['wall_s'] for r in sel) / len(sel):.1f} | "
                        f"{sum(r['peak_mem_mb'] for r in sel) / len(sel):.0f} |")
    pc2 = ["", "PC2 diagnostic (mean over crossbar layers of sqrt(lambda2/lambda1) of the software-vs-crossbar "
           "output scatter; 0 = a pure gain BN can undo)", "",
           "| circuit | model | scenario | " + " | ".join(methods) + " |", "|" + "---|" * (3 + len(methods))]
    for (circuit, model, scenario), g in groups.items():
        cells = [f"{g[m]['pc2_mean']:.3f}" if m in g and g[m]["pc2_mean"] != "" else "" for m in methods]
        pc2.append(f"| {circuit} | {model} | {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines + cost + pc2) + "\n"


def plot(rows: list[dict], path: str | Path) -> None:
    """Grouped bars: accuracy per scenario (x) and method (colour); software as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = sorted({(r["circuit"], r["model"]) for r in rows})
    methods = sorted({r["method"] for r in rows}, key=_method_rank)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), squeeze=False)
    for ax, (circuit, model) in zip(axes[:, 0], panels, strict=True):
        sel = [r for r in rows if r["circuit"] == circuit and r["model"] == model]
        scenarios = list(dict.fromkeys(r["scenario"] for r in sel))
        width = 0.8 / len(methods)
        for k, m in enumerate(methods):
            means = [next((100 * r["accuracy_mean"] for r in sel if r["scenario"] == s and r["method"] == m), np.nan)
                     for s in scenarios]
            stds = [next((100 * r["accuracy_std"] for r in sel if r["scenario"] == s and r["method"] == m), 0.0)
                    for s in scenarios]
            ax.bar(np.arange(len(scenarios)) + (k - (len(methods) - 1) / 2) * width, means, width, yerr=stds,
                   label=m, capsize=2)
        ax.axhline(100 * sel[0]["software_accuracy"], color="k", ls="--", lw=1, label="software")
        ax.set_xticks(np.arange(len(scenarios)), scenarios)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{model} on {circuit}")
    axes[-1, 0].legend(ncol=len(methods) + 1, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(paths: list[str | Path], md: str | Path, csv_path: str | Path, plot_path: str | Path) -> list[dict]:
    rows = load_results(paths)
    for out in (md, csv_path, plot_path):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, csv_path)
    Path(md).write_text(markdown_table(rows))
    plot(rows, plot_path)
    log.info("report: %d rows from %d evaluations", len(rows), len(paths))
    return rows
