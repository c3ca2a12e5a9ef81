"""Device-model statements of the report: per device scenario, what the devices cost and how much each
mitigation method recovers, where BN-only methods stop helping, and what the PC2 diagnostic shows.

``dnn.report`` calls :func:`device_columns` for every evaluation result (the row's device settings and
fault counts) and appends :func:`markdown_lines` to results.md. A *device scenario* is one whose
crossbar settings turn on a device-model step (programming noise, finite levels, stuck-at faults,
device-to-device spread); its *reference* is a scenario of the same circuit and model with no device
step, no read noise and no drift (``device_ideal`` in config/device.yaml, else the first such scenario by
name). Run on result files directly::

    python -m dnn.report_device results/eval/paper1_64/digits_bncnn/*.json --md device.md --json device.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEVICE_KEYS = ("prog_noise_c0_rel", "prog_noise_c1_rel", "prog_noise_c2_rel", "conductance_levels",
               "stuck_on_probability", "stuck_off_probability", "g_range_spread")
"""CrossbarConfig keys whose non-zero value makes a scenario a device scenario."""
BN_ONLY = ("bn_adapt", "bn_finetune")
"""Methods that change only batch-norm statistics or parameters."""


def device_columns(result: dict[str, Any]) -> dict[str, Any]:
    """Columns of one evaluation result's rows: its device settings (text), whether it is a device
    scenario, the stuck fraction over every seed's programming and the layers without a working device."""
    xbar = result.get("xbar_config", {}) or {}
    on = {k: xbar[k] for k in DEVICE_KEYS if _num(xbar.get(k)) and xbar[k] != 0}
    stats = (result.get("device_stats") or {}).get("per_seed", {}) or {}
    cells = stuck = tiles_all = 0
    for layers in stats.values():
        for c in layers.values():
            cells += int(c.get("cells", 0))
            stuck += int(c.get("stuck_on", 0)) + int(c.get("stuck_off", 0))
            tiles_all += int(c.get("tiles_all_stuck", 0))
    dead = (result.get("device_stats") or {}).get("layers_without_working_cells", []) or []
    preset = result.get("device_preset") or ""
    text = ", ".join([f"preset {preset}"] * bool(preset) + [f"{k}={v:g}" for k, v in on.items()])
    return {"device_scenario": bool(on), "device_settings": text,
            "stuck_probability": float(xbar.get("stuck_on_probability", 0.0) or 0.0)
            + float(xbar.get("stuck_off_probability", 0.0) or 0.0),
            "stuck_fraction": stuck / cells if cells else float("nan"), "tiles_all_stuck": tiles_all,
            "layers_without_working_cells": ";".join(dead)}


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _reference(rows: list[dict], circuit: str, model: str) -> dict[str, dict] | None:
    """Rows per method of the reference scenario of (circuit, model), or None."""
    cands: dict[str, dict[str, dict]] = {}
    for r in rows:
        if (r["circuit"], r["model"]) == (circuit, model) and not r.get("device_scenario") \
                and r["read_noise_sigma"] == 0.0 and r["t_drift_s"] == 0.0:
            cands.setdefault(r["scenario"], {})[r["method"]] = r
    if not cands:
        return None
    name = "device_ideal" if "device_ideal" in cands else sorted(cands)[0]
    return cands[name]


def _kind(r: dict) -> str:
    s = r.get("device_settings", "")
    if r.get("stuck_probability", 0.0) > 0:
        return "stuck-at faults"
    if "g_range_spread" in s:
        return "device spread"
    if "conductance_levels" in s:
        return "finite levels"
    return "programming noise"


