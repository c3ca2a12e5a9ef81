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
from .settings import starting_method

log = logging.getLogger(__name__)

METHOD_ORDER = ["none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain"]
CSV_COLUMNS = ["circuit", "model", "scenario", "method", "accuracy_mean", "accuracy_std", "n_runs",
               "software_accuracy", "rows", "r_wire_ohm", "g_on_s", "adc_range", "read_noise_sigma", "t_drift_s", "drift_nu_mean",
               "device_preset", "trainable_params", "wall_s", "peak_mem_mb", "pc2_mean", "energy_per_inference_j",
               "latency_per_inference_s"]


@dataclass(frozen=True)
class ReportSettings:
    """Thresholds of the Paper-1 shape check (accuracy in percentage points) and the uncertainty every
    statement and warning carries (see :func:`seed_interval`)."""

    fail_drop_points: float = 5.0
    """A method 'fails' at a read-noise sigma where it is more than this far below software."""
    close_drop_points: float = 1.0
    """'Close to software': at most this far below it."""
    well_below_points: float = 10.0
    """'Well below software': at least this far below it."""
    energy_loss_points: float = 1.0
    """The energy statement names the array size that costs least energy within this many points of software."""
    confidence: float = 0.95
    """Two-sided confidence level of the Student-t interval over seeds of each statement's quantity."""
    min_half_width_points: float = 0.25
    """Floor of every interval's half-width, in accuracy points: about one test image of the digits
    test set (0.28 points), the size of change a CPU's different rounding makes to a result, and the
    only width a warning from a single seed has."""

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ReportSettings:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"report: unknown key(s) {unknown}; expected some of {sorted(cls.__dataclass_fields__)}")
        return cls(**d)

    def __post_init__(self) -> None:
        for key in ("fail_drop_points", "close_drop_points", "well_below_points", "energy_loss_points"):
            value = getattr(self, key)
            if not _is_real(value) or not 0 < value <= 100:
                raise ValueError(f"report.{key}: expected a number of percentage points in (0, 100], got {value!r}")
        if not _is_real(self.confidence) or not 0.5 <= self.confidence < 1:
            raise ValueError(f"report.confidence: expected a confidence level in [0.5, 1), got {self.confidence!r}")
        if not _is_real(self.min_half_width_points) or not 0 <= self.min_half_width_points <= 100:
            raise ValueError("report.min_half_width_points: expected a number of percentage points in [0, 100], "
                             f"got {self.min_half_width_points!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------- uncertainty over seeds
@dataclass(frozen=True)
class Interval:
    """A quantity over seeds: its mean and a confidence interval [low, high] (see :func:`seed_interval`)."""

    estimate: float
    low: float
    high: float
    n_seeds: int

    def side(self, threshold: float) -> int:
        """+1: the whole interval lies above ``threshold``; -1: below; 0: the threshold lies inside it
        (its ends included): the data cannot tell on which side the quantity is."""
        if self.low > threshold:
            return 1
        if self.high < threshold:
            return -1
        return 0

    def text(self, fmt: str = ".1f") -> str:
        def num(v: float) -> str:  # a bound that rounds to zero prints as 0.0, not -0.0
            out = f"{v:{fmt}}"
            return out[1:] if out.startswith("-") and float(out) == 0 else out

        return f"{num(self.estimate)} [{num(self.low)}, {num(self.high)}]"

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n_seeds": self.n_seeds}


def t_quantile(confidence: float, dof: int) -> float:
    """The two-sided Student-t critical value: P(|T| <= q) = ``confidence`` with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf((1 + confidence) / 2, dof))


def seed_interval(values: list[float], settings: ReportSettings, floor: float | None = None) -> Interval:
    """Mean of ``values`` (one per seed, e.g. paired differences in points) and its two-sided Student-t
    interval at ``settings.confidence``: mean +- t(n-1) s / sqrt(n), s the sample standard deviation over
    the n seeds. The half-width is at least ``floor`` (default ``settings.min_half_width_points``); with a
    single seed it is the floor alone (no spread over seeds is known)."""
    n = len(values)
    if n == 0:
        raise ValueError("seed_interval: no values")
    mean = math.fsum(values) / n
    floor = settings.min_half_width_points if floor is None else floor
    half = 0.0
    if n >= 2:
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        half = t_quantile(settings.confidence, n - 1) * sd / math.sqrt(n)
    half = max(half, floor)
    return Interval(mean, mean - half, mean + half, n)


def per_seed(r: dict) -> list[float]:
    """The accuracy of each seed of a result row (its mean alone when the file has no per-seed list)."""
    return list(r["accuracy_per_seed"]) or [r["accuracy_mean"]]


def paired_points(a: list[float], b: list[float]) -> list[float] | None:
    """Seed-by-seed differences a - b in points (same seed = same programming, noise draws and
    calibration images), or None when the two were not run over the same number of seeds."""
    if len(a) != len(b):
        return None
    return [100 * (x - y) for x, y in zip(a, b, strict=True)]


def _accuracy(value: Any, where: str) -> float:
    """An accuracy as a float; NaN and inf are kept (and make statements decline), anything that is not
    a number is an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _reestimates(result: dict, method: str) -> bool:
    """Whether `method` re-estimated the BN statistics at its end: its own settings block's
    ``reestimate_stats`` (lora, vera), bn_finetune's for the BN fine-tunes; true when not recorded."""
    block = method if method in ("lora", "vera") else "bn_finetune"
    return bool((result.get("evaluation", {}).get(block) or {}).get("reestimate_stats", True))


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
                    "start_method": str(m.get("start_method") or ""),
                    "base_method": str(m.get("method") or method), "rank": m.get("rank"),
                    "reestimate_stats": _reestimates(result, str(m.get("method") or method)),
                    "calibration_images": m.get("calibration_images"),
                    "start_accuracy_per_seed": [_accuracy(a, f"methods.{method}.start_accuracy_per_seed")
                                                for a in m.get("start_accuracy_per_seed") or []],
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
    """One statement of the shape check. `holds` is True (yes) or False (NO) when the data decide it;
    None when there is no data for it, it is declined (`declined` then says why the inputs are not to
    be trusted) or it is inconclusive (`inconclusive`: its threshold lies inside the uncertainty over
    seeds of a quantity it rests on)."""

    text: str
    holds: bool | None
    evidence: str
    declined: str = ""
    inconclusive: bool = False

    @property
    def mark(self) -> str:
        if self.declined:
            return "declined"
        if self.inconclusive:
            return "inconclusive"
        return "n/a" if self.holds is None else ("yes" if self.holds else "NO")

    def line(self) -> str:
        if self.declined:
            return f"- **declined**: {self.text} (declined: {self.declined})"
        return f"- **{self.mark}**: {self.text} ({self.evidence})"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "verdict": self.mark, "holds": self.holds, "evidence": self.evidence,
                "declined": self.declined}


