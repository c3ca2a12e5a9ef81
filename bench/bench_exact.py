"""Speed and accuracy of the exact non-linear tile solver (``spice.exact``) against ngspice.

Usage::

    python bench/bench_exact.py                      # sinh 32x32 and 64x64, 1T1R 16x16 (Paper-1 resistances)
    python bench/bench_exact.py --vectors 128 --tiles 2 --spice-vectors 8 --json bench/exact.json

Per case, in one process: the bind (per-tile line factorizations) and the solve of ``--tiles`` x
``--vectors`` random input vectors in [0, v_read_max_v] on uniform random conductances, as vectors/s
(tile-vectors per second), with the mean number of accelerated sweeps; then ngspice (``spice.ngspice.solve``,
one DC sweep) on ``--spice-vectors`` of those vectors of the first tile, and the largest column-current
difference relative to the largest |current| of that tile. Nothing is asserted.

``--compare`` (the 1S1R selector, 16x16, 100 ohm driver and sense, reads to 1 V)::

    python bench/bench_exact.py --compare --tiles 64 --vectors 64 --json bench/exact_speed.json \
        [--model results/nonlinear/models/digits_bncnn.pt --images 2]

solves the same inputs with the reference path (internal nodes solved to convergence at every cell
evaluation, eager sweeps: ``NewtonOptions(warm_internal=False, compile_min_cells=None)``) and the default
path (warm internal nodes, compiled sweeps), interleaved ``--rounds`` times in one process (the first
default round includes the one-time compile and is reported apart); with ``--model``, also a DNN forward
of ``--images`` test images through the exact tile model of each path. Prints the speed-up ratio, the
largest difference between the paths and each path's agreement with ngspice.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from spice import exact, ngspice
from spice.circuit import spec_from_config
from spice.resources import circuit_path
from xbarchar.files import atomic_write_text

CASES = {
    # label: (preset with the Paper-1 resistances, circuit file, rows = cols, extra spec keys)
    "sinh 32x32": ("paper1_32_w5", "memristor_sinh.cir", 32, {}),
    "sinh 64x64": ("paper1_64_w5", "memristor_sinh.cir", 64, {}),
    "1T1R 16x16": ("paper1_32_w5", "one_t_one_r.cir", 16, {"v_gate_v": 1.8}),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vectors", type=int, default=256, help="input vectors per tile (default 256)")
    p.add_argument("--tiles", type=int, default=4, help="tiles solved together (default 4)")
    p.add_argument("--spice-vectors", type=int, default=16, help="vectors checked against ngspice (default 16)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write every figure to this path")
    p.add_argument("--compare", action="store_true", help="reference path vs default path (see above)")
    p.add_argument("--rounds", type=int, default=2, help="--compare: interleaved rounds (default 2)")
    p.add_argument("--model", default="", help="--compare: a digits model file for the DNN-level comparison")
    p.add_argument("--images", type=int, default=2, help="--compare: test images of the DNN forward (default 2)")
    return p.parse_args(argv)


def run_case(label: str, args: argparse.Namespace) -> dict[str, Any]:
    preset, netlist, n, extra = CASES[label]
    spec = spec_from_config(label.replace(" ", "_"), {"preset": preset, "netlist": str(circuit_path(netlist)),
                                                      "rows": n, "cols": n, **extra})
    rng = np.random.default_rng(args.seed)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (args.tiles, n, n))
    v = rng.uniform(0.0, spec.v_read_max_v, (args.tiles, args.vectors, n))
    device = torch.device(args.device)
    g_t, v_t = torch.as_tensor(g, device=device), torch.as_tensor(v, device=device)
    t0 = time.perf_counter()
    solver = exact.ArraySolver(spec, exact.cell_model(spec), g_t)
    t1 = time.perf_counter()
    i_newton = solver.currents(v_t).cpu().numpy()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t2 = time.perf_counter()
    k = min(args.spice_vectors, args.vectors)
    i_spice, failed = ngspice.solve(spec, g[0], v[0, :k])
    t3 = time.perf_counter()
    rel = float(np.max(np.abs(i_newton[0, :k] - i_spice)) / np.max(np.abs(i_spice)))
    return {"rows": n, "cols": n, "netlist": netlist, "preset": preset, "tiles": args.tiles, "vectors": args.vectors,
            "bind_s": t1 - t0, "solve_s": t2 - t1, "vectors_per_s": args.tiles * args.vectors / (t2 - t1),
            "sweeps_mean": statistics.fmean(solver.iterations), "spice_vectors": k,
            "spice_vectors_per_s": k / (t3 - t2), "spice_failed": int(failed.sum()), "max_rel_error_vs_spice": rel}


SELECTOR_16 = {"preset": "paper1_32_w5", "netlist": "one_s_one_r.cir", "rows": 16, "cols": 16, "v_read_max_v": 1.0,
               "r_driver_ohm": 100.0, "r_sense_ohm": 100.0}
"""The 1S1R 16x16 circuit of ``config/nonlinear_gap.yaml`` (``one_s_one_r_16``)."""
PATHS = {"reference": exact.NewtonOptions(warm_internal=False, compile_min_cells=None), "default": exact.NewtonOptions()}


def _timed(fn) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def dnn_forward_seconds(spec, options: exact.NewtonOptions, model_path: str, images: int) -> tuple[float, Any]:
    """Seconds of one no-grad forward of ``images`` test images through the exact tile model with ``options``."""
    from dnn.config import CrossbarConfig
    from dnn.convert import convert_to_crossbar
    from dnn.datasets import load_dataset
    from dnn.mvm import SolverTileMVM
    from dnn.train import load_model

    model, meta = load_model(model_path)
    data = load_dataset(meta["dataset"]["name"], meta["dataset"].get("root"), meta["dataset"].get("seed", 0),
                        n_test=images)
    cell = exact.cell_model(spec)
    mvm = SolverTileMVM(spec.rows, spec.cols, spec.g_off_s, spec.g_on_s, spec.v_read_max_v,
                        solver_fn=lambda g: exact.ArraySolver(spec, cell, g, options))
    xm = convert_to_crossbar(model, CrossbarConfig(seed=0).replace(adc_range_fraction=0.25), mvm).eval()
    x = torch.stack([data.test[k][0] for k in range(images)])
    with torch.no_grad():
        return _timed(lambda: xm(x))[::-1]


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Reference vs default path on the same inputs, interleaved in one process."""
    spec = spec_from_config("one_s_one_r_16", {**SELECTOR_16, "netlist": str(circuit_path(SELECTOR_16["netlist"]))})
    cell = exact.cell_model(spec)
    rng = np.random.default_rng(args.seed)
    g = torch.as_tensor(rng.uniform(spec.g_off_s, spec.g_on_s, (args.tiles, 16, 16)))
    v_np = rng.uniform(0.0, spec.v_read_max_v, (args.tiles, args.vectors, 16))
    v_np[rng.random(v_np.shape) < 0.5] = 0.0  # post-ReLU inputs: about half the rows at 0 V
    v = torch.as_tensor(v_np)
    seconds: dict[str, list[float]] = {k: [] for k in PATHS}
    sweeps: dict[str, float] = {}
    out: dict[str, torch.Tensor] = {}
    for _ in range(args.rounds):
        for name, options in PATHS.items():
            solver = exact.ArraySolver(spec, cell, g, options)
            out[name], dt = _timed(lambda solver=solver: solver.currents(v))
            seconds[name].append(dt)
            sweeps[name] = statistics.fmean(solver.iterations)
    k = min(args.spice_vectors, args.vectors)
    i_spice, failed = ngspice.solve(spec, g[0].numpy(), v_np[0, :k])
    on = np.abs(v_np[0, :k]).max(1) > 0
    agree = {name: float(np.max(np.abs(i[0, :k].numpy() - i_spice)[on]) / np.max(np.abs(i_spice)))
             for name, i in out.items()}
    steady = {name: min(t[1:]) if len(t) > 1 else t[0] for name, t in seconds.items()}
    result = {"circuit": SELECTOR_16, "tiles": args.tiles, "vectors": args.vectors, "rounds": args.rounds,
              "seconds": seconds, "first_default_round_includes_compile": True, "sweeps_mean": sweeps,
              "speedup_steady": steady["reference"] / steady["default"],
              "speedup_first_round": seconds["reference"][0] / seconds["default"][0],
              "max_rel_difference_between_paths": float((out["default"] - out["reference"]).abs().max()
                                                        / out["reference"].abs().max()),
              "spice_vectors": k, "spice_failed": int(failed.sum()), "max_rel_error_vs_spice": agree}
    if args.model:
        dnn = {name: [] for name in PATHS}
        logits = {}
        for _ in range(args.rounds):
            for name, options in PATHS.items():
                dt, logits[name] = dnn_forward_seconds(spec, options, args.model, args.images)
                dnn[name].append(dt)
        result["dnn"] = {"model": args.model, "images": args.images, "seconds": dnn,
                         "speedup_steady": min(dnn["reference"]) / min(dnn["default"]),
                         "max_abs_logit_difference": float((logits["default"] - logits["reference"]).abs().max())}
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.compare:
        r = compare(args)
        print(f"1S1R 16x16, {args.tiles} tiles x {args.vectors} vectors, {args.threads} thread(s), load {load:.1f}: "
              f"reference {r['seconds']['reference']} s, default {r['seconds']['default']} s; speed-up "
              f"{r['speedup_steady']:.1f}x (first round, compile included: {r['speedup_first_round']:.1f}x); paths "
              f"differ by {r['max_rel_difference_between_paths']:.1e}; vs ngspice {r['max_rel_error_vs_spice']}")
        if "dnn" in r:
            print(f"DNN forward of {args.images} image(s): {r['dnn']['seconds']} s, speed-up {r['dnn']['speedup_steady']:.1f}x, "
                  f"logits differ by {r['dnn']['max_abs_logit_difference']:.1e}")
        if args.json:
            atomic_write_text(args.json, json.dumps({"settings": vars(args), "load_avg_1min": load,
                                                     "torch": torch.__version__, "compare": r}, indent=2) + "\n")
        return 0
    results = {label: run_case(label, args) for label in (args.case or list(CASES))}
    print(f"exact non-linear solver, torch {torch.__version__}, {args.threads} thread(s), {args.device}, "
          f"load {load:.1f}; {args.tiles} tiles x {args.vectors} vectors, uniform G and V")
    print("| case | bind | solve | vectors/s | sweeps | ngspice vectors/s | max rel. error vs ngspice |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['bind_s']:.3f} s | {r['solve_s']:.2f} s | {r['vectors_per_s']:.0f} | "
              f"{r['sweeps_mean']:.1f} | {r['spice_vectors_per_s']:.0f} | {r['max_rel_error_vs_spice']:.1e} |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"settings": vars(args), "load_avg_1min": load, "cases": results},
                                                indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