def device_statements(rows: list[dict], fail_drop_points: float = 5.0) -> list[dict[str, Any]]:
    """Per device scenario: accuracy per method, the points it costs against the reference, the share
    of the loss each method recovers, PC2 of 'none' against the reference; per stuck-at sweep, where BN-only
    methods stop helping. Accuracies in percentage points."""
    out: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, str], dict[str, dict]] = {}
    for r in rows:
        if r.get("device_scenario"):
            groups.setdefault((r["circuit"], r["model"], r["scenario"]), {})[r["method"]] = r
    for (circuit, model, scenario), g in sorted(groups.items()):
        ref = _reference(rows, circuit, model)
        any_row = next(iter(g.values()))
        software = 100 * any_row["software_accuracy"]
        acc = {m: 100 * r["accuracy_mean"] for m, r in g.items()}
        ref_acc = {m: 100 * r["accuracy_mean"] for m, r in (ref or {}).items()}
        base = acc.get("none")
        entry: dict[str, Any] = {
            "circuit": circuit, "model": model, "scenario": scenario, "kind": _kind(any_row),
            "settings": any_row.get("device_settings", ""), "software": software, "accuracy": acc,
            "reference_scenario": next(iter(ref.values()))["scenario"] if ref else None,
            "reference_accuracy": ref_acc, "stuck_probability": any_row.get("stuck_probability", 0.0),
            "stuck_fraction": any_row.get("stuck_fraction", float("nan")),
            "tiles_all_stuck": any_row.get("tiles_all_stuck", 0),
            "layers_without_working_cells": [x for x in any_row.get("layers_without_working_cells", "").split(";") if x],
            "n_seeds": len(any_row.get("accuracy_per_seed", [])),
        }
        entry["device_cost_points"] = {m: ref_acc[m] - a for m, a in acc.items() if m in ref_acc}
        if base is not None:
            entry["recovered_points"] = {m: a - base for m, a in acc.items() if m != "none"}
            gap = software - base
            entry["gap_closed_share"] = {m: (a - base) / gap for m, a in acc.items() if m != "none"} if gap > 0 else {}
        pc2 = {m: r.get("pc2_mean") for m, r in g.items() if _num(r.get("pc2_mean"))}
        pc2_ref = {m: r.get("pc2_mean") for m, r in (ref or {}).items() if _num(r.get("pc2_mean"))}
        entry["pc2"], entry["pc2_reference"] = pc2, pc2_ref
        entry["text"] = _scenario_text(entry, fail_drop_points)
        out.append(entry)
    return out


def bn_limit(entries: list[dict[str, Any]], fail_drop_points: float) -> list[str]:
    """Per (circuit, model) stuck-at sweep: the lowest stuck probability at which every BN-only method
    stays more than ``fail_drop_points`` below software (where BN-only stops helping)."""
    lines = []
    sweeps: dict[tuple[str, str], list[dict]] = {}
    for e in entries:
        if e["kind"] == "stuck-at faults":
            sweeps.setdefault((e["circuit"], e["model"]), []).append(e)
    for (circuit, model), sweep in sorted(sweeps.items()):
        sweep.sort(key=lambda e: e["stuck_probability"])
        rates = ", ".join(f"{100 * e['stuck_probability']:g}%" for e in sweep)
        pc2 = [(e["stuck_probability"], e["pc2"].get("none")) for e in sweep if "none" in e["pc2"]]
        if pc2 and "none" in sweep[0]["pc2_reference"]:
            steps = " -> ".join([f"{sweep[0]['pc2_reference']['none']:.3f} (no fault)"]
                                + [f"{v:.3f} ({100 * p:g}%)" for p, v in pc2])
            rises = pc2[-1][1] > sweep[0]["pc2_reference"]["none"] + PC2_RISE
            what = ("the faults add scatter that no per-channel gain and offset undo, the part BN-only methods cannot "
                    "recover" if rises else "the faults leave the scatter as it was: what they do is a gain and offset")
            lines.append(f"- {circuit} / {model}, PC2 of the crossbar layers' outputs against software (none) over the "
                         f"stuck-at sweep: {steps}: {what}.")
        stop = None
        for e in sweep:
            bn = [e["accuracy"][m] for m in BN_ONLY if m in e["accuracy"]]
            if bn and e["software"] - max(bn) > fail_drop_points:
                stop = e
                break
        if stop is None:
            lines.append(f"- {circuit} / {model}, stuck-at sweep ({rates}): BN-only methods stay within "
                         f"{fail_drop_points:g} points of software at every rate.")
        else:
            best = max((m for m in BN_ONLY if m in stop["accuracy"]), key=lambda m: stop["accuracy"][m])
            lines.append(f"- {circuit} / {model}, stuck-at sweep ({rates}): BN-only stops helping at "
                         f"{100 * stop['stuck_probability']:g}% stuck devices: the best BN-only method ({best}, "
                         f"{stop['accuracy'][best]:.1f}%) stays {stop['software'] - stop['accuracy'][best]:.1f} "
                         f"points below software ({stop['software']:.1f}%), more than {fail_drop_points:g}.")
    return lines


NEAR_CHANCE_POINTS = 50.0
"""'none' this many points or more below the best reference method reads as 'near chance'."""
PC2_RISE = 0.02
"""A PC2 rise above this reads as scatter beyond a gain."""