def _statement(text: str, inputs: list[dict], fidelity: list[Fidelity],
               decide: Callable[[], tuple[bool | None, str]]) -> Statement:
    """A statement over `inputs`: declined when any of them is not to be trusted, else decided by
    `decide` (True/False, or None: inconclusive)."""
    reason = declined_reason(inputs, fidelity)
    if reason:
        return Statement(text, None, "", reason)
    holds, evidence = decide()
    return Statement(text, holds, evidence, inconclusive=holds is None)


def _verdict(sides: list[int], claim: int) -> bool | None:
    """A statement that claims every quantity lies on side `claim` (+1 above, -1 below its threshold):
    NO when one of them lies wholly on the other side, yes when all lie wholly on the claimed side,
    otherwise None (inconclusive)."""
    if any(side == -claim for side in sides):
        return False
    if all(side == claim for side in sides):
        return True
    return None


def _seeds_note(intervals: list[Interval], settings: ReportSettings) -> str:
    counts = sorted({i.n_seeds for i in intervals})
    seeds = "/".join(str(n) for n in counts)
    return (f"{100 * settings.confidence:g}% t-interval over {seeds} seed(s), half-width >= "
            f"{settings.min_half_width_points:g} points")


MIN_SEEDS = 2
"""Seeds a statement needs: one seed shows no spread, so no statement rests on one."""


