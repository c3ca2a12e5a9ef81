"""Speed and accuracy of the exact non-linear tile solver (``spice.exact``) against ngspice.

Usage::

    python bench/bench_exact.py                      # sinh 32x32 and 64x64, 1T1R 16x16 (Paper-1 resistances)
    python bench/bench_exact.py --vectors 128 --tiles 2 --spice-vectors 8 --json bench/exact.json

Per case, in one process: the bind (per-tile line factorizations) and the solve of ``--tiles`` x
``--vectors`` random input vectors in [0, v_read_max_v] on uniform random conductances, as vectors/s
(tile-vectors per second), with the mean number of accelerated sweeps; then ngspice (``spice.ngspice.solve``,
one DC sweep) on ``--spice-vectors`` of those vectors of the first tile, and the largest column-current
difference relative to the largest |current| of that tile. Nothing is asserted.
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
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