def _scenario_text(e: dict[str, Any], fail_drop_points: float) -> str:
    acc, ref, parts = e["accuracy"], e["reference_accuracy"], []
    head = f"**{e['scenario']}** ({e['settings']}; {e['n_seeds']} seeds)"
    parts.append("accuracy " + ", ".join(f"{m} {a:.1f}%" for m, a in acc.items()) + f" (software {e['software']:.1f}%)")
    if e["device_cost_points"]:
        parts.append(f"the devices cost, against {e['reference_scenario']}: " + ", ".join(
            f"{m} {c:.1f} points ({ref[m]:.1f}% -> {acc[m]:.1f}%)" for m, c in e["device_cost_points"].items()))
    else:
        parts.append("no reference scenario without device effects")
    others = [v for m, v in ref.items() if m != "none"]
    if "none" in ref and "none" in acc and others and max(ref["none"], acc["none"]) < max(others) - NEAR_CHANCE_POINTS:
        parts.append("none is near chance with and without the devices (the array's parasitics already need BN), "
                     "so the devices' cost shows in the BN methods")
    if e.get("recovered_points"):
        parts.append("over none, " + ", ".join(
            f"{m} recovers {r:+.1f} points ({100 * e['gap_closed_share'].get(m, float('nan')):.0f}% of the gap to "
            "software)" for m, r in e["recovered_points"].items()))
    if e["stuck_probability"] > 0:
        parts.append(f"{100 * e['stuck_fraction']:.2f}% of devices stuck over the seeds' programmings, "
                     f"{e['tiles_all_stuck']} tiles with every device stuck")
    if e["layers_without_working_cells"]:
        parts.append("NO WORKING DEVICE in layer(s) " + ", ".join(e["layers_without_working_cells"]))
    if "none" in e["pc2"] and "none" in e["pc2_reference"]:
        a, b = e["pc2_reference"]["none"], e["pc2"]["none"]
        what = ("the device effect scatters the outputs beyond a gain (a part BN cannot undo)"
                if b > a + PC2_RISE else "the device effect is mostly a per-channel gain/offset (the part BN can undo)")
        parts.append(f"PC2 of none {a:.3f} -> {b:.3f}: {what}")
    return f"- {head}: " + "; ".join(parts) + "."


def markdown_lines(rows: list[dict], fail_drop_points: float = 5.0) -> list[str]:
    """The device section of results.md (empty without device scenarios)."""
    entries = device_statements(rows, fail_drop_points)
    if not entries:
        return []
    methods = sorted({m for e in entries for m in e["accuracy"]},
                     key=lambda m: ["none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain"].index(m)
                     if m in ("none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain") else 99)
    lines = ["", "Device scenarios (accuracy %, mean over seeds; loss against the scenario without device effects)",
             "", "| circuit | model | scenario | devices | stuck | software | reference none | "
             + " | ".join(methods) + " |", "|" + "---|" * (7 + len(methods))]
    for e in entries:
        stuck = f"{100 * e['stuck_fraction']:.2f}%" if e["stuck_probability"] > 0 else ""
        ref = e["reference_accuracy"].get("none")
        lines.append(f"| {e['circuit']} | {e['model']} | {e['scenario']} | {e['settings']} | {stuck} | "
                     f"{e['software']:.1f} | {'' if ref is None else f'{ref:.1f}'} | "
                     + " | ".join(f"{e['accuracy'][m]:.1f}" if m in e["accuracy"] else "" for m in methods) + " |")
    lines += ["", "Device statements", ""] + [e["text"] for e in entries] + bn_limit(entries, fail_drop_points)
    return lines


def summarize(paths: list[str | Path], fail_drop_points: float = 5.0) -> dict[str, Any]:
    """The statements of the result files (JSON): entries, the BN-only limit lines and the markdown."""
    from .report import load_results

    rows = load_results(paths)
    entries = device_statements(rows, fail_drop_points)
    return {"entries": entries, "bn_limit": bn_limit(entries, fail_drop_points),
            "markdown": "\n".join(markdown_lines(rows, fail_drop_points)),
            "inputs": [str(p) for p in paths], "fail_drop_points": fail_drop_points,
            "mean_stuck_fraction": statistics.fmean([e["stuck_fraction"] for e in entries if e["stuck_probability"] > 0])
            if any(e["stuck_probability"] > 0 for e in entries) else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dnn.report_device", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", type=Path, help="evaluation result JSON files")
    p.add_argument("--md", type=Path, help="write the device section (markdown) here")
    p.add_argument("--json", type=Path, help="write the statements (JSON) here")
    p.add_argument("--fail-drop-points", type=float, default=5.0,
                   help="BN-only 'stops helping' where it stays more than this many points below software")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = summarize(list(ns.inputs), ns.fail_drop_points)
    except ValueError as exc:
        print(f"report_device: {exc}", file=sys.stderr)
        return 2
    if ns.md:
        ns.md.write_text(out["markdown"] + "\n")
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2) + "\n")
    if not ns.md and not ns.json:
        print(out["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