def _few_seeds(counts: list[int]) -> str:
    """'' when every quantity has MIN_SEEDS seeds or more, else why the statement is inconclusive."""
    low = min(counts) if counts else 0
    if low < MIN_SEEDS:
        return (f"{low} seed(s): no spread over seeds to measure, so no verdict; evaluate with {MIN_SEEDS} or "
                "more seeds (evaluation.seeds)")
    return ""


def shape_check(rows: list[dict], settings: ReportSettings, fidelity: list[Fidelity] | None = None
                ) -> list[Statement]:
    """The four statements of Paper 1's result, each a Statement (text, holds?, evidence, declined,
    inconclusive). Each rests on per-seed quantities (drops below software, paired differences between
    methods of the same seed) and their interval over seeds (:func:`seed_interval`): a statement holds
    when every interval lies on its side of the threshold, does not when one lies wholly on the other
    side, and is inconclusive otherwise or with fewer than :data:`MIN_SEEDS` seeds."""
    s = settings
    fidelity = fidelity or []
    out: list[Statement] = []
    none = [r for r in rows if r["method"] == "none"]
    if none:
        def _well_below() -> tuple[bool | None, str]:
            drops = [seed_interval([100 * (r["software_accuracy"] - a) for a in per_seed(r)], s) for r in none]
            worst = min(drops, key=lambda i: (i.low, i.estimate))
            evidence = f"smallest drop {worst.text()} points; {_seeds_note(drops, s)}"
            few = _few_seeds([i.n_seeds for i in drops])
            if few:
                return None, f"{evidence}; {few}"
            return _verdict([i.side(s.well_below_points) for i in drops], +1), evidence

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
            out.append(_recovery(text, lossy, len(pairs), s))
    for adc in sorted({r["adc_range"] for r in para}):
        ft = [r for r in para if r["method"] == "bn_finetune" and r["adc_range"] == adc]
        if not ft:
            continue

        def _close(ft: list[dict] = ft) -> tuple[bool | None, str]:
            drops = {f"{r['circuit']} ({r['rows']}x{r['rows']})":
                     seed_interval([100 * (r["software_accuracy"] - a) for a in per_seed(r)], s) for r in ft}
            evidence = (", ".join(f"{k}: {v.text()}" for k, v in sorted(drops.items())) + "; "
                        + _seeds_note(list(drops.values()), s))
            few = _few_seeds([i.n_seeds for i in drops.values()])
            if few:
                return None, f"{evidence}; {few}"
            return _verdict([i.side(s.close_drop_points) for i in drops.values()], -1), evidence

        out.append(_statement(f"BN fine-tuning is close to software (<= {s.close_drop_points:g} points) for "
                              f"parasitics at every array size (ADC range {adc})", ft, fidelity, _close))
    for (circuit, model), sweep in sigma_sweep(rows).items():
        used = [r for r in sweep if r["method"] in ("bn_adapt", "bn_finetune")]
        if {r["method"] for r in used} != {"bn_adapt", "bn_finetune"}:
            continue

        def _fails_first_in_sweep(sweep: list[dict] = sweep, used: list[dict] = used) -> tuple[bool | None, str]:
            return _sigma_statement(sweep, used, s)

        out.append(_statement(f"{model} on {circuit}: BN adaptation fails ({s.fail_drop_points:g} points below "
                              "software, interpolated) at a lower read-noise sigma than BN fine-tuning, paired "
                              "seed by seed", used, fidelity, _fails_first_in_sweep))
    return out


