"""Per-read noise: the transfer-matrix approximation against conductances redrawn for every read, solved exactly.

Usage::

    python bench/read_noise_nonlinear.py --json bench/read_noise.json                 # tile level only
    python bench/read_noise_nonlinear.py --dnn-config config/nonlinear_gap.yaml --dnn-circuit sinh32_0v5 \\
        --sigma 0.1 --sigma 0.2 --json bench/read_noise.json                          # and DNN level

``read_noise_mode: per_read`` gives column j the noise N(0, sigma^2 sum_i (v_i T_ij)^2), T the tile's
response to one row at a time at v_read_max_v (``dnn.noise.per_read_noise_currents``): each row's
contribution with its cell's relative error, as if the cells did not load one another ("unloaded").
The loaded version (``dnn.noise.loaded_read_noise_std``) takes each cell's voltage with all rows driven
and the share of its current that reaches the sense. The reference
draws ``g (1 + sigma N(0, 1))`` for every cell and every vector and solves the array exactly
(``spice.exact.ArraySolver`` with ``g_factor``; what ``SolverTileMVM.bind_noisy`` does in the DNN).

- Tile level (per circuit, Paper-1 resistances, uniform G, inputs uniform in [0, v_read_max_v] with 30%
  zeros): the column-current std over ``--draws`` redraws of each of ``--vectors`` vectors, against the
  transfer-matrix std; the ratio approx / reference over the columns that carry signal.
- DNN level (``--dnn-config``): the config's model through the circuit's exact physics with per-vector
  redraws (reference) and through the circuit's surrogate with the per-read noise of loaded cells (the
  layers' default for a transfer surrogate, ``dnn.noise.loaded_read_noise_currents``), its one-row
  responses and line resistances from the circuit's exact solve (the default where ``spice.exact``
  solves the cell, ``dnn.evaluate.noise_physics``) or from the surrogate, and with the unloaded
  approximation; accuracy after BN adaptation, per ``--sigma``, over ``--seeds`` seeds.
  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dnn  # noqa: E402

from dnn import evaluate as dnn_evaluate  # noqa: E402
from dnn.config import CrossbarConfig  # noqa: E402
from dnn.convert import convert_to_crossbar  # noqa: E402
from dnn.datasets import load_dataset  # noqa: E402
from dnn.mitigation import bn_adapt  # noqa: E402
from dnn.noise import chord_polynomial, loaded_noise_maps, loaded_read_noise_std  # noqa: E402
from dnn.train import evaluate, load_model, make_loader  # noqa: E402
from spice.circuit import spec_from_config  # noqa: E402
from spice.exact import ArraySolver, cell_model, sense_resistance_ohm  # noqa: E402

CIRCUITS = "data/circuits/"
TILE_CASES = {
    "resistive 32x32": {"preset": "paper1_32_w5"},
    "sinh 32x32, 0.2 V": {"preset": "paper1_32_w5", "netlist": CIRCUITS + "memristor_sinh.cir", "v_read_max_v": 0.2},
    "sinh 32x32, 0.5 V": {"preset": "paper1_32_w5", "netlist": CIRCUITS + "memristor_sinh.cir", "v_read_max_v": 0.5},
    "sinh 64x64, 0.5 V": {"preset": "paper1_64_w5", "netlist": CIRCUITS + "memristor_sinh.cir", "v_read_max_v": 0.5},
    "1T1R 16x16 (gate 1.8 V)": {"preset": "paper1_32_w5", "netlist": CIRCUITS + "one_t_one_r.cir", "rows": 16,
                                "cols": 16, "v_gate_v": 1.8},
    "1S1R 16x16, 1 V": {"preset": "paper1_32_w5", "netlist": CIRCUITS + "one_s_one_r.cir", "rows": 16, "cols": 16,
                        "v_read_max_v": 1.0},
    "TIA sense 32x32": {"preset": "paper1_32_w5", "netlist": CIRCUITS + "tia_sense.cir"},
    "resistive 32x32, r_driver = r_sense = 0": {"preset": "paper1_32_w5", "r_driver_ohm": 0.0, "r_sense_ohm": 0.0},
}
SIGNAL_FRACTION = 0.05
"""Columns whose reference std is below this fraction of the tile's largest are left out of the ratios."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile-sigma", type=float, default=0.1, help="relative read noise of the tile-level study")
    p.add_argument("--vectors", type=int, default=8)
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--dnn-config", default=None, help="workflow config whose model and surrogates the DNN study uses")
    p.add_argument("--dnn-circuit", action="append", default=None, help="circuit of --dnn-config (repeatable)")
    p.add_argument("--sigma", type=float, action="append", default=None, help="DNN-level read noise (repeatable)")
    p.add_argument("--seeds", type=int, default=2, help="noise seeds of the DNN study")
    p.add_argument("--first-seed", type=int, default=0, help="the DNN study's seeds start here")
    p.add_argument("--mode", action="append", default=None, choices=list(DNN_MODES),
                   help="DNN-level mode to run (repeatable; default all)")
    p.add_argument("--calibration-samples", type=int, default=256)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--crossbar-json", default='{"adc_range_fraction": 0.25}')
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def tile_study(name: str, entry: dict[str, Any], sigma: float, n_vectors: int, n_draws: int, seed: int = 0
               ) -> dict[str, Any]:
    """Ratio of the transfer-matrix std to the redrawn-and-solved std, over the columns with signal."""
    spec = spec_from_config("tile", entry)
    gen = torch.Generator().manual_seed(seed)
    rows, cols = spec.rows, spec.cols
    f64 = torch.float64
    g = spec.g_off_s + (spec.g_on_s - spec.g_off_s) * torch.rand(1, rows, cols, generator=gen, dtype=f64)
    v = spec.v_read_max_v * torch.rand(1, n_vectors, rows, generator=gen, dtype=f64)
    v = v * (torch.rand(1, n_vectors, rows, generator=gen, dtype=f64) >= 0.3)
    solver = ArraySolver(spec, cell_model(spec), g)
    t0 = time.perf_counter()
    factor = 1.0 + sigma * torch.randn(1, n_vectors * n_draws, rows, cols, generator=gen, dtype=f64)
    drawn = solver.currents(v.repeat_interleave(n_draws, 1), factor)[0].reshape(n_vectors, n_draws, cols)
    seconds = time.perf_counter() - t0
    reference = drawn.std(1)
    t = solver.currents(torch.eye(rows, dtype=f64)[None] * spec.v_read_max_v)[0] / spec.v_read_max_v
    unloaded = sigma * ((v[0] ** 2) @ (t * t)).sqrt()
    eye = torch.eye(rows, dtype=f64)[None]
    chord = chord_polynomial(lambda u: solver.currents(eye * u) / u, spec.v_read_max_v)
    maps = loaded_noise_maps(t, g, spec.r_driver_ohm, sense_resistance_ohm(spec), chord)
    loaded = loaded_read_noise_std(v, solver.currents(v), maps, sigma)[0]
    keep = reference > SIGNAL_FRACTION * reference.max()
    out = {"circuit": name, "entry": entry, "rows": rows, "cols": cols, "sigma": sigma, "vectors": n_vectors,
           "draws": n_draws, "columns": int(keep.sum()), "reference_seconds": seconds}
    for label, approx in (("unloaded", unloaded), ("loaded", loaded)):
        q = torch.quantile((approx / reference)[keep], torch.tensor([0.05, 0.5, 0.95], dtype=f64)).tolist()
        out[label] = {"ratio_p05": q[0], "ratio_median": q[1], "ratio_p95": q[2]}
    return out


