"""Surrogate-stage cost and fidelity: each surrogate design vs the ideal matmul, the exact nodal solve and ngspice.

Usage::

    python bench/bench_surrogate.py                 # Paper-1 64x64 (paper1_64_w5), ~5 minutes on 2 cores
    python bench/bench_surrogate.py --quick         # 32x32 variant, fewer samples and epochs, <= 60 s
    python bench/bench_surrogate.py --json bench/surrogate.json

One run: simulate a small dataset with ngspice (the real pipeline), train every design on it, measure
held-out fidelity, then time T tiles x B input vectors through each model. MVMs/s counts one
input vector through one tile; "bind" is the once-per-tile (G-only) work; "with bind" is the
throughput when every tile is re-bound for every batch of B vectors (e.g. read noise redrawn per
batch). The nodal solve and ngspice have no bind/apply split: for them the cost per G is the exact
solve (nodal: transfer matrix; ngspice: one DC sweep over the B vectors). All ratios in the printed
table come from this one run on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spice import ngspice, nodal
from spice.circuit import spec_from_config
from spice.io import SpiceDataset
from spice.sampling import SamplingConfig
from spice.simulate import simulate_shard
from surrogate import fidelity
from surrogate.data import split_dataset
from surrogate.train import TrainParams, train

log = logging.getLogger("bench.surrogate")
REPO = Path(__file__).resolve().parents[1]


def timed(fn, min_seconds: float = 0.3, max_repeats: int = 1000) -> float:
    """Seconds per call of ``fn`` (repeated until ``min_seconds`` have passed)."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or n >= max_repeats:
            return elapsed / n