def _recovery(text: str, lossy: list[tuple[dict, dict]], n_pairs: int, s: ReportSettings) -> Statement:
    """'Most of the gap recovered', decided per seed on the margin over half the gap, in points:
    (adapted - none) - (software - none) / 2 > 0, paired seed by seed."""
    margins, recovered = [], []
    for r, base in lossy:
        diff = paired_points(per_seed(r), per_seed(base))
        if diff is None:
            return Statement(text, None, f"{r['scenario']}: bn_adapt and none ran over different numbers of seeds",
                             inconclusive=True)
        gaps = [100 * (r["software_accuracy"] - a) for a in per_seed(base)]
        margins.append(seed_interval([d - g / 2 for d, g in zip(diff, gaps, strict=True)], s))
        recovered.append((r["accuracy_mean"] - base["accuracy_mean"]) / (r["software_accuracy"] - base["accuracy_mean"]))
    worst = min(margins, key=lambda i: (i.low, i.estimate))
    evidence = (f"least recovered {100 * min(recovered):.0f}%; margin over half the gap {worst.text()} points; "
                f"{_seeds_note(margins, s)}")
    if len(lossy) < n_pairs:
        evidence += f"; {n_pairs - len(lossy)} result(s) without loss left out"
    few = _few_seeds([i.n_seeds for i in margins])
    if few:
        return Statement(text, None, f"{evidence}; {few}", inconclusive=True)
    holds = _verdict([i.side(0.0) for i in margins], +1)
    return Statement(text, holds, evidence, inconclusive=holds is None)


def _sigma_statement(sweep: list[dict], used: list[dict], s: ReportSettings) -> tuple[bool | None, str]:
    """Adaptation fails first: the paired difference, seed by seed, of the failure sigmas (fine-tuning's
    minus adaptation's) must be above 0. 'never' (no failure within the sweep) counts as the sweep's
    largest sigma. The interval is the t-interval over seeds of that difference, widened to the
    difference the failure sigmas take when the line moves by ``min_half_width_points`` either way
    against the claim (adaptation's line lower, fine-tuning's higher) and for it."""
    a = failure_sigma(sweep, "bn_adapt", s.fail_drop_points)
    f = failure_sigma(sweep, "bn_finetune", s.fail_drop_points)
    evidence = f"adaptation fails at sigma {_fmt_sigma(a)}, fine-tuning at {_fmt_sigma(f)}"
    n_seeds = min(len(r["accuracy_per_seed"]) for r in used)
    if n_seeds < MIN_SEEDS:
        return None, f"{evidence}; {_few_seeds([n_seeds])}"
    top = max(r["read_noise_sigma"] for r in sweep)

    def sig(method: str, drop: float, k: int) -> float:
        x = failure_sigma(sweep, method, drop, k)
        return top if math.isinf(x) else x

    fl, thr = s.min_half_width_points, s.fail_drop_points
    diffs = [sig("bn_finetune", thr, k) - sig("bn_adapt", thr, k) for k in range(n_seeds)]
    against = [sig("bn_finetune", thr - fl, k) - sig("bn_adapt", thr + fl, k) for k in range(n_seeds)]
    for_it = [sig("bn_finetune", thr + fl, k) - sig("bn_adapt", thr - fl, k) for k in range(n_seeds)]
    spread = seed_interval(diffs, s, floor=0.0)
    interval = Interval(spread.estimate, min(spread.low, math.fsum(against) / n_seeds),
                        max(spread.high, math.fsum(for_it) / n_seeds), n_seeds)
    first = sum(_fails_first(failure_sigma(sweep, "bn_adapt", thr, k), failure_sigma(sweep, "bn_finetune", thr, k))
                for k in range(n_seeds))
    evidence += (f"; fine-tuning's failure sigma minus adaptation's, paired: {interval.text('.3g')} "
                 f"({100 * s.confidence:g}% t-interval over {n_seeds} seeds, widened by the sigma that "
                 f"{s.min_half_width_points:g} points move; 'never' = sigma {top:g}); seed by seed, adaptation "
                 f"fails first in {first} of {n_seeds}")
    return _verdict([interval.side(0.0)], +1), evidence