DNN_MODES = {"exact": "exact, redrawn per read (reference)",
             "loaded": "surrogate, loaded cells, noise inputs from the exact solve",
             "loaded-surrogate": "surrogate, loaded cells, noise inputs from the surrogate",
             "unloaded": "surrogate, unloaded approximation"}
"""The DNN study's modes (``--mode``) and their labels."""


class Unloaded:
    """A tile model seen without its line resistances: the layers' unloaded per-read noise approximation."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.tile = model.tile

    def bind(self, g_s: torch.Tensor) -> Any:
        return self.model.bind(g_s)

    def bind_shared(self, g_s: torch.Tensor, input_levels: int = 0) -> Any:
        return self.model.bind_shared(g_s, input_levels)


def dnn_study(args: argparse.Namespace) -> dict[str, Any]:
    config = yaml.safe_load(Path(args.dnn_config).read_text())
    results = Path(config.get("results_dir", "results"))
    model_name = next(iter(config["models"]))
    model, meta = load_model(str(results / "models" / f"{model_name}.pt"))
    ds = dict(meta["dataset"])
    data = load_dataset(ds["name"], ds.get("root"), ds.get("seed", 0), n_test=args.n_test)
    test = make_loader(data.test, 256)
    out = {}
    for name in args.dnn_circuit or []:
        entry = {k: v for k, v in config["circuits"][name].items() if k not in ("sampling", "surrogate")}
        spec = spec_from_config(name, entry)
        exact, _ = dnn_evaluate.exact_tile_model(spec)
        surrogate, _ = dnn_evaluate.surrogate_tile_model(str(results / "surrogate" / f"{name}.h5"), spec)
        own_inputs = copy.copy(surrogate)  # the same surrogate, its noise inputs from itself
        own_inputs.noise_physics = None
        models = {"exact": exact, "loaded": surrogate, "loaded-surrogate": own_inputs, "unloaded": Unloaded(surrogate)}
        modes = {label: models[key] for key, label in DNN_MODES.items() if key in (args.mode or DNN_MODES)}
        for sigma in args.sigma or [0.1]:
            row = {}
            for label, mvm in modes.items():
                accs, t0 = [], time.perf_counter()
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    cfg = CrossbarConfig(seed=seed).replace(**json.loads(args.crossbar_json),
                                                            read_noise_sigma=sigma, read_noise_mode="per_read")
                    xb = convert_to_crossbar(model, cfg, mvm)
                    bn_adapt(xb, dnn_evaluate.calibration_loader(data, args.calibration_samples, 64, seed))
                    accs.append(evaluate(xb, test, torch.device("cpu")))
                row[label] = {"accuracy_per_seed": accs, "mean": statistics.fmean(accs),
                              "seconds": time.perf_counter() - t0}
                print(f"{name} sigma {sigma}: {label}: {[round(100 * a, 1) for a in accs]}", flush=True)
            out[f"{name} sigma {sigma}"] = row
    return {"model": model_name, "n_test": len(data.test), "rows": out}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tiles = []
    for name, entry in TILE_CASES.items():
        tiles.append(tile_study(name, entry, args.tile_sigma, args.vectors, args.draws))
        r = tiles[-1]
        print(f"| {name} | " + " | ".join(f"{r[k]['ratio_median']:.2f} ({r[k]['ratio_p05']:.2f}-{r[k]['ratio_p95']:.2f})"
                                         for k in ("unloaded", "loaded")) + " |", flush=True)
    result: dict[str, Any] = {"settings": vars(args), "tile": tiles}
    if args.dnn_config:
        result["dnn"] = dnn_study(args)
    if args.json:
        bench_dnn.write_json(args.json, result)


if __name__ == "__main__":
    main()
