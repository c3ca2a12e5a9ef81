"""The default surrogate setting (``design: auto``) against every candidate design, on every shipped circuit.

Usage::

    python bench/default_design.py --json bench/default_design.json

Per case (each circuit of ``data/circuits`` at a small size with the settings of ``config/circuits.yaml`` or
``config/nonlinear_gap.yaml``, plus a compressive tanh cell written to a temporary folder: a circuit the
project has never seen), real ngspice data through the library (``python -m spice simulate``):

- a training dataset of ``--n-conductance`` matrices x ``--n-vectors`` vectors from the workflow's default
  sampler ('mixed', half 'dnn_like', half 'uniform'), split by matrix as ``python -m surrogate train`` does;
- a DNN-like test file of ``--dnn-conductance`` matrices from the 'dnn_like' sampler (another seed), never
  seen by training or the choice.

Then the default, ``TrainParams()`` (no surrogate setting at all), is trained and timed; every candidate the
default did not train is trained alone with the same settings. Reported per candidate: RMS error / full
scale and x better than the ideal model on the held-out test matrices and on the DNN-like file, its
selection score on the validation matrices and its training wall time; per case the default's choice,
whether its error is within ``--tolerance`` of the best candidate's on both test sets, and its training
time relative to ``transfer`` (one torch thread; the same process, so the ratio is what it is on this
machine). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spice.cli import main as spice_main
from surrogate.data import load_splits, load_whole_as_test
from surrogate.models import predict_a
from surrogate.params import DESIGNS, TrainParams
from surrogate.train import selection_score, train

log = logging.getLogger("bench.default_design")

CIRCUITS = Path(__file__).resolve().parent.parent / "data" / "circuits"
LOW_R = {"r_driver_ohm": 100.0, "r_sense_ohm": 100.0}
TANH_CELL = """* Compressive cell outside the shipped set: I = g*vs*tanh(V/vs), slope g at 0 V, current limited to g*vs.
.subckt cell row col params: g=1e-5 vs=0.25
B1 row col I={g*vs*tanh(V(row,col)/vs)}
.ends cell
"""
CASES: dict[str, dict[str, Any]] = {
    # config/circuits.yaml presets at 24x24 and 16x16; the sinh array at the 0.45 V of a two-circuit run
    "resistive 24x24": {"preset": "paper1_64_w5", "netlist": "resistive.cir", "rows": 24, "cols": 24},
    "tia_sense 24x24": {"preset": "paper1_32_w5", "netlist": "tia_sense.cir", "rows": 24, "cols": 24},
    "memristor_sinh 24x24, 0.45 V": {"preset": "paper1_32_w5", "netlist": "memristor_sinh.cir", "rows": 24,
                                     "cols": 24, "v_read_max_v": 0.45},
    "one_t_one_r 16x16, gate 1.8 V": {"preset": "paper1_32_w5", "netlist": "one_t_one_r.cir", "rows": 16,
                                      "cols": 16, "v_gate_v": 1.8},
    # config/nonlinear_gap.yaml one_s_one_r_16
    "one_s_one_r 16x16, 1 V": {"preset": "paper1_32_w5", "netlist": "one_s_one_r.cir", "rows": 16, "cols": 16,
                               "v_read_max_v": 1.0, **LOW_R},
    "tanh cell (not shipped) 16x16, 0.5 V": {"preset": "paper1_32_w5", "netlist": "@tanh", "rows": 16, "cols": 16,
                                             "v_read_max_v": 0.5},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=list(CASES), default=None, help="repeatable; default all")
    p.add_argument("--n-conductance", type=int, default=24, help="training dataset: matrices (split 16/4/4 at 24)")
    p.add_argument("--n-vectors", type=int, default=128, help="input vectors per matrix")
    p.add_argument("--dnn-conductance", type=int, default=8, help="DNN-like test file: matrices")
    p.add_argument("--seed", type=int, default=7, help="sampling seed (the DNN-like file uses seed + 1000)")
    p.add_argument("--train-seed", type=int, default=TrainParams.seed, help="split, init and batch-order seed")
    p.add_argument("--tolerance", type=float, default=0.10, help="'within' the best candidate: error <= (1 + this) x best")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="bench/default_design.json")
    return p.parse_args(argv)


def simulate(folder: Path, name: str, circuit: dict[str, Any], sampling: dict[str, Any]) -> Path:
    out = folder / f"{name}.h5"
    rc = spice_main(["simulate", "--circuit-name", "bench", "--circuit", json.dumps(circuit),
                     "--sampling", json.dumps(sampling), "--out", str(out), "--quiet", "--no-progress"])
    if rc != 0:
        raise SystemExit(f"ngspice simulation of {name} failed (exit {rc})")
    return out


def errors(model, split, full_scale_a: float) -> dict[str, float]:
    pred = predict_a(model, split.g_s, split.g_index, split.v_v)
    rms = float(np.sqrt(np.mean((pred - split.i_a) ** 2))) / full_scale_a
    ideal = float(np.sqrt(np.mean((split.i_ideal_a - split.i_a) ** 2))) / full_scale_a
    return {"rms_fs": rms, "ideal_rms_fs": ideal, "x_better_than_ideal": ideal / rms}


def run_case(name: str, entry: dict[str, Any], folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    circuit = dict(entry)
    if circuit["netlist"] == "@tanh":
        path = folder / "tanh_cell.cir"
        path.write_text(TANH_CELL)
        circuit["netlist"] = str(path)
    else:
        circuit["netlist"] = str(CIRCUITS / circuit["netlist"])
    stem = "".join(c if c.isalnum() else "_" for c in name)
    t0 = time.perf_counter()
    data = simulate(folder, stem, circuit, {"sampler": "mixed", "mix_fraction": 0.5, "n_conductance": args.n_conductance,
                                            "n_vectors": args.n_vectors, "v_zero_fraction": 0.3, "seed": args.seed})
    dnn = simulate(folder, stem + "_dnn", circuit, {"sampler": "dnn_like", "n_conductance": args.dnn_conductance,
                                                    "n_vectors": args.n_vectors, "seed": args.seed + 1000})
    spice_s = time.perf_counter() - t0
    params = TrainParams(seed=args.train_seed)
    splits = load_splits(data, params.val_fraction, params.test_fraction, params.seed)
    dnn_test = load_whole_as_test(dnn).test
    log.info("%s: ngspice %.0f s; training the default (design %s)", name, spice_s, params.design)

    t0 = time.perf_counter()
    default = train(splits, params, progress=False)
    default_s = time.perf_counter() - t0
    sel = default.selection
    assert sel is not None
    models = {d: r.model for d, r in sel.results.items()}
    seconds = dict(sel.seconds or {})
    for design in DESIGNS:
        if design in models:
            continue
        log.info("%s: training %s alone", name, design)
        t0 = time.perf_counter()
        models[design] = train(splits, dataclasses.replace(params, design=design), progress=False).model
        seconds[design] = time.perf_counter() - t0
    fs = models[sel.chosen].full_scale_a
    candidates = {}
    for design in DESIGNS:
        candidates[design] = {
            "held_out": errors(models[design], splits.test, fs),
            "dnn_like_file": errors(models[design], dnn_test, fs),
            "selection_score": selection_score(models[design], splits),
            "train_seconds": round(seconds[design], 2),
            "trained_by_default": design in sel.results,
        }
    best = {key: min(c[key]["rms_fs"] for c in candidates.values()) for key in ("held_out", "dnn_like_file")}
    chosen = candidates[sel.chosen]
    within = {key: chosen[key]["rms_fs"] <= (1 + args.tolerance) * best[key] for key in best}
    row = {
        "circuit": circuit, "spice_seconds": round(spice_s, 1),
        "n_train_val_test_matrices": [splits.train.n_matrices, splits.val.n_matrices, splits.test.n_matrices],
        "n_dnn_like_val_matrices": chosen["selection_score"]["n_dnn_like_matrices"],
        "n_dnn_like_file_samples": int(dnn_test.n_samples),
        "default_choice": sel.chosen, "default_reason": sel.reason(), "not_trained": dict(sel.not_trained or {}),
        "default_train_seconds": round(default_s, 2),
        "default_time_over_transfer": default_s / seconds["transfer"],
        "default_over_best": {key: chosen[key]["rms_fs"] / best[key] for key in best},
        "within_tolerance": within, "candidates": candidates,
    }
    log.info("%s: default chose %s (%s); error / best: held-out %.3f, DNN-like %.3f; time / transfer %.2f",
             name, sel.chosen, ", ".join(f"{k} {'ok' if v else 'MISS'}" for k, v in within.items()),
             row["default_over_best"]["held_out"], row["default_over_best"]["dnn_like_file"],
             row["default_time_over_transfer"])
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("surrogate", "spice"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="default_design_") as tmp:
        for name in args.case or list(CASES):
            rows[name] = run_case(name, CASES[name], Path(tmp), args)
    out = {
        "command": "python bench/default_design.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "default_params": TrainParams().to_dict(), "tolerance": args.tolerance, "torch_threads": args.threads,
        "n_conductance": args.n_conductance, "n_vectors": args.n_vectors, "dnn_conductance": args.dnn_conductance,
        "seed": args.seed, "cases": rows,
        "summary": {
            "all_within_tolerance": all(all(r["within_tolerance"].values()) for r in rows.values()),
            "max_default_time_over_transfer": max(r["default_time_over_transfer"] for r in rows.values()),
        },
    }
    Path(args.json).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    log.info("wrote %s: %s", args.json, out["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