def _fails_first(sigma_a: float, sigma_b: float) -> bool:
    return sigma_a < sigma_b or (math.isinf(sigma_b) and not math.isinf(sigma_a))


# ----------------------------------------------------------------------------- warnings
UNDERTRAINED_CAUSE = ("the software model is likely undertrained (train it to convergence: models.NAME.patience, "
                      "dnn/train.py's stopping rule), or the mitigation regularises the network")
BELOW_START_CAUSE = ("the fine-tune likely overfits its calibration images or its schedule moves the parameters "
                     "too far (lr, epochs) through the noisy forward; without a safeguard that keeps the "
                     "starting state (e.g. early stopping on held-out calibration data) it can end below it")


@dataclass(frozen=True)
class ReportWarning:
    """A result that contradicts what a sound baseline allows, beyond its uncertainty over seeds."""

    kind: str
    """'above_software': a method's accuracy above the software baseline; 'below_start': a method that
    trains from a starting state ends below that state's accuracy."""
    circuit: str
    model: str
    scenario: str
    method: str
    reference: str
    """What the method is compared with: 'software' or the starting point's method name."""
    difference: Interval
    """The method's accuracy minus the reference's, points, seed by seed."""
    cause: str

    def line(self) -> str:
        where = f"{self.circuit} / {self.model} / {self.scenario}"
        if self.kind == "above_software":
            what = f"{self.method} is {self.difference.text()} points above software"
        else:
            what = (f"{self.method} ends {self.difference.text()} points relative to its starting point "
                    f"{self.reference}")
        seeds = f"{self.difference.n_seeds} seed(s)" + (": no spread over seeds, the floor alone"
                                                         if self.difference.n_seeds < MIN_SEEDS else "")
        return f"- **{self.kind}**: {where}: {what} ({seeds}). Likely cause: {self.cause}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "circuit": self.circuit, "model": self.model, "scenario": self.scenario,
                "method": self.method, "reference": self.reference,
                "difference_points": self.difference.to_dict(), "cause": self.cause}


def starting_point(r: dict) -> str:
    """The method whose state `r`'s method starts from ('' for none known): the one its result records
    (``methods.X.start_method``), or, in files written before results recorded it,
    ``dnn.settings.starting_method`` with the file's ``reestimate_stats`` for the method."""
    if r["start_method"]:
        return r["start_method"]
    return starting_method(r["base_method"], r["reestimate_stats"])


def _start_row(r: dict, start: str, rows: list[dict]) -> dict | None:
    """The result row of `r`'s starting point: the method named `start` in the same result, or, where a
    result holds variants of a method (``methods.X.method`` names the method, e.g. per calibration size),
    the variant of `start` with the same ``calibration_images``."""
    same = [x for x in rows if (x["circuit"], x["model"], x["scenario"]) == (r["circuit"], r["model"], r["scenario"])]
    named = [x for x in same if x["method"] == start]
    if named:
        return named[0]
    variants = [x for x in same if x["base_method"] == start and x["calibration_images"] == r["calibration_images"]]
    return variants[0] if len(variants) == 1 else None


