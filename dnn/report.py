"""Tables and plots over evaluation results (``python -m dnn report``).

Each evaluation JSON (written by ``python -m dnn evaluate``) holds one circuit x model x scenario::

    {"circuit": str, "model": str, "scenario": str, "software_accuracy": float,
     "mvm": {"rows": int, ...}, "circuit_spec": {"r_wire_row_ohm": float, ...} | null,
     "xbar_config": {"read_noise_sigma": float, "t_drift_s": float, ...}, "device_preset": str | null,
     "methods": {method: {"accuracy_mean": float, "accuracy_std": float, "accuracies": [float],
                          "trainable_params": int, "wall_s": float, "peak_mem_mb": float,
                          "pc2_mean": float, "pc2_per_layer": {layer: float}}}, ...}

Sweeps are read from the settings each result records, not from scenario names: accuracy vs read-noise
sigma (results without drift), vs drift time (results without read noise, per drift law), vs array size
(results with neither: the circuit's parasitics alone). `shape_check` states, from the same rows, whether
the table has the shape of Paper 1 (Bhattacharjee et al. 2023).

Trust: each surrogate's fidelity (the JSON files `python -m surrogate train --fidelity-json` and
`python -m surrogate fidelity --json` write, given with ``--fidelity``) is tabled next to the results. A
statement is *declined* ("declined: <reason>" instead of yes/NO) when any result it rests on is not to
be trusted: a non-finite accuracy, a surrogate whose error is not lower than the ideal model's (v·G) on
its test set, or ngspice samples that failed in the data the surrogate was trained on.

Every output is first written under a temporary name in its folder; only when all of them were written
are they renamed onto the requested names, so a failed report leaves the previous outputs untouched.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from xbarchar.files import reserve_temporary

from .report_device import device_columns
from .report_device import markdown_lines as device_lines
from .report_energy import energy_columns
from .report_energy import markdown_lines as energy_lines

log = logging.getLogger(__name__)

METHOD_ORDER = ["none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain"]
CSV_COLUMNS = ["circuit", "model", "scenario", "method", "accuracy_mean", "accuracy_std", "n_runs",
               "software_accuracy", "rows", "r_wire_ohm", "g_on_s", "adc_range", "read_noise_sigma", "t_drift_s", "drift_nu_mean",
               "device_preset", "trainable_params", "wall_s", "peak_mem_mb", "pc2_mean", "energy_per_inference_j",
               "latency_per_inference_s"]


@dataclass(frozen=True)
class ReportSettings:
    """Thresholds of the Paper-1 shape check (accuracy in percentage points)."""

    fail_drop_points: float = 5.0
    """A method 'fails' at a read-noise sigma where it is more than this far below software."""
    close_drop_points: float = 1.0
    """'Close to software': at most this far below it."""
    well_below_points: float = 10.0
    """'Well below software': at least this far below it."""
    energy_loss_points: float = 1.0
    """The energy statement names the array size that costs least energy within this many points of software."""

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ReportSettings:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"report: unknown key(s) {unknown}; expected some of {sorted(cls.__dataclass_fields__)}")
        out = cls(**d)
        for key, value in vars(out).items():
            if not isinstance(value, (int, float)) or not 0 < value <= 100:
                raise ValueError(f"report.{key}: expected a number of percentage points in (0, 100], got {value!r}")
        return out


def _accuracy(value: Any, where: str) -> float:
    """An accuracy as a float; NaN and inf are kept (and make statements decline), anything that is not
    a number is an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)