def make_dataset(spec, n_g: int, n_v: int, seed: int) -> SpiceDataset:
    cfg = SamplingConfig(n_conductance=n_g, n_vectors=n_v, seed=seed, v_zero_fraction=0.2)
    r = simulate_shard(spec, cfg, 0, progress=False)
    return SpiceDataset(spec=spec, attrs={}, **r.arrays())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32x32, fewer samples and epochs (<= 60 s)")
    parser.add_argument("--json", default="", help="write the measurements here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the CLI)")
    parser.add_argument("--tiles", type=int, default=16, help="tiles per timed batch")
    parser.add_argument("--batch", type=int, default=256, help="input vectors per tile per timed batch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    entry = {"preset": "paper1_64_w5"}
    if args.quick:
        entry.update(rows=32, cols=32)
    spec = spec_from_config("paper1_64_w5" if not args.quick else "paper1_32_w5", entry, base_dir=REPO)
    n_g, n_v = (12, 64) if args.quick else (24, 96)
    t0 = time.perf_counter()
    ds = make_dataset(spec, n_g, n_v, seed=1)
    sim_s = time.perf_counter() - t0
    torch.set_num_threads(args.threads)  # ngspice (OpenMP KLU build) resets the process's OpenMP threads to 8
    threads = torch.get_num_threads()
    splits = split_dataset(ds, 0.15, 0.15, seed=0, path=f"<{spec.name} in memory>")
    print(f"dataset: {spec.name} {spec.rows}x{spec.cols}, {n_g} G x {n_v} vectors by ngspice in {sim_s:.1f} s "
          f"(train {splits.train.n_matrices} / val {splits.val.n_matrices} / test {splits.test.n_matrices} G)")

    epochs = 40 if args.quick else 100
    designs = {
        "transfer": TrainParams(design="transfer", epochs=epochs),
        "transfer_v3": TrainParams(design="transfer", v_order=3, epochs=epochs),
        "mlp": TrainParams(design="mlp", hidden=500, epochs=epochs),
    }
    models, fid, train_s = {}, {}, {}
    report = None
    for name, params in designs.items():
        result = train(splits, params, progress=False)
        models[name] = result.model
        train_s[name] = result.history["train_seconds"]
        report, _ = fidelity.evaluate(result.model, splits, ridge=False)
        fid[name] = report["models"]["surrogate"]["rel_rms_fs"]
    fid["ideal"] = report["models"]["ideal"]["rel_rms_fs"]
    fid["analytic"] = report["models"]["analytic"]["rel_rms_fs"]

    # ----------------------------------------------------------------- timing
    gen = torch.Generator().manual_seed(0)
    n_t, n_b = args.tiles, args.batch
    g = spec.g_off_s + (spec.g_on_s - spec.g_off_s) * torch.rand(n_t, spec.rows, spec.cols, generator=gen)
    v = spec.v_read_max_v * torch.rand(n_t, n_b, spec.rows, generator=gen)
    rows = {}
    with torch.no_grad():
        t_apply = timed(lambda: torch.bmm(v, g))
        rows["ideal (v @ G)"] = {"mvm_per_s": n_t * n_b / t_apply, "bind_ms_per_tile": 0.0,
                                 "mvm_per_s_with_bind": n_t * n_b / t_apply, "rel_rms_fs": fid["ideal"]}
        for name, model in models.items():
            bound = model.bind(g)
            t_apply = timed(lambda m=bound: m(v))
            t_bind = timed(lambda m=model: m.bind(g))
            rows[f"surrogate {name}"] = {
                "mvm_per_s": n_t * n_b / t_apply, "bind_ms_per_tile": 1e3 * t_bind / n_t,
                "mvm_per_s_with_bind": n_t * n_b / (t_apply + t_bind), "rel_rms_fs": fid[name],
                "macs_per_vector": model.macs_per_vector(), "train_s": train_s[name],
            }
    g_np = g[0].double().numpy()
    v_np = v[0].double().numpy()
    t_nodal = timed(lambda: v_np @ nodal.transfer_matrix(spec, g_np), min_seconds=0.5, max_repeats=20)
    rows["exact nodal solve (scipy)"] = {"mvm_per_s": n_b / t_nodal, "bind_ms_per_tile": float("nan"),
                                         "mvm_per_s_with_bind": n_b / t_nodal, "rel_rms_fs": 0.0}
    n_spice = min(n_b, 64)
    t_spice = timed(lambda: ngspice.solve(spec, g_np, v_np[:n_spice]), min_seconds=0.5, max_repeats=5)
    rows["ngspice (one DC sweep)"] = {"mvm_per_s": n_spice / t_spice, "bind_ms_per_tile": float("nan"),
                                      "mvm_per_s_with_bind": n_spice / t_spice, "rel_rms_fs": 0.0}

    spice_rate = rows["ngspice (one DC sweep)"]["mvm_per_s"]
    ideal_rate = rows["ideal (v @ G)"]["mvm_per_s"]
    lines = [
        f"### Surrogate cost and fidelity: {spec.name} {spec.rows}x{spec.cols}, {n_t} tiles x {n_b} vectors, "
        f"{threads} torch thread(s)",
        "",
        "| model | MVMs/s | bind ms/tile | MVMs/s incl. bind | x ngspice | x ideal | held-out RMS error / full scale "
        "| x better than ideal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        err = r["rel_rms_fs"]
        better = "exact" if err == 0 else f"{fid['ideal'] / err:.0f}"
        bind = "-" if np.isnan(r["bind_ms_per_tile"]) else f"{r['bind_ms_per_tile']:.3f}"
        lines.append(
            f"| {name} | {r['mvm_per_s']:.3g} | {bind} | {r['mvm_per_s_with_bind']:.3g} | "
            f"{r['mvm_per_s'] / spice_rate:.3g} | {r['mvm_per_s'] / ideal_rate:.3g} | "
            f"{'0 (reference)' if err == 0 else f'{err:.2e}'} | {better} |"
        )
    lines.append(f"| analytic IR-drop model | - | - | - | - | - | {fid['analytic']:.2e} | "
                 f"{fid['ideal'] / fid['analytic']:.0f} |")
    table = "\n".join(lines)
    print(table)
    total = time.perf_counter() - t_start
    print(f"\n(total {total:.1f} s; ngspice dataset {sim_s:.1f} s; training "
          + ", ".join(f"{k} {v:.1f} s" for k, v in train_s.items()) + ")")
    if args.json:
        out = {"spec": {k: v for k, v in dataclasses.asdict(spec).items() if k != "netlist_text"},
               "n_conductance": n_g, "n_vectors": n_v, "tiles": n_t, "batch": n_b,
               "threads": threads, "quick": args.quick, "rows": rows, "fidelity": fid,
               "table_markdown": table, "total_seconds": total}
        Path(args.json).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
