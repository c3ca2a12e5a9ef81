"""How many ngspice samples each surrogate design needs: held-out error against the training matrices.

Usage::

    python bench/learning_curve.py --json bench/learning_curve.json --plot docs/learning_curve.png

Per case (a circuit at an operating point where its cell is strongly non-linear), one ngspice dataset
(``python -m spice simulate``, the 'mixed' sampler: about half the matrices DNN-like, half uniform) of
``--pool`` matrices x ``--vectors`` vectors. A seeded permutation of its matrices holds out ``--test``
matrices for the test and ``--val`` for early stopping; each design trains on the first n of the others,
for every n of ``--sizes`` (nested training sets, the same validation and test sets). A second dataset of
``--dnn-pool`` matrices from the 'dnn_like' sampler alone (another seed) measures each model on what a DNN
layer programs and reads. Reported per design and n: the RMS error on both as a fraction of full scale, how
many times better than the ideal model, the training samples (n x vectors) and what they cost in ngspice
seconds (the dataset's simulation time per sample, one core). The target line is the one for strongly non-linear cells (``TARGET_X_BETTER``,
``TARGET_REL_RMS_FS``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dnn  # noqa: E402

from spice.cli import main as spice_main  # noqa: E402
from spice.io import read_dataset  # noqa: E402
from surrogate import fidelity  # noqa: E402
from surrogate.data import load_whole_as_test, split_by_matrices  # noqa: E402
from surrogate.params import TrainParams  # noqa: E402
from surrogate.train import TooLittleDataError, train  # noqa: E402

CIRCUITS = "data/circuits/"
LINES = {"r_driver_ohm": 100.0, "r_sense_ohm": 100.0, "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0}
CASES = {
    "1S1R 16x16, 1 V": {"netlist": CIRCUITS + "one_s_one_r.cir", "rows": 16, "cols": 16, "v_read_max_v": 1.0, **LINES},
    "1S1R 32x32, 1 V": {"netlist": CIRCUITS + "one_s_one_r.cir", "rows": 32, "cols": 32, "v_read_max_v": 1.0, **LINES},
    "sinh 32x32, 0.5 V": {"preset": "paper1_32_w5", "netlist": CIRCUITS + "memristor_sinh.cir", "v_read_max_v": 0.5},
}
DESIGNS = ("transfer", "ridge", "mlp", "cell_iv")
TARGET_X_BETTER = 300.0
"""Strongly non-linear cells: at least this many times better than the ideal model on held-out matrices..."""
TARGET_REL_RMS_FS = 5e-4
"""... and at most this RMS error as a fraction of full scale."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=list(CASES), default=None, help="repeatable; default all")
    p.add_argument("--design", action="append", choices=list(DESIGNS), default=None, help="repeatable; default all")
    p.add_argument("--pool", type=int, default=88, help="matrices simulated per case")
    p.add_argument("--vectors", type=int, default=128, help="input vectors per matrix")
    p.add_argument("--val", type=int, default=8)
    p.add_argument("--test", type=int, default=16)
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="training matrices")
    p.add_argument("--dnn-pool", type=int, default=16, help="matrices of the DNN-like test dataset")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default="results/learning_curve", help="where the datasets are written")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    return p.parse_args(argv)


def simulate(name: str, entry: dict[str, Any], args: argparse.Namespace, sampler: str = "mixed"
             ) -> tuple[Path, float]:
    """The case's dataset (simulated once, reused when present) and its ngspice seconds per sample."""
    pool, seed = (args.pool, args.seed) if sampler == "mixed" else (args.dnn_pool, args.seed + 1000)
    tag = "" if sampler == "mixed" else f"_{sampler}"
    out = Path(args.work_dir) / f"{name.split(',')[0].replace(' ', '_')}_{pool}x{args.vectors}_s{seed}{tag}.h5"
    timing = out.with_suffix(".seconds")
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        sampling = {"n_conductance": pool, "n_vectors": args.vectors, "sampler": sampler, "seed": seed}
        t0 = time.perf_counter()
        rc = spice_main(["simulate", "--circuit-name", name.split(",")[0].replace(" ", "_"), "--circuit", json.dumps(entry),
                         "--sampling", json.dumps(sampling), "--out", str(out), "--quiet"])
        if rc != 0:
            raise SystemExit(f"simulating {name} failed (exit {rc})")
        timing.write_text(str(time.perf_counter() - t0))
    return out, float(timing.read_text()) / (pool * args.vectors)