def find_warnings(rows: list[dict], settings: ReportSettings) -> list[ReportWarning]:
    """Every result row whose accuracy, seed by seed, is (a) above software or (b) below its starting
    point (:func:`starting_point`, or the ``start_accuracy_per_seed`` its result records) with the whole
    interval (:func:`seed_interval`, floor included) beyond zero. Rows with a non-finite accuracy are left
    out (the statements resting on them are declined)."""
    out: list[ReportWarning] = []
    for r in rows:
        if not all(math.isfinite(v) for v in (r["software_accuracy"], r["accuracy_mean"], *r["accuracy_per_seed"])):
            continue
        where = (r["circuit"], r["model"], r["scenario"], r["method"])
        above = seed_interval([100 * (a - r["software_accuracy"]) for a in per_seed(r)], settings)
        if above.side(0.0) > 0:
            out.append(ReportWarning("above_software", *where, "software", above, UNDERTRAINED_CAUSE))
        start = starting_point(r)
        start_row = _start_row(r, start, rows) if start else None
        if r["start_accuracy_per_seed"]:
            start, start_accs = "", r["start_accuracy_per_seed"]
        elif start_row is not None:
            start, start_accs = start_row["method"], per_seed(start_row)
        else:
            continue
        diff = paired_points(per_seed(r), start_accs)
        if diff is None or not all(math.isfinite(d) for d in diff):
            continue
        below = seed_interval(diff, settings)
        if below.side(0.0) < 0:
            out.append(ReportWarning("below_start", *where, start or "recorded start", below, BELOW_START_CAUSE))
    return out


def warnings_lines(warnings: list[ReportWarning], settings: ReportSettings) -> list[str]:
    """Markdown lines of the warnings section."""
    lines = ["", "Warnings (a method above software, or a method that trains from a starting state ending below "
             f"it, beyond the {100 * settings.confidence:g}% t-interval over seeds, half-width >= "
             f"{settings.min_half_width_points:g} points; difference in points, seed by seed)", ""]
    lines += [w.line() for w in warnings] or ["- none"]
    return lines


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
    check = ["", "Shape of Paper 1's result (each quantity: mean over seeds [interval]; \"inconclusive\" when a "
             "threshold lies inside its interval or fewer than 2 seeds were run)", ""]
    check += [st.line() for st in shape_check(rows, settings, fidelity)]
    warn = warnings_lines(find_warnings(rows, settings), settings)
    energy = energy_lines(rows, settings.energy_loss_points)
    device = device_lines(rows, settings)
    rivals = _rival_lines(rows, settings)
    return "\n".join(lines + cost + pc2 + fail + fidelity_table(fidelity) + check + warn + energy + device
                     + rivals) + "\n"


def _rival_statements(rows: list[dict], settings: ReportSettings) -> list[dict[str, Any]]:
    """The light rivals' statements (``dnn.report_rivals.statements``); empty without a rival method."""
    from .report_rivals import from_report_rows, statements

    return statements(from_report_rows(rows), settings)


def _rival_lines(rows: list[dict], settings: ReportSettings) -> list[str]:
    from .report_rivals import statement_lines

    items = _rival_statements(rows, settings)
    return statement_lines(items, settings, "Light rivals of BN-only mitigation") if items else []


SUMMARY_KIND = "xbarchar.report_summary"
SUMMARY_FORMAT_VERSION = 1


def summary(rows: list[dict], settings: ReportSettings | None = None, fidelity: list[Fidelity] | None = None
            ) -> dict[str, Any]:
    """The statements and warnings of the report as a JSON-ready record (``--summary-json``)."""
    settings = settings or ReportSettings()
    return {"kind": SUMMARY_KIND, "format_version": SUMMARY_FORMAT_VERSION,
            "units": {"difference_points": "accuracy percentage points", "confidence": "fraction"},
            "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
            "statements": [st.to_dict() for st in shape_check(rows, settings, fidelity)],
            "warnings": [w.to_dict() for w in find_warnings(rows, settings)],
            "rival_statements": _rival_statements(rows, settings)}


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
                 fidelity_paths: list[str | Path] | None = None, summary_path: str | Path | None = None
                 ) -> list[dict]:
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
        (summary_path, lambda p: p.write_text(json.dumps(summary(rows, settings, fidelity), indent=2) + "\n")),
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
