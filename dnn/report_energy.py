"""Accuracy and energy together: the accuracy-energy figure across array sizes and the statement naming
the size that costs least energy within a given accuracy loss (torch-free).

Reads the rows of :func:`dnn.report.load_results` (one per circuit x model x scenario x method, with
``energy_per_inference_j`` and ``latency_per_inference_s`` from the evaluation's energy pass,
:mod:`dnn.energy`). A *size sweep* is every row of one (model, scenario, method) whose circuits differ in
array size; within it, the statement names the size with the least energy per inference among those
whose mean accuracy is at most ``loss_points`` below software.

  python -m dnn.report_energy results/eval/*/*/parasitics.json --plot docs/energy_accuracy.png \\
      --md energy.md --loss-points 1
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

from xbarchar import cli as xcli
from xbarchar.files import atomic_write_text, refuse_overwriting_inputs

logger = logging.getLogger(__name__)


def energy_columns(method_result: dict[str, Any]) -> dict[str, Any]:
    """The energy fields of one method of an evaluation result for the report's rows ("" when the result
    has no energy pass)."""
    energy = method_result.get("energy") or {}
    return {"energy_per_inference_j": energy.get("energy_per_inference_j", ""),
            "latency_per_inference_s": energy.get("latency_per_inference_s", ""),
            "energy_breakdown_j": energy.get("energy_breakdown_j", {}),
            "power_model": energy.get("power_model", "")}


def _has_energy(r: dict[str, Any]) -> bool:
    e = r.get("energy_per_inference_j", "")
    return isinstance(e, (int, float)) and math.isfinite(e) and r.get("rows", "") != ""


def energy_sweeps(rows: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """(model, scenario, method) -> rows with an energy figure, where two or more array sizes were evaluated
    (sorted by size)."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        if _has_energy(r):
            out.setdefault((r["model"], r["scenario"], r["method"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["rows"]) for k, v in out.items() if len({r["rows"] for r in v}) >= 2}


def least_energy_within(sweep: list[dict], loss_points: float) -> dict | None:
    """The row with the least energy per inference among those at most ``loss_points`` below software
    (mean accuracy); None when none is."""
    ok = [r for r in sweep if 100 * (r["software_accuracy"] - r["accuracy_mean"]) <= loss_points]
    return min(ok, key=lambda r: r["energy_per_inference_j"]) if ok else None


def _size(r: dict) -> str:
    return f"{r['rows']}x{r['rows']}" if r.get("cols", r["rows"]) == r["rows"] else f"{r['rows']} rows"


def statements(rows: list[dict], loss_points: float) -> list[str]:
    """One line per size sweep: the size that costs least energy within ``loss_points`` of software, with
    every size's accuracy, energy and latency."""
    lines = []
    for (model, scenario, method), sweep in energy_sweeps(rows).items():
        best = least_energy_within(sweep, loss_points)
        sizes = "; ".join(f"{_size(r)}: {100 * r['accuracy_mean']:.1f}%, {1e6 * r['energy_per_inference_j']:.3g} uJ, "
                          f"{1e6 * r['latency_per_inference_s']:.3g} us" for r in sweep)
        where = f"{model} / {scenario} / {method}"
        if best is None:
            lines.append(f"- {where}: no array size is within {loss_points:g} points of software "
                         f"({100 * sweep[0]['software_accuracy']:.1f}%) ({sizes})")
        else:
            lines.append(f"- {where}: the {_size(best)} array costs least energy within {loss_points:g} points of "
                         f"software ({100 * sweep[0]['software_accuracy']:.1f}%): {1e6 * best['energy_per_inference_j']:.3g} "
                         f"uJ per inference ({sizes})")
    return lines


def markdown_lines(rows: list[dict], loss_points: float) -> list[str]:
    """The report's energy section (empty without a size sweep that has energy figures)."""
    lines = statements(rows, loss_points)
    if not lines:
        return []
    return ["", f"Energy per inference across array sizes (dnn/energy.py): the size that costs least within "
            f"{loss_points:g} accuracy points of software (report.energy_loss_points)", "", *lines]


def plot_accuracy_energy(rows: list[dict], path: str | Path, loss_points: float) -> None:
    """One panel per (model, scenario): accuracy vs energy per inference (log), a line per method through
    the array sizes (labelled), software dashed and software - loss_points dotted."""
    from .report import _empty_figure, _pyplot

    sweeps = energy_sweeps(rows)
    if not sweeps:
        return _empty_figure(path, "no evaluation with energy figures at two or more array sizes")
    panels: dict[tuple[str, str], list[tuple[str, list[dict]]]] = {}
    for (model, scenario, method), sweep in sweeps.items():
        panels.setdefault((model, scenario), []).append((method, sweep))
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3.6 * len(panels)), squeeze=False)
    for ax, ((model, scenario), lines) in zip(axes[:, 0], panels.items(), strict=True):
        for k, (method, sweep) in enumerate(lines):
            x = [r["energy_per_inference_j"] * 1e6 for r in sweep]
            y = [100 * r["accuracy_mean"] for r in sweep]
            ax.errorbar(x, y, yerr=[100 * r["accuracy_std"] for r in sweep], marker="o", ms=4, capsize=2, label=method)
            for j, (xi, yi, r) in enumerate(zip(x, y, sweep, strict=True)):  # sizes labelled, staggered
                ax.annotate(_size(r), (xi, yi), textcoords="offset points", xytext=(4, 4 - 11 * ((j + k) % 2)),
                            fontsize=7)
        software = 100 * lines[0][1][0]["software_accuracy"]
        ax.axhline(software, color="k", ls="--", lw=1, label="software")
        ax.axhline(software - loss_points, color="k", ls=":", lw=1, label=f"software - {loss_points:g} points")
        ax.set_xscale("log")
        ax.set_xlabel("energy per inference (uJ)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{model} / {scenario}", fontsize=9)
        ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_energy_report(paths: list[str | Path], plot_path: str | Path | None, md_path: str | Path | None,
                        loss_points: float) -> list[str]:
    """Read evaluation results, write the figure and the statement (markdown); returns the statement lines."""
    from .report import load_results

    rows = load_results(paths)
    if plot_path is not None:
        plot_accuracy_energy(rows, plot_path, loss_points)
    lines = markdown_lines(rows, loss_points)
    if md_path is not None:
        atomic_write_text(md_path, "\n".join(lines or ["No size sweep with energy figures."]) + "\n")
    return lines


def _cmd(ns: argparse.Namespace) -> int:
    from .report import ReportSettings

    refuse_overwriting_inputs({"--plot": ns.plot, "--md": ns.md}, {"input": list(ns.inputs)})
    loss = ReportSettings().energy_loss_points if ns.loss_points is None else ns.loss_points
    for line in write_energy_report(ns.inputs, ns.plot, ns.md, loss):
        logger.info("%s", line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = xcli.ArgumentParser(prog="python -m dnn.report_energy", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="evaluation .json files")
    p.add_argument("--plot", default=None, help="accuracy-energy figure (.png)")
    p.add_argument("--md", default=None, help="the statement as markdown")
    p.add_argument("--loss-points", type=xcli.real(0, 100, min_exclusive=True), default=None,
                   help="accuracy loss (points below software) within which the cheapest size is named "
                        "(default: dnn.report.ReportSettings.energy_loss_points)")
    p.set_defaults(func=_cmd)
    xcli.add_common_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with xcli.configured(args):
        return xcli.run(args.func, args, bad_input=(ValueError, FileNotFoundError))


if __name__ == "__main__":
    raise SystemExit(main())