def curve(name: str, entry: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    path, seconds_per_sample = simulate(name, entry, args)
    dnn_path, _ = simulate(name, entry, args, "dnn_like")
    dnn_test = load_whole_as_test(dnn_path)
    ds = read_dataset(path)
    order = np.random.default_rng(args.seed).permutation(len(ds.g_s))
    test_rows, val_rows, pool = order[:args.test], order[args.test:args.test + args.val], order[args.test + args.val:]
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        if n > len(pool):
            continue
        splits = split_by_matrices(ds, pool[:n], val_rows, test_rows, path=str(path), seed=args.seed)
        for design in args.design or DESIGNS:
            t0 = time.perf_counter()
            row: dict[str, Any] = {"design": design, "train_matrices": n, "train_samples": splits.train.n_samples,
                                   "ngspice_seconds": splits.train.n_samples * seconds_per_sample}
            try:
                result = train(splits, TrainParams(design=design, epochs=args.epochs, seed=args.seed), progress=False)
            except TooLittleDataError as e:
                row["refused"] = str(e)
            else:
                report, _ = fidelity.evaluate(result.model, splits, ridge=False)
                dnn, _ = fidelity.evaluate(result.model, dnn_test, ridge=False)
                row.update(rel_rms_fs=report["models"]["surrogate"]["rel_rms_fs"],
                           x_better_than_ideal=report["improvement_over_ideal"]["surrogate"],
                           dnn_rel_rms_fs=dnn["models"]["surrogate"]["rel_rms_fs"],
                           dnn_x_better_than_ideal=dnn["improvement_over_ideal"]["surrogate"],
                           train_seconds=time.perf_counter() - t0)
                row["target_met"] = all(row[f"{p}x_better_than_ideal"] >= TARGET_X_BETTER
                                        and row[f"{p}rel_rms_fs"] <= TARGET_REL_RMS_FS for p in ("", "dnn_"))
            rows.append(row)
            print(f"{name} | {design} | {n} matrices | " + (f"{row['rel_rms_fs']:.3e} of full scale, "
                  f"{row['x_better_than_ideal']:.0f}x; DNN-like {row['dnn_rel_rms_fs']:.3e}, "
                  f"{row['dnn_x_better_than_ideal']:.0f}x" if "rel_rms_fs" in row else "refused"), flush=True)
    return {"case": name, "entry": entry, "dataset": str(path), "seconds_per_sample": seconds_per_sample,
            "n_vectors": args.vectors, "val_matrices": args.val, "test_matrices": args.test, "rows": rows}


def plot(curves: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6), squeeze=False)
    for ax, c in zip(axes[0], curves, strict=True):
        for design in DESIGNS:
            pts = [(r["train_samples"], r["rel_rms_fs"]) for r in c["rows"] if r["design"] == design and "rel_rms_fs" in r]
            if pts:
                ax.loglog(*zip(*pts, strict=True), "o-", label=design)
        ax.axhline(TARGET_REL_RMS_FS, color="k", ls="--", lw=0.8, label="target")
        ax.set_title(c["case"])
        ax.set_xlabel("ngspice training samples")
        ax.set_ylabel("held-out RMS error / full scale")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    curves = [curve(name, CASES[name], args) for name in (args.case or CASES)]
    if args.json:
        bench_dnn.write_json(args.json, {"settings": vars(args), "curves": curves})
    if args.plot:
        plot(curves, args.plot)


if __name__ == "__main__":
    main()
