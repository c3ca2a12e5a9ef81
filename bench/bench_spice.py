"""SPICE-stage throughput: naive PySpice ``.op`` per vector vs batched sweep vs superposition vs nodal.

Usage::

    python bench/bench_spice.py            # 32, 64, 128 (a few minutes on 2 cores)
    python bench/bench_spice.py --quick    # fewer vectors, <= 60 s
    python bench/bench_spice.py --json bench/spice.json

All figures of one size come from one run on one machine; ratios are against the naive PySpice
``.op`` per vector (a PySpice ``Circuit`` built and simulated for every input vector).
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

from spice import ngspice, nodal
from spice.circuit import spec_from_config
from spice.simulate import superposition

VECTORS_PER_G = 1024  # input vectors evaluated per conductance matrix by superposition/nodal
N_NEWTON = 4  # non-linear sweep vectors checked against the nodal Newton solve


def naive_pyspice_op(spec, g, v_row) -> np.ndarray:
    """The textbook route: a PySpice Circuit object per vector, simulated with ``.op``."""
    from PySpice.Spice.Netlist import Circuit

    ngspice.info()  # library path and logging set up once
    c = Circuit("naive")
    c.raw_spice = spec.netlist_text
    for r in range(spec.rows):
        c.V(f"in{r}", f"in{r}", c.gnd, float(v_row[r]))
        c.R(f"drv{r}", f"in{r}", f"a{r}_0x", spec.r_driver_ohm)
        c.R(f"wr{r}_0", f"a{r}_0x", f"a{r}_0", spec.r_wire_row_ohm)
        for col in range(1, spec.cols):
            c.R(f"wr{r}_{col}", f"a{r}_{col - 1}", f"a{r}_{col}", spec.r_wire_row_ohm)
        for col in range(spec.cols):
            c.X(f"c{r}_{col}", "cell", f"a{r}_{col}", f"b{r}_{col}", g=float(g[r, col]))
    for col in range(spec.cols):
        for r in range(spec.rows - 1):
            c.R(f"wc{r}_{col}", f"b{r}_{col}", f"b{r + 1}_{col}", spec.r_wire_col_ohm)
        c.R(f"wc{spec.rows - 1}_{col}", f"b{spec.rows - 1}_{col}", f"s{col}", spec.r_wire_col_ohm)
        c.V(f"m{col}", f"s{col}", f"t{col}", 0)
        c.R(f"sense{col}", f"t{col}", c.gnd, spec.r_sense_ohm)
    sim = c.simulator(simulator="ngspice-shared")
    if ngspice.info().has_klu:
        sim.options("klu")
    analysis = sim.operating_point()
    return np.array([float(analysis.branches[f"vm{col}"][0]) for col in range(spec.cols)])


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def bench_size(n: int, quick: bool) -> dict:
    spec = spec_from_config(f"paper1_{n}", {"preset": "paper1_64_w5", "rows": n, "cols": n})
    rng = np.random.default_rng(n)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (n, n))
    n_naive = 1 if (quick or n >= 128) else 3
    n_sweep = {32: 64, 64: 32, 128: 8}[n] if quick else {32: 256, 64: 128, 128: 32}[n]
    v = rng.uniform(0, spec.v_read_max_v, (max(n_sweep, 256, VECTORS_PER_G), n))
    res: dict = {"size": n}

    t_naive, i_naive = timed(lambda: [naive_pyspice_op(spec, g, v[k]) for k in range(n_naive)])
    exact = nodal.column_currents(spec, g, v[:n_naive])
    res["naive_rel_err_vs_nodal"] = float(np.max(np.abs(np.array(i_naive) - exact)) / np.max(np.abs(exact)))
    res["naive_vectors_per_s"] = n_naive / t_naive

    t_sweep, (i_sweep, _) = timed(ngspice.solve, spec, g, v[:n_sweep])
    res["sweep_vectors_per_s"] = n_sweep / t_sweep
    res["sweep_rel_err_vs_nodal"] = float(np.max(np.abs(i_sweep - nodal.column_currents(spec, g, v[:n_sweep])))
                                          / np.max(np.abs(i_sweep)))

    check = rng.uniform(0, spec.v_read_max_v, (2, n))
    t_sup, result = timed(superposition, spec, g, check, 1e-6)
    assert result is not None
    t_mat, _ = timed(lambda: result[1] + v[:VECTORS_PER_G] @ result[0])
    res["superposition_g_per_s"] = 1.0 / t_sup
    res["superposition_vectors_per_s"] = VECTORS_PER_G / (t_sup + t_mat)

    t_nod, tm = timed(nodal.transfer_matrix, spec, g)
    t_mat, _ = timed(lambda: v[:VECTORS_PER_G] @ tm)
    res["nodal_g_per_s"] = 1.0 / t_nod
    res["nodal_vectors_per_s"] = VECTORS_PER_G / (t_nod + t_mat)

    nl = spec_from_config("sinh", {"preset": "paper1_64_w5", "rows": n, "cols": n,
                                   "netlist": "data/circuits/memristor_sinh.cir"})
    # As many vectors per ngspice run as a pipeline shard solves per matrix at this size (the one-off
    # netlist load, ordering and first operating point are shared by every vector of the run).
    n_nl = {32: 64, 64: 32, 128: 8}[n] if quick else {32: 256, 64: 128, 128: 64}[n]
    t_nl, (i_nl, _) = timed(ngspice.solve, nl, g, v[:n_nl])
    res["nonlinear_vectors_per_run"] = n_nl
    res["nonlinear_sweep_index"] = "temperature" if nl.temperature_independent else "V(idx)"
    res["nonlinear_sweep_s_per_vector"] = t_nl / n_nl
    newton = nodal.column_currents_sinh(nl, g, v[:N_NEWTON], b_per_v=5.0)  # untimed accuracy check
    res["nonlinear_rel_err_vs_newton"] = float(np.max(np.abs(i_nl[:N_NEWTON] - newton)) / np.max(np.abs(newton)))
    for key in ("sweep", "superposition", "nodal"):
        res[f"{key}_speedup_vs_naive"] = res[f"{key}_vectors_per_s"] / res["naive_vectors_per_s"]
    logging.info("size %d done: %s", n, {k: v if isinstance(v, str) else float(f"{v:.4g}") for k, v in res.items()})
    return res


def table(results: list[dict]) -> str:
    lines = [
        "| array | naive `.op` vec/s | sweep vec/s (x naive) | superposition vec/s (x naive) | "
        "superposition G/s | nodal vec/s (x naive) | non-linear sweep s/vector | non-linear error vs Newton |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['size']}x{r['size']} | {r['naive_vectors_per_s']:.2f} | {r['sweep_vectors_per_s']:.1f} "
            f"({r['sweep_speedup_vs_naive']:.0f}x) | {r['superposition_vectors_per_s']:.0f} "
            f"({r['superposition_speedup_vs_naive']:.0f}x) | {r['superposition_g_per_s']:.2f} | "
            f"{r['nodal_vectors_per_s']:.0f} ({r['nodal_speedup_vs_naive']:.0f}x) | "
            f"{r['nonlinear_sweep_s_per_vector']:.3f} | {r['nonlinear_rel_err_vs_newton']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer vectors and sizes 32/64 only (<= 60 s)")
    parser.add_argument("--json", default="", help="write the figures to this path")
    parser.add_argument("--sizes", default="", help="comma-separated sizes (default 32,64,128)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([32, 64] if args.quick else [32, 64, 128])
    info = ngspice.info()
    results = [bench_size(n, args.quick) for n in sizes]
    print(f"ngspice {info.version} (KLU: {info.has_klu}); superposition/nodal: {VECTORS_PER_G} vectors per G")
    print(table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"ngspice": info.version, "klu": info.has_klu, "vectors_per_g": VECTORS_PER_G,
                       "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
