"""Device-model statements of the report: per device scenario, what the devices cost and how much each
mitigation method recovers, where BN-only methods stop helping, and what the PC2 diagnostic shows.

``dnn.report`` calls :func:`device_columns` for every evaluation result (the row's device settings and
fault counts) and appends :func:`markdown_lines` to results.md. A *device scenario* is one whose
crossbar settings turn on a device-model step (programming noise, finite levels, stuck-at faults,
device-to-device spread); its *reference* is a scenario of the same circuit and model with no device
step, no read noise and no drift (``device_ideal`` in config/device.yaml, else the first such scenario by
name). Every difference a statement gives (the devices' cost, what a method recovers, the best BN-only
method's distance to software) carries its interval over seeds (``dnn.report.seed_interval``: the
Student-t interval of the per-seed values at ``ReportSettings.confidence``, half-width at least
``min_half_width_points``), and "BN-only stops helping" is decided on that interval: a rate whose interval
contains the threshold makes the statement inconclusive, as does a rate with fewer than
``dnn.report.MIN_SEEDS`` seeds. Run on result files directly::

    python -m dnn.report_device results/eval/paper1_64/digits_bncnn/*.json --md device.md --json device.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # dnn.report imports this module: its names are imported where they are used
    from .report import Interval, ReportSettings

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


def device_statements(rows: list[dict], settings: ReportSettings) -> list[dict[str, Any]]:
    """Per device scenario: accuracy per method, the points it costs against the reference, the share
    of the loss each method recovers, PC2 of 'none' against the reference. Accuracies in percentage points.

    Each difference also carries its interval over seeds (``Interval.to_dict()``, see
    ``dnn.report.seed_interval``), from the per-seed differences paired seed by seed (seed k of two
    results: the same seed, the same calibration images and draws): ``device_cost_interval_points``
    (reference - scenario, per method), ``recovered_interval_points`` (method - none) and
    ``bn_only_gap_points`` (software - the best BN-only method by mean: its method and interval). A pair
    whose results ran over different numbers of seeds has no interval (None): its mean alone is given."""
    from .report import paired_points, per_seed, seed_interval

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
        seeds = {m: per_seed(r) for m, r in g.items()}
        ref_seeds = {m: per_seed(r) for m, r in (ref or {}).items()}
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
            "accuracy_per_seed": {m: [100 * a for a in v] for m, v in seeds.items()},
            "reference_accuracy_per_seed": {m: [100 * a for a in v] for m, v in ref_seeds.items()},
        }

        def paired(a: list[float], b: list[float]) -> dict[str, Any] | None:
            diff = paired_points(a, b)
            return None if diff is None else seed_interval(diff, settings).to_dict()

        entry["device_cost_points"] = {m: ref_acc[m] - a for m, a in acc.items() if m in ref_acc}
        entry["device_cost_interval_points"] = {m: paired(ref_seeds[m], seeds[m]) for m in acc if m in ref_acc}
        if base is not None:
            entry["recovered_points"] = {m: a - base for m, a in acc.items() if m != "none"}
            entry["recovered_interval_points"] = {m: paired(seeds[m], seeds["none"]) for m in acc if m != "none"}
            gap = software - base
            entry["gap_closed_share"] = {m: (a - base) / gap for m, a in acc.items() if m != "none"} if gap > 0 else {}
        entry["bn_only_gap_points"] = _bn_only_gap(entry, settings)
        pc2 = {m: r.get("pc2_mean") for m, r in g.items() if _num(r.get("pc2_mean"))}
        pc2_ref = {m: r.get("pc2_mean") for m, r in (ref or {}).items() if _num(r.get("pc2_mean"))}
        entry["pc2"], entry["pc2_reference"] = pc2, pc2_ref
        entry["text"] = _scenario_text(entry, settings)
        out.append(entry)
    return out


def _bn_only_gap(e: dict[str, Any], settings: ReportSettings) -> dict[str, Any] | None:
    """Software minus the best BN-only method of entry ``e`` (best by mean), per seed in points: the
    method and the interval over seeds (None without a BN-only method)."""
    from .report import seed_interval

    bn = [m for m in BN_ONLY if m in e["accuracy"]]
    if not bn:
        return None
    best = max(bn, key=lambda m: e["accuracy"][m])
    return {"method": best, "interval": seed_interval([e["software"] - a for a in e["accuracy_per_seed"][best]],
                                                      settings).to_dict()}


def _interval(d: dict[str, Any]) -> Interval:
    from .report import Interval

    return Interval(**d)


def bn_limit_decisions(entries: list[dict[str, Any]], settings: ReportSettings) -> list[dict[str, Any]]:
    """Per (circuit, model) stuck-at sweep, where BN-only methods stop helping, decided on the interval
    over seeds of (software - the best BN-only method), in points, rate by rate from the lowest: the
    first rate whose interval lies wholly above ``settings.fail_drop_points`` is where BN-only stops
    helping (``verdict`` 'stops helping'); a rate before it whose interval contains the threshold, that
    has fewer than ``MIN_SEEDS`` seeds or a non-finite accuracy makes the sweep 'inconclusive' at that rate
    (``reason`` says why); 'within' when every rate's interval lies wholly below the threshold. Each
    decision lists the rates it looked at (``steps``: stuck probability, method, interval) and its
    markdown ``line``."""
    from .report import _few_seeds, _seeds_note

    thr = settings.fail_drop_points
    sweeps: dict[tuple[str, str], list[dict]] = {}
    for e in entries:
        if e["kind"] == "stuck-at faults":
            sweeps.setdefault((e["circuit"], e["model"]), []).append(e)
    out = []
    for (circuit, model), sweep in sorted(sweeps.items()):
        sweep.sort(key=lambda e: e["stuck_probability"])
        rates = ", ".join(f"{100 * e['stuck_probability']:g}%" for e in sweep)
        head = f"- {circuit} / {model}, stuck-at sweep ({rates}): "
        steps: list[dict[str, Any]] = []
        verdict, at, reason = "within", None, ""
        for e in sweep:
            gap = _bn_only_gap(e, settings)  # with these settings, whatever the entry was made with
            if gap is None:
                continue
            iv = _interval(gap["interval"])
            steps.append({"stuck_probability": e["stuck_probability"], "method": gap["method"],
                          "accuracy": e["accuracy"][gap["method"]], "software": e["software"],
                          "interval": gap["interval"]})
            few = _few_seeds([iv.n_seeds])
            if not all(math.isfinite(x) for x in (iv.low, iv.high)):
                verdict, at, reason = "inconclusive", e, "a non-finite accuracy"
            elif few:
                verdict, at, reason = "inconclusive", e, few
            elif iv.side(thr) > 0:
                verdict, at = "stops helping", e
            elif iv.side(thr) == 0:
                verdict, at, reason = "inconclusive", e, f"the interval contains the {thr:g}-point threshold"
            else:
                continue
            break
        decision: dict[str, Any] = {"circuit": circuit, "model": model, "verdict": verdict,
                                    "stuck_probability": None if at is None else at["stuck_probability"],
                                    "reason": reason, "fail_drop_points": thr, "steps": steps}
        if not steps:
            decision["verdict"] = "n/a"
            decision["line"] = head + "no BN-only method was evaluated."
            out.append(decision)
            continue
        ivs = [_interval(s["interval"]) for s in steps]
        note = _seeds_note(ivs, settings)
        listed = ", ".join(f"{100 * s['stuck_probability']:g}% {iv.text()}" for s, iv in zip(steps, ivs, strict=True))
        if verdict == "within":
            decision["line"] = (head + f"BN-only methods stay within {thr:g} points of software at every rate (software "
                                f"minus the best BN-only method, points: {listed}; {note}).")
        else:
            last, iv = steps[-1], ivs[-1]
            earlier = ", ".join(f"{100 * s['stuck_probability']:g}% {v.text()}" for s, v in zip(steps[:-1], ivs[:-1],
                                                                                                   strict=True))
            below = f"; below that rate within {thr:g} points ({earlier})" if earlier else ""
            what = (f"the best BN-only method ({last['method']}, {last['accuracy']:.1f}%) is {iv.text()} points "
                    f"below software ({last['software']:.1f}%)")
            rate = f"{100 * last['stuck_probability']:g}% stuck devices"
            if verdict == "stops helping":
                decision["line"] = (head + f"BN-only stops helping at {rate}: {what}, wholly more than {thr:g}"
                                    f"{below} ({note}).")
            else:
                decision["line"] = head + f"inconclusive at {rate}: {what}: {reason}{below} ({note})."
        out.append(decision)
    return out


def bn_limit(entries: list[dict[str, Any]], settings: ReportSettings) -> list[str]:
    """Per (circuit, model) stuck-at sweep: the PC2 of 'none' over the sweep, and where BN-only methods
    stop helping (:func:`bn_limit_decisions`), as markdown lines."""
    lines = []
    decisions = {(d["circuit"], d["model"]): d for d in bn_limit_decisions(entries, settings)}
    sweeps: dict[tuple[str, str], list[dict]] = {}
    for e in entries:
        if e["kind"] == "stuck-at faults":
            sweeps.setdefault((e["circuit"], e["model"]), []).append(e)
    for (circuit, model), sweep in sorted(sweeps.items()):
        sweep.sort(key=lambda e: e["stuck_probability"])
        pc2 = [(e["stuck_probability"], e["pc2"].get("none")) for e in sweep if "none" in e["pc2"]]
        if pc2 and "none" in sweep[0]["pc2_reference"]:
            steps = " -> ".join([f"{sweep[0]['pc2_reference']['none']:.3f} (no fault)"]
                                + [f"{v:.3f} ({100 * p:g}%)" for p, v in pc2])
            rises = pc2[-1][1] > sweep[0]["pc2_reference"]["none"] + PC2_RISE
            what = ("the faults add scatter that no per-channel gain and offset undo, the part BN-only methods cannot "
                    "recover" if rises else "the faults leave the scatter as it was: what they do is a gain and offset")
            lines.append(f"- {circuit} / {model}, PC2 of the crossbar layers' outputs against software (none) over the "
                         f"stuck-at sweep: {steps}: {what}.")
        lines.append(decisions[(circuit, model)]["line"])
    return lines


NEAR_CHANCE_POINTS = 50.0
"""'none' this many points or more below the best reference method reads as 'near chance'."""
PC2_RISE = 0.02
"""A PC2 rise above this reads as scatter beyond a gain."""


def _difference_text(d: dict[str, Any] | None, mean: float, n_a: int, n_b: int, fmt: str = ".1f") -> str:
    """A difference as its interval over seeds, or its mean alone where the two results ran over
    different numbers of seeds (no pairing)."""
    if d is None:
        return f"{mean:{fmt}} (mean only: {n_a} and {n_b} seeds cannot be paired)"
    return _interval(d).text(fmt)


def _scenario_text(e: dict[str, Any], settings: ReportSettings) -> str:
    from .report import MIN_SEEDS, _seeds_note

    acc, ref, parts = e["accuracy"], e["reference_accuracy"], []
    seeds, ref_seeds = e["accuracy_per_seed"], e["reference_accuracy_per_seed"]
    head = f"**{e['scenario']}** ({e['settings']}; {e['n_seeds']} seeds)"
    parts.append("accuracy " + ", ".join(f"{m} {a:.1f}%" for m, a in acc.items()) + f" (software {e['software']:.1f}%)")
    if e["device_cost_points"]:
        cost = e["device_cost_interval_points"]
        parts.append(f"the devices cost, against {e['reference_scenario']}: " + ", ".join(
            f"{m} {_difference_text(cost[m], c, len(ref_seeds[m]), len(seeds[m]))} points "
            f"({ref[m]:.1f}% -> {acc[m]:.1f}%)" for m, c in e["device_cost_points"].items()))
    else:
        parts.append("no reference scenario without device effects")
    others = [v for m, v in ref.items() if m != "none"]
    if "none" in ref and "none" in acc and others and max(ref["none"], acc["none"]) < max(others) - NEAR_CHANCE_POINTS:
        parts.append("none is near chance with and without the devices (the array's parasitics already need BN), "
                     "so the devices' cost shows in the BN methods")
    if e.get("recovered_points"):
        rec = e["recovered_interval_points"]
        parts.append("over none, " + ", ".join(
            f"{m} recovers {_difference_text(rec[m], r, len(seeds[m]), len(seeds['none']), '+.1f')} points "
            f"({100 * e['gap_closed_share'].get(m, float('nan')):.0f}% of the gap to software)"
            for m, r in e["recovered_points"].items()))
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
    ivs = [_interval(d) for d in [*e["device_cost_interval_points"].values(),
                                  *e.get("recovered_interval_points", {}).values()] if d is not None]
    if ivs:
        few = ": no spread over seeds, the floor alone" if min(i.n_seeds for i in ivs) < MIN_SEEDS else ""
        parts.append(f"differences paired seed by seed, {_seeds_note(ivs, settings)}{few}")
    return f"- {head}: " + "; ".join(parts) + "."


METHOD_COLUMNS = ("none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain")
"""Column order of the device table (other methods follow)."""


def markdown_lines(rows: list[dict], settings: ReportSettings) -> list[str]:
    """The device section of results.md (empty without device scenarios)."""
    from .report import MIN_SEEDS

    entries = device_statements(rows, settings)
    if not entries:
        return []
    methods = sorted({m for e in entries for m in e["accuracy"]},
                     key=lambda m: METHOD_COLUMNS.index(m) if m in METHOD_COLUMNS else 99)
    lines = ["", "Device scenarios (accuracy %, mean over seeds; loss against the scenario without device effects)",
             "", "| circuit | model | scenario | devices | stuck | software | reference none | "
             + " | ".join(methods) + " |", "|" + "---|" * (7 + len(methods))]
    for e in entries:
        stuck = f"{100 * e['stuck_fraction']:.2f}%" if e["stuck_probability"] > 0 else ""
        ref = e["reference_accuracy"].get("none")
        lines.append(f"| {e['circuit']} | {e['model']} | {e['scenario']} | {e['settings']} | {stuck} | "
                     f"{e['software']:.1f} | {'' if ref is None else f'{ref:.1f}'} | "
                     + " | ".join(f"{e['accuracy'][m]:.1f}" if m in e["accuracy"] else "" for m in methods) + " |")
    lines += ["", f"Device statements (each difference in points: mean over seeds [its "
              f"{100 * settings.confidence:g}% t-interval over seeds, half-width >= "
              f"{settings.min_half_width_points:g} points]; \"inconclusive\" where the threshold lies inside an "
              f"interval or fewer than {MIN_SEEDS} seeds were run)", ""]
    lines += [e["text"] for e in entries] + bn_limit(entries, settings)
    return lines


def summarize(paths: list[str | Path], settings: ReportSettings) -> dict[str, Any]:
    """The statements of the result files (JSON): entries, the BN-only limit lines and decisions, the
    markdown and the settings used."""
    from .report import load_results

    rows = load_results(paths)
    entries = device_statements(rows, settings)
    return {"entries": entries, "bn_limit": bn_limit(entries, settings),
            "bn_limit_decisions": bn_limit_decisions(entries, settings),
            "markdown": "\n".join(markdown_lines(rows, settings)),
            "inputs": [str(p) for p in paths], "fail_drop_points": settings.fail_drop_points,
            "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
            "mean_stuck_fraction": statistics.fmean([e["stuck_fraction"] for e in entries if e["stuck_probability"] > 0])
            if any(e["stuck_probability"] > 0 for e in entries) else None}


def main(argv: list[str] | None = None) -> int:
    from xbarchar import cli as xcli

    from .report import ReportSettings

    p = argparse.ArgumentParser(prog="python -m dnn.report_device", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", type=Path, help="evaluation result JSON files")
    p.add_argument("--md", type=Path, help="write the device section (markdown) here")
    p.add_argument("--json", type=Path, help="write the statements (JSON) here")
    p.add_argument("--settings-json", default=None,
                   help="the report's settings (dnn/report.py ReportSettings: thresholds, confidence, interval "
                        "floor) as JSON object or file")
    p.add_argument("--fail-drop-points", type=float, default=None,
                   help="BN-only 'stops helping' where software minus it lies wholly above this many points "
                        "(overrides the settings' fail_drop_points)")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = ReportSettings.from_dict(xcli.load_json_object(ns.settings_json, "--settings-json"))
        if ns.fail_drop_points is not None:
            settings = dataclasses.replace(settings, fail_drop_points=ns.fail_drop_points)
        out = summarize(list(ns.inputs), settings)
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
