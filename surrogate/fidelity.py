"""Fidelity of a surrogate on held-out ngspice data, next to the ideal, analytic and ridge models.

Errors are column-current errors as fractions of the full-scale current ``i_fs = g_on * v_max *
rows`` (A), measured on the test split (conductance matrices never seen in training):

- ``rel_rms_fs``: RMS error / i_fs over all test samples and columns,
- ``rel_rms_signal``: RMS error / RMS of the ngspice currents,
- ``worst_abs_fs``: largest |error| / i_fs of any sample and column,
- ``per_column_rel_rms_fs``: RMS error / i_fs of every column, and the worst column,
- ``improvement_over_ideal``: the ideal model's ``rel_rms_fs`` divided by the model's.

A surrogate trained with ``design: auto`` adds ``selection``: the rule and its target
(``closed_form_target_x``), the candidates trained and those not trained (with why), the chosen design
and why, every candidate's ``scores`` (what the choice used: validation error and the ideal model's, on all
validation matrices and on the DNN-like ones, and the score, the worse of the two ratios), its training
time, and in ``metrics`` every candidate's errors on the validation split (``val``) and on the test split
(``test``, never seen by the choice).

The report is a json-able dict; :func:`plot` draws predicted-vs-ngspice scatter and per-column error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from surrogate.baselines import RidgeBaseline, analytic_a
from surrogate.data import Split, SplitDataset
from surrogate.models import SurrogateMVM, predict_a
from surrogate.train import Selection
from xbarchar.files import atomic_write_text, atomic_write_with

log = logging.getLogger(__name__)

TARGET_IMPROVEMENT = 20.0
"""Issue target: surrogate error at least this many times lower than the ideal model's."""
TARGET_REL_RMS_FS = 0.01
"""Issue target: surrogate RMS error at most this fraction of the full-scale current."""


def metrics(pred_a: np.ndarray, true_a: np.ndarray, full_scale_a: float) -> dict[str, Any]:
    """Error metrics of predictions ``pred_a`` vs ngspice ``true_a`` [n_samples, cols] (A)."""
    err = pred_a - true_a
    per_col = np.sqrt(np.mean(err ** 2, axis=0)) / full_scale_a
    rms = float(np.sqrt(np.mean(err ** 2)))
    return {
        "rel_rms_fs": rms / full_scale_a,
        "rel_rms_signal": rms / float(np.sqrt(np.mean(true_a ** 2))),
        "worst_abs_fs": float(np.max(np.abs(err))) / full_scale_a,
        "mean_error_fs": float(np.mean(err)) / full_scale_a,
        "per_column_rel_rms_fs": [float(x) for x in per_col],
        "worst_column": int(np.argmax(per_col)),
        "worst_column_rel_rms_fs": float(per_col.max()),
    }


def predictions(model: SurrogateMVM, splits: SplitDataset, ridge: bool = True) -> dict[str, np.ndarray]:
    """Column currents (A) on the test split from the surrogate and every reference model."""
    test = splits.test
    out = {
        "surrogate": predict_a(model, test.g_s, test.g_index, test.v_v),
        "ideal": test.i_ideal_a,
        "analytic": analytic_a(model.tile, test.g_s, test.g_index, test.v_v),
    }
    if ridge:
        out["ridge"] = RidgeBaseline(model.tile).fit(splits.train).predict_a(test.g_s, test.g_index, test.v_v)
    return out


def _on(model: SurrogateMVM, split: Split) -> np.ndarray:
    return predict_a(model, split.g_s, split.g_index, split.v_v)


def selection_report(selection: Selection, splits: SplitDataset, preds: dict[str, np.ndarray]) -> dict[str, Any]:
    """``design: auto``: the rule, the candidates in their order, the chosen design and why, and per
    candidate (``metrics``) its errors on the validation and the test split, its cost and its training
    history (``preds``: the test predictions of :func:`predictions`)."""
    full_scale_a = selection.results[selection.chosen].model.full_scale_a
    ideal_rms = metrics(preds["ideal"], splits.test.i_a, full_scale_a)["rel_rms_fs"]
    per_candidate = {}
    for design, result in selection.results.items():
        test_pred = preds["surrogate"] if design == selection.chosen else _on(result.model, splits.test)
        test = metrics(test_pred, splits.test.i_a, full_scale_a)
        per_candidate[design] = {
            "val": metrics(_on(result.model, splits.val), splits.val.i_a, full_scale_a),
            "test": test,
            "test_improvement_over_ideal": ideal_rms / max(test["rel_rms_fs"], 1e-300),
            "macs_per_vector": result.model.macs_per_vector(),
            "history": result.history,
        }
    summary = selection.to_dict()
    summary.pop("histories")  # in ``metrics``
    return {**summary, "metrics": per_candidate}


