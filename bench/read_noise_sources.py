"""Where the per-read noise of loaded non-linear cells goes wrong through a surrogate: one tile, DNN-like.

Usage::

    python bench/read_noise_sources.py --config config/nonlinear_gap.yaml --circuit sinh32_0v5

One tile of the circuit with DNN-like conductances (70% of the cells at g_off, the rest on the 4-bit
levels) and sparse inputs; the reference is the column-current std over conductances redrawn for
every read and solved exactly (``spice.exact.ArraySolver``). The loaded-cell noise model
(``dnn.noise.loaded_read_noise_std``) is fed its three inputs, the one-row transfer T at
v_read_max_v, the chord polynomial (``dnn.noise.chord_polynomial``) and the driver and sense
resistances, from the exact solver or from the circuit's surrogate (``RESULTS/surrogate/NAME.h5``),
one at a time; prints the median ratio model / reference over the columns with signal. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dnn  # noqa: E402

from dnn import evaluate as dnn_evaluate  # noqa: E402
from dnn.noise import chord_polynomial, loaded_noise_maps, loaded_read_noise_std  # noqa: E402
from spice.circuit import spec_from_config  # noqa: E402
from spice.exact import ArraySolver, cell_model, sense_resistance_ohm  # noqa: E402

F64 = torch.float64
INPUT_CASES = ((0.2, 0.3), (0.5, 1.0), (0.7, 0.5))
"""(fraction of rows driven, largest input as a fraction of v_read_max_v) of each set of 8 vectors."""


def study(config_path: str, name: str, sigma: float, draws: int, seed: int) -> list[dict[str, Any]]:
    config = yaml.safe_load(Path(config_path).read_text())
    entry = {k: v for k, v in config["circuits"][name].items() if k not in ("sampling", "surrogate")}
    spec = spec_from_config(name, entry)
    results = Path(config.get("results_dir", "results"))
    surrogate, _ = dnn_evaluate.surrogate_tile_model(str(results / "surrogate" / f"{name}.h5"), spec)
    gen = torch.Generator().manual_seed(seed)
    rows, cols, v_max = spec.rows, spec.cols, spec.v_read_max_v
    level = torch.randint(0, 16, (1, rows, cols), generator=gen)
    level = torch.where(torch.rand(1, rows, cols, generator=gen) < 0.7, torch.zeros_like(level), level)
    g = (spec.g_off_s + (spec.g_on_s - spec.g_off_s) * level / 15).to(F64)
    solver = ArraySolver(spec, cell_model(spec), g)
    bound = surrogate.bind(g.float())
    eye = torch.eye(rows, dtype=F64)[None]
    exact_parts = {"T": solver.currents(eye * v_max) / v_max,
                   "chord": chord_polynomial(lambda u: solver.currents(eye * u) / u, v_max),
                   "lines": (spec.r_driver_ohm, sense_resistance_ohm(spec))}
    surrogate_parts = {"T": bound(eye.float() * v_max).double() / v_max,
                       "chord": chord_polynomial(lambda u: bound(eye.float() * u).double() / u, v_max),
                       "lines": surrogate.line_resistances_ohm()}
    combos = {"all exact": {}, "surrogate T": {"T"}, "surrogate chord": {"chord"}, "surrogate lines": {"lines"},
              "all surrogate": {"T", "chord", "lines"}}
    out = []
    for driven, scale in INPUT_CASES:
        v = v_max * scale * torch.rand(1, 8, rows, generator=gen, dtype=F64)
        v = v * (torch.rand(1, 8, rows, generator=gen, dtype=F64) < driven)
        factor = 1.0 + sigma * torch.randn(1, 8 * draws, rows, cols, generator=gen, dtype=F64)
        reference = solver.currents(v.repeat_interleave(draws, 1), factor)[0].reshape(8, draws, cols).std(1)
        keep = reference > 0.05 * reference.max()
        row = {"rows_driven": driven, "input_scale": scale}
        for label, from_surrogate in combos.items():
            parts = {k: (surrogate_parts if k in from_surrogate else exact_parts)[k] for k in exact_parts}
            i_a = bound(v.float()).double() if "T" in from_surrogate else solver.currents(v)
            maps = loaded_noise_maps(parts["T"], g, *parts["lines"], parts["chord"])
            std = loaded_read_noise_std(v, i_a, maps, sigma)[0]
            row[label] = float((std / reference)[keep].median())
        print(" | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
        out.append(row)
    print(f"surrogate line resistances {surrogate.line_resistances_ohm()} (circuit {exact_parts['lines']})")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/nonlinear_gap.yaml")
    p.add_argument("--circuit", default="sinh32_0v5")
    p.add_argument("--sigma", type=float, default=0.2)
    p.add_argument("--draws", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = study(args.config, args.circuit, args.sigma, args.draws, args.seed)
    if args.json:
        bench_dnn.write_json(args.json, {"settings": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