def load_results(paths: list[str | Path]) -> list[dict]:
    """One row per circuit x model x scenario x method. Every file is checked before any row is
    returned: a file that is not an evaluation result, has no methods or holds an accuracy that is not
    a number raises ValueError naming the file."""
    rows = []
    if not paths:
        raise ValueError("report: no evaluation results given")
    for path in paths:
        try:
            result = json.loads(Path(path).read_text())
            methods = result["methods"]
            if not isinstance(methods, dict) or not methods:
                raise ValueError("'methods' is empty: no method was evaluated")
            xbar = result.get("xbar_config", {})
            spec = result.get("circuit_spec") or {}
            mvm = result.get("mvm", {})
            setting = {
                "rows": mvm.get("rows", ""), "r_wire_ohm": spec.get("r_wire_row_ohm", ""),
                "g_on_s": spec.get("g_on_s", ""),
                "adc_range": xbar.get("adc_range", "fixed"),
                "read_noise_sigma": float(xbar.get("read_noise_sigma", 0.0)),
                "t_drift_s": float(xbar.get("t_drift_s", 0.0)), "drift_nu_mean": float(xbar.get("drift_nu_mean", 0.0)),
                "device_preset": result.get("device_preset") or "",
                "mvm_kind": mvm.get("kind", ""),
                **device_columns(result),
            }
            software = _accuracy(result["software_accuracy"], "software_accuracy")
            for method, m in methods.items():
                rows.append({
                    "circuit": result["circuit"], "model": result["model"], "scenario": result["scenario"],
                    "method": method,
                    "accuracy_mean": _accuracy(m["accuracy_mean"], f"methods.{method}.accuracy_mean"),
                    "accuracy_std": _accuracy(m["accuracy_std"], f"methods.{method}.accuracy_std"),
                    "n_runs": len(m.get("accuracies", [])), "software_accuracy": software,
                    "accuracy_per_seed": [_accuracy(a, f"methods.{method}.accuracy_per_seed")
                                          for a in m.get("accuracy_per_seed", [])],
                    **setting,
                    "trainable_params": m.get("trainable_params", ""), "wall_s": m.get("wall_s", ""),
                    "peak_mem_mb": m.get("peak_mem_mb", ""), "pc2_mean": m.get("pc2_mean", ""),
                    **energy_columns(m),
                })
        except (OSError, json.JSONDecodeError, KeyError, AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not an evaluation result ({exc})") from exc
    rows.sort(key=lambda r: (r["circuit"], r["model"], r["scenario"], _method_rank(r["method"])))
    return rows


# ----------------------------------------------------------------------------- trust
@dataclass(frozen=True)
class Fidelity:
    """One surrogate fidelity measurement (surrogate/fidelity.py), errors relative to full scale."""

    circuit: str
    test_set: str
    """'held-out' (matrices of the circuit's own ngspice dataset) or 'DNN-like' (a separate ngspice set
    drawn from a trained model's tiles and activations)."""
    design: str
    rel_rms_fs: float
    ideal_rel_rms_fs: float
    improvement_over_ideal: float
    n_failed_samples: int | None
    """ngspice samples that failed in the data behind this measurement (None: not recorded)."""
    path: str

    def problems(self) -> list[str]:
        """Why results computed with this surrogate are not to be trusted (empty: no reason)."""
        out = []
        if not (math.isfinite(self.improvement_over_ideal) and self.improvement_over_ideal > 1.0):
            out.append(f"the surrogate of {self.circuit} is not better than the ideal model on its {self.test_set} "
                       f"test set (improvement over the ideal model {self.improvement_over_ideal:.3g}x)")
        if self.n_failed_samples:
            out.append(f"{self.n_failed_samples} ngspice sample(s) failed in the {self.test_set} data of "
                       f"{self.circuit}'s surrogate")
        return out


def load_fidelity(paths: list[str | Path]) -> list[Fidelity]:
    """Fidelity JSON files as written by the surrogate stage; the test set is told by the file name
    (``*.fidelity_dnn.json``: DNN-like, otherwise held-out)."""
    out = []
    for path in paths:
        try:
            d = json.loads(Path(path).read_text())
            failed = d.get("n_failed_samples")
            out.append(Fidelity(
                circuit=str(d["circuit"]),
                test_set="DNN-like" if Path(path).name.endswith("fidelity_dnn.json") else "held-out",
                design=str(d.get("design", "")),
                rel_rms_fs=_accuracy(d["models"]["surrogate"]["rel_rms_fs"], "models.surrogate.rel_rms_fs"),
                ideal_rel_rms_fs=_accuracy(d["models"]["ideal"]["rel_rms_fs"], "models.ideal.rel_rms_fs"),
                improvement_over_ideal=_accuracy(d["improvement_over_ideal"]["surrogate"],
                                                 "improvement_over_ideal.surrogate"),
                n_failed_samples=None if failed is None else int(failed),
                path=str(path)))
        except (OSError, json.JSONDecodeError, KeyError, AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a surrogate fidelity file ({exc})") from exc
    return sorted(out, key=lambda f: (f.circuit, f.test_set))


def _row_problems(r: dict, fidelity: list[Fidelity]) -> list[str]:
    """Why one result row is not to be trusted (empty: no reason known)."""
    out = []
    values = [r["software_accuracy"], r["accuracy_mean"], *r["accuracy_per_seed"]]
    if not all(math.isfinite(v) for v in values):
        out.append(f"non-finite accuracy ({r['circuit']} / {r['model']} / {r['scenario']} / {r['method']})")
    if r["mvm_kind"] == "surrogate":
        for f in fidelity:
            if f.circuit == r["circuit"]:
                out.extend(f.problems())
    return out


def declined_reason(rows: list[dict], fidelity: list[Fidelity]) -> str:
    """'' when every row may be trusted, else the reasons, each once, joined by '; '."""
    reasons: list[str] = []
    for r in rows:
        for reason in _row_problems(r, fidelity):
            if reason not in reasons:
                reasons.append(reason)
    return "; ".join(reasons)


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _methods(rows: list[dict]) -> list[str]:
    return sorted({r["method"] for r in rows}, key=_method_rank)


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# ----------------------------------------------------------------------------- sweeps
def parasitics_only(r: dict) -> bool:
    """No read noise and no drift: the circuit's parasitics (and converters) alone."""
    return r["read_noise_sigma"] == 0.0 and r["t_drift_s"] == 0.0


def sigma_sweep(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(circuit, model) -> rows without drift, where at least two read-noise sigmas were evaluated."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r["t_drift_s"] == 0.0:
            out.setdefault((r["circuit"], r["model"]), []).append(r)
    return {k: v for k, v in out.items() if len({r["read_noise_sigma"] for r in v}) >= 2}


def drift_sweep(rows: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """(circuit, model, drift law) -> rows with drift and no read noise."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        if r["read_noise_sigma"] == 0.0 and r["t_drift_s"] > 0.0:
            law = r["device_preset"] or f"nu={r['drift_nu_mean']:g}"
            out.setdefault((r["circuit"], r["model"], law), []).append(r)
    return out


def size_sweep(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(model, circuit family: wire resistance, R_on, ADC range) -> parasitics-only rows, where the
    family was evaluated at two or more array sizes."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if parasitics_only(r) and r["rows"] != "":
            out.setdefault((r["model"], _circuit_family(r)), []).append(r)
    return {k: v for k, v in out.items() if len({r["rows"] for r in v}) >= 2}


def failure_sigma(sweep: list[dict], method: str, drop_points: float, seed: int | None = None) -> float:
    """Read-noise sigma at which `method`'s mean accuracy (or that of seed number `seed`) crosses
    `drop_points` below software.

    Linear interpolation between the last sweep point above the line and the first one below it
    (the sweep's first sigma when that one is already below); inf when no point is below; NaN when an
    accuracy it rests on is not finite (a NaN is neither above nor below the line). Where several
    results share a sigma (e.g. two ADC ranges at sigma 0) the worst one counts.
    """
    worst: dict[float, float] = {}
    for r in sweep:
        if r["method"] == method:
            accuracy = r["accuracy_mean"] if seed is None else r["accuracy_per_seed"][seed]
            drop = 100 * (r["software_accuracy"] - accuracy)
            if not math.isfinite(drop):
                return math.nan
            worst[r["read_noise_sigma"]] = max(drop, worst.get(r["read_noise_sigma"], -math.inf))
    curve = sorted(worst.items())
    for k, (sigma, drop) in enumerate(curve):
        if drop > drop_points:
            if k == 0:
                return sigma
            sigma_prev, drop_prev = curve[k - 1]
            return sigma_prev + (sigma - sigma_prev) * (drop_points - drop_prev) / (drop - drop_prev)
    return math.inf


# ----------------------------------------------------------------------------- tables
def _groups(rows: list[dict]) -> dict[tuple, dict]:
    groups: dict[tuple, dict] = {}
    for r in rows:
        groups.setdefault((r["circuit"], r["model"], r["scenario"]), {"software": r["software_accuracy"]})[r["method"]] = r
    return groups


def _fmt_sigma(x: float) -> str:
    if math.isnan(x):
        return "n/a (non-finite accuracy)"
    return "never" if math.isinf(x) else f"{x:.3g}"


class Statement(NamedTuple):
    """One statement of the shape check. `holds` is None when there is no data for it or it is
    declined; `declined` then says why the inputs are not to be trusted."""

    text: str
    holds: bool | None
    evidence: str
    declined: str = ""

    @property
    def mark(self) -> str:
        if self.declined:
            return "declined"
        return "n/a" if self.holds is None else ("yes" if self.holds else "NO")

    def line(self) -> str:
        if self.declined:
            return f"- **declined**: {self.text} (declined: {self.declined})"
        return f"- **{self.mark}**: {self.text} ({self.evidence})"


def _statement(text: str, inputs: list[dict], fidelity: list[Fidelity], decide: Callable[[], tuple[bool, str]]
               ) -> Statement:
    """A statement over `inputs`: declined when any of them is not to be trusted, else decided."""
    reason = declined_reason(inputs, fidelity)
    if reason:
        return Statement(text, None, "", reason)
    holds, evidence = decide()
    return Statement(text, holds, evidence)


def shape_check(rows: list[dict], settings: ReportSettings, fidelity: list[Fidelity] | None = None
                ) -> list[Statement]:
    """The four statements of Paper 1's result, each a Statement (text, holds?, evidence, declined)."""
    s = settings
    fidelity = fidelity or []
    out: list[Statement] = []
    none = [r for r in rows if r["method"] == "none"]
    if none:
        def _well_below() -> tuple[bool, str]:
            worst = min(100 * (r["software_accuracy"] - r["accuracy_mean"]) for r in none)
            return worst >= s.well_below_points, f"smallest drop {worst:.1f} points"

        out.append(_statement(f"no mitigation is well below software (>= {s.well_below_points:g} points) in "
                              "every result", none, fidelity, _well_below))
    para = [r for r in rows if parasitics_only(r)]
    by_key = {(r["circuit"], r["model"], r["scenario"], r["method"]): r for r in para}
    pairs = [(r, by_key[(c, m, sc, "none")]) for (c, m, sc, method), r in by_key.items()
             if method == "bn_adapt" and (c, m, sc, "none") in by_key]
    if pairs:
        text = "BN adaptation recovers most of the loss from parasitics (> 50% of the gap)"
        inputs = [x for pair in pairs for x in pair]
        reason = declined_reason(inputs, fidelity)
        lossy = [(r, base) for r, base in pairs if r["software_accuracy"] - base["accuracy_mean"] > 0]
        if reason:
            out.append(Statement(text, None, "", reason))
        elif not lossy:
            out.append(Statement(text, None, "", "no loss to recover: without mitigation the network is at or "
                                 f"above software in every parasitics result ({len(pairs)})"))
        else:
            recovered = [(r["accuracy_mean"] - base["accuracy_mean"]) / (r["software_accuracy"] - base["accuracy_mean"])
                         for r, base in lossy]
            evidence = f"least recovered {100 * min(recovered):.0f}%"
            if len(lossy) < len(pairs):
                evidence += f"; {len(pairs) - len(lossy)} result(s) without loss left out"
            out.append(Statement(text, min(recovered) > 0.5, evidence))
    for adc in sorted({r["adc_range"] for r in para}):
        ft = [r for r in para if r["method"] == "bn_finetune" and r["adc_range"] == adc]
        if not ft:
            continue

        def _close(ft: list[dict] = ft) -> tuple[bool, str]:
            drops = {f"{r['circuit']} ({r['rows']}x{r['rows']})": 100 * (r["software_accuracy"] - r["accuracy_mean"])
                     for r in ft}
            return (max(drops.values()) <= s.close_drop_points,
                    ", ".join(f"{k}: {v:.1f}" for k, v in sorted(drops.items())))

        out.append(_statement(f"BN fine-tuning is close to software (<= {s.close_drop_points:g} points) for "
                              f"parasitics at every array size (ADC range {adc})", ft, fidelity, _close))
    for (circuit, model), sweep in sigma_sweep(rows).items():
        used = [r for r in sweep if r["method"] in ("bn_adapt", "bn_finetune")]
        if {r["method"] for r in used} != {"bn_adapt", "bn_finetune"}:
            continue

        def _fails_first_in_sweep(sweep: list[dict] = sweep, used: list[dict] = used) -> tuple[bool, str]:
            a = failure_sigma(sweep, "bn_adapt", s.fail_drop_points)
            f = failure_sigma(sweep, "bn_finetune", s.fail_drop_points)
            holds = _fails_first(a, f)
            evidence = f"adaptation fails at sigma {_fmt_sigma(a)}, fine-tuning at {_fmt_sigma(f)}"
            n_seeds = min(len(r["accuracy_per_seed"]) for r in used)
            if n_seeds >= 2:  # the same comparison seed by seed (same programming and noise draws)
                first = sum(_fails_first(failure_sigma(sweep, "bn_adapt", s.fail_drop_points, k),
                                         failure_sigma(sweep, "bn_finetune", s.fail_drop_points, k))
                            for k in range(n_seeds))
                holds = holds and 2 * first > n_seeds
                evidence += f"; seed by seed, adaptation fails first in {first} of {n_seeds}"
            return holds, evidence

        out.append(_statement(f"{model} on {circuit}: BN adaptation fails ({s.fail_drop_points:g} points below "
                              "software, interpolated) at a lower read-noise sigma than BN fine-tuning, in the "
                              "mean and for most seeds", used, fidelity, _fails_first_in_sweep))
    return out


def _fails_first(sigma_a: float, sigma_b: float) -> bool:
    return sigma_a < sigma_b or (math.isinf(sigma_b) and not math.isinf(sigma_a))


def fidelity_table(fidelity: list[Fidelity]) -> list[str]:
    """Markdown lines: each surrogate's error against ngspice next to the ideal model's."""
    if not fidelity:
        return []
    lines = ["", "Surrogate fidelity against ngspice (RMS error relative to the full-scale column current; "
             "improvement = the ideal model's error / the surrogate's; a surrogate not better than the ideal "
             "model, or trained on data with failed samples, is not trusted)", "",
             "| circuit | test set | design | surrogate error (% FS) | ideal model error (% FS) | improvement "
             "| failed samples | trusted |", "|---|---|---|---|---|---|---|---|"]
    for f in fidelity:
        failed = "not recorded" if f.n_failed_samples is None else str(f.n_failed_samples)
        trusted = "no" if f.problems() else "yes"
        lines.append(f"| {f.circuit} | {f.test_set} | {f.design} | {100 * f.rel_rms_fs:.3g} | "
                     f"{100 * f.ideal_rel_rms_fs:.3g} | {f.improvement_over_ideal:.3g}x | {failed} | {trusted} |")
    return lines


def markdown_table(rows: list[dict], settings: ReportSettings | None = None,
                   fidelity: list[Fidelity] | None = None) -> str:
    """Accuracy (%) per circuit/model/scenario (rows) and method (columns), mean ± std; cost, PC2,
    failure sigma, surrogate fidelity and the Paper-1 shape check."""
    settings = settings or ReportSettings()
    fidelity = fidelity or []
    methods = _methods(rows)
    groups = _groups(rows)
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
    sweeps = sigma_sweep(rows)
    fail: list[str] = []
    if sweeps:
        fail = ["", f"Read-noise sigma at which each method falls {settings.fail_drop_points:g} points below software "
                "(mean accuracy, interpolated linearly between the sweep's sigmas; \"never\": not within the "
                "sweep)", "",
                "| circuit | model | sigmas | " + " | ".join(methods) + " |", "|" + "---|" * (3 + len(methods))]
        for (circuit, model), sweep in sweeps.items():
            sigmas = ", ".join(f"{x:g}" for x in sorted({r["read_noise_sigma"] for r in sweep}))
            cells = [_fmt_sigma(failure_sigma(sweep, m, settings.fail_drop_points)) for m in methods]
            fail.append(f"| {circuit} | {model} | {sigmas} | " + " | ".join(cells) + " |")
    check = ["", "Shape of Paper 1's result", ""]
    check += [st.line() for st in shape_check(rows, settings, fidelity)]
    energy = energy_lines(rows, settings.energy_loss_points)
    device = device_lines(rows, settings.fail_drop_points)
    return "\n".join(lines + cost + pc2 + fail + fidelity_table(fidelity) + check + energy + device) + "\n"


# ----------------------------------------------------------------------------- plots
# Figure drawing is left out of mutation testing (make mutate): its sizes, fonts, colours and labels are
# presentation, not behaviour. What each figure shows is chosen by sigma_sweep/drift_sweep/size_sweep
# (tested), and the tests check each figure's panel count through its pixel size.
# pragma: no mutate start
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _empty_figure(path: str | Path, message: str) -> None:
    """A figure that says why there is nothing to plot (the workflow always gets its file)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, wrap=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot(rows: list[dict], path: str | Path) -> None:
    """Grouped bars: accuracy per scenario (x) and method (colour); software as a dashed line."""
    import numpy as np

    plt = _pyplot()
    panels = sorted({(r["circuit"], r["model"]) for r in rows})
    methods = _methods(rows)
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
        ax.set_xticks(np.arange(len(scenarios)), scenarios, rotation=30 if len(scenarios) > 6 else 0, fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{model} on {circuit}")
    axes[-1, 0].legend(ncol=len(methods) + 1, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _line_panels(path: str | Path, panels: dict[tuple, list[dict]], x_key: str, xlabel: str, log_x: bool) -> None:
    """One panel per key of `panels`: accuracy vs `x_key`, a line per method, error bars = std,
    software dashed."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3.2 * len(panels)), squeeze=False)
    for ax, (title, sel) in zip(axes[:, 0], panels.items(), strict=True):
        for method in _methods(sel):
            pts = sorted((r for r in sel if r["method"] == method), key=lambda r: r[x_key])
            ax.errorbar([r[x_key] for r in pts], [100 * r["accuracy_mean"] for r in pts],
                        yerr=[100 * r["accuracy_std"] for r in pts], marker="o", ms=3, capsize=2, label=method)
        ax.axhline(100 * sel[0]["software_accuracy"], color="k", ls="--", lw=1, label="software")
        if log_x:
            ax.set_xscale("log")
        if x_key == "rows":  # array sizes: label the sizes themselves
            sizes = sorted({r["rows"] for r in sel})
            ax.set_xticks(sizes, [str(x) for x in sizes])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(" / ".join(str(t) for t in (title if isinstance(title, tuple) else (title,))), fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sigma(rows: list[dict], path: str | Path) -> None:
    panels = sigma_sweep(rows)
    if not panels:
        return _empty_figure(path, "no circuit x model was evaluated at two or more read-noise sigmas")
    _line_panels(path, panels, "read_noise_sigma", "read-noise sigma (relative)", log_x=False)


def plot_drift(rows: list[dict], path: str | Path) -> None:
    panels = drift_sweep(rows)
    if not panels:
        return _empty_figure(path, "no scenario with drift and without read noise")
    _line_panels(path, panels, "t_drift_s", "time since programming (s)", log_x=True)


def plot_size(rows: list[dict], path: str | Path) -> None:
    panels = size_sweep(rows)
    if not panels:
        return _empty_figure(path, "no parasitics-only scenario (no read noise, no drift) at two array sizes")
    _line_panels(path, panels, "rows", "array size (rows = columns)", log_x=True)


# pragma: no mutate end


def _circuit_family(r: dict) -> str:
    """What besides the size tells results apart in the size sweep: wire resistance, R_on, ADC range."""
    parts = []
    if r["r_wire_ohm"] != "":
        parts.append(f"wire {r['r_wire_ohm']:g} ohm")
    if r["g_on_s"] != "":
        parts.append(f"R_on {1e-3 / r['g_on_s']:.0f} kohm")
    parts.append(f"ADC {r['adc_range']}")
    return ", ".join(parts)


def _temporary(path: Path) -> Path:
    """A new empty file beside `path` with an unpredictable name that keeps its extension (matplotlib
    picks the format from it), created exclusively (see :func:`xbarchar.files.reserve_temporary`)."""
    return reserve_temporary(path)


def write_report(paths: list[str | Path], md: str | Path, csv_path: str | Path, plot_path: str | Path,
                 plot_sigma_path: str | Path | None = None, plot_drift_path: str | Path | None = None,
                 plot_size_path: str | Path | None = None, settings: ReportSettings | None = None,
                 fidelity_paths: list[str | Path] | None = None) -> list[dict]:
    """Read the evaluation (and fidelity) files and write every output, atomically as a set: all outputs
    are rendered under temporary names first and renamed only when every one of them succeeded; on any
    error the temporary files are removed and earlier outputs stay as they were."""
    rows = load_results(paths)
    fidelity = load_fidelity(list(fidelity_paths or []))
    writers: list[tuple[str | Path | None, Callable[[Path], None]]] = [
        (csv_path, lambda p: write_csv(rows, p)),
        (md, lambda p: p.write_text(markdown_table(rows, settings, fidelity))),
        (plot_path, lambda p: plot(rows, p)),
        (plot_sigma_path, lambda p: plot_sigma(rows, p)),
        (plot_drift_path, lambda p: plot_drift(rows, p)),
        (plot_size_path, lambda p: plot_size(rows, p)),
    ]
    done: list[tuple[Path, Path]] = []
    try:
        for out, write in writers:
            if out is None:
                continue
            final = Path(out)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temporary(final)
            done.append((tmp, final))
            write(tmp)
    except BaseException:
        for tmp, _ in done:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in done:
        os.replace(tmp, final)
    log.info("report: %d rows from %d evaluations, %d fidelity file(s)", len(rows), len(paths), len(fidelity))
    return rows