def evaluate(model: SurrogateMVM, splits: SplitDataset, ridge: bool = True, selection: Selection | None = None
             ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The fidelity report (json-able dict) and the predictions it was computed from; with the
    ``selection`` of ``design: auto`` (``model`` is its chosen candidate) also every candidate's."""
    test = splits.test
    if test.n_samples == 0:
        raise ValueError(f"{splits.path}: the test split is empty; no held-out data to measure fidelity on")
    fs = model.full_scale_a
    preds = predictions(model, splits, ridge)
    models = {name: metrics(p, test.i_a, fs) for name, p in preds.items()}
    ideal_rms = models["ideal"]["rel_rms_fs"]
    improvement = {name: ideal_rms / max(m["rel_rms_fs"], 1e-300) for name, m in models.items()}
    sur = models["surrogate"]
    report = {
        "circuit": splits.spec.name,
        "rows": splits.spec.rows,
        "cols": splits.spec.cols,
        "design": model.design,
        "macs_per_vector": model.macs_per_vector(),
        "full_scale_a": fs,
        "data_path": splits.path,
        "data_sha256": splits.sha256,
        "n_test_matrices": test.n_matrices,
        "n_test_samples": test.n_samples,
        "n_failed_samples": splits.n_failed_dropped,  # ngspice failures dropped from this data (dnn/report.py)
        "test_g_rows": [int(x) for x in test.g_rows],
        "models": models,
        "improvement_over_ideal": improvement,
        "target": {
            "min_improvement_over_ideal": TARGET_IMPROVEMENT,
            "max_rel_rms_fs": TARGET_REL_RMS_FS,
            "met": bool(improvement["surrogate"] >= TARGET_IMPROVEMENT and sur["rel_rms_fs"] <= TARGET_REL_RMS_FS),
        },
    }
    if selection is not None:
        report["selection"] = selection_report(selection, splits, preds)
        log.info("design auto: %s; test rms %s", report["selection"]["reason"],
                 ", ".join(f"{d} {m['test']['rel_rms_fs']:.3e}" for d, m in report["selection"]["metrics"].items()))
    log.info("fidelity on %d held-out matrices (%d samples): surrogate %.3e of full scale (%.0fx better than "
             "ideal %.3e; analytic %.3e%s)", test.n_matrices, test.n_samples, sur["rel_rms_fs"],
             improvement["surrogate"], ideal_rms, models["analytic"]["rel_rms_fs"],
             f"; ridge {models['ridge']['rel_rms_fs']:.3e}" if "ridge" in models else "")
    return report, preds


def write_json(report: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, json.dumps(report, indent=2, sort_keys=True) + "\n")


def plot(report: dict[str, Any], preds: dict[str, np.ndarray], true_a: np.ndarray, path: str | Path,
         max_points: int = 20000, seed: int = 0) -> None:
    """PNG: predicted vs ngspice column current (fractions of full scale) and RMS error per column."""
    from matplotlib.figure import Figure

    fs = report["full_scale_a"]
    fig = Figure(figsize=(11, 4.5), constrained_layout=True)
    ax_scatter, ax_col = fig.subplots(1, 2)
    flat_true = true_a.reshape(-1) / fs
    pick = np.random.default_rng(seed).permutation(len(flat_true))[:max_points]
    colors = {"surrogate": "C0", "ideal": "C3", "analytic": "C2", "ridge": "C1"}
    order = [n for n in ("ideal", "analytic", "ridge", "surrogate") if n in preds]  # surrogate drawn on top
    for name in order:
        pred = preds[name]
        m = report["models"][name]
        label = f"{name}: rms {m['rel_rms_fs']:.2e} FS"
        ax_scatter.scatter(flat_true[pick], pred.reshape(-1)[pick] / fs, s=2, alpha=0.4,
                           color=colors.get(name), label=label, rasterized=True)
        ax_col.semilogy(m["per_column_rel_rms_fs"], marker=".", color=colors.get(name), label=name)
    lim = [min(0.0, float(flat_true.min())), float(flat_true.max())]
    ax_scatter.plot(lim, lim, "k--", lw=0.8)
    ax_scatter.set_xlabel("ngspice column current / full scale")
    ax_scatter.set_ylabel("predicted column current / full scale")
    ax_scatter.set_title(f"{report['circuit']} {report['rows']}x{report['cols']}: held-out matrices")
    ax_scatter.legend(markerscale=4, fontsize=8)
    ax_col.set_xlabel("column")
    ax_col.set_ylabel("RMS error / full scale")
    ax_col.set_title(f"error per column (surrogate: {report['design']})")
    ax_col.legend(fontsize=8)
    atomic_write_with(path, lambda buffer: fig.savefig(buffer, format="png", dpi=120))
