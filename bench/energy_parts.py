"""Where a read's power goes: the energy model's split against ngspice's, on a circuit's SPICE dataset.

Usage::

    python bench/energy_parts.py --data results/spice/paper1_64.h5 --surrogate results/surrogate/paper1_64.h5 \
        --json bench/energy_parts.json

On the held-out test matrices of the surrogate's own split (the file's ``split`` record): for every valid sample,
ngspice's dissipation per part (``/p_parts_w``: cells, row wires, column wires, driver, sense), the surrogate
energy model's split (``surrogate.energy.EnergyModel.bind_parts``: its lumped array; the parts are never fitted,
only the total) and, for a linear cell, the exact split of the nodal solve (``spice.nodal.power_quadratic_forms``).
Reported per part: the mean share of the read power, and the RMS over samples of the part's error relative to the
sample's total power (so a part that takes 1% cannot show a large error of nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from spice import nodal
from spice.exact import LinearCell, UnsupportedCircuitError, cell_model
from spice.io import read_dataset
from surrogate.data import split_dataset
from surrogate.energy import POWER_SPLIT, EnergyModel
from surrogate.io import read_metadata
from surrogate.params import TrainParams

log = logging.getLogger("bench.energy_parts")


def split_stats(parts_w: np.ndarray, ref_w: np.ndarray) -> dict[str, dict[str, float]]:
    """Per part: mean share of the reference total, and RMS of (part - reference part) / reference total."""
    total = ref_w.sum(axis=1)
    out = {}
    for k, name in enumerate(nodal.POWER_PARTS):
        out[name] = {"mean_share": float(np.mean(parts_w[:, k] / total)),
                     "rms_error_of_total": float(np.sqrt(np.mean(((parts_w[:, k] - ref_w[:, k]) / total) ** 2)))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="SPICE dataset .h5 with /p_parts_w")
    parser.add_argument("--surrogate", required=True, help="surrogate .h5 with an energy model, trained on --data")
    parser.add_argument("--json", required=True)
    parser.add_argument("--max-matrices", type=int, default=16, help="test matrices to use (the first ones)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)

    meta = read_metadata(args.surrogate)
    energy = EnergyModel.from_dict(meta["energy_model"])
    ds = read_dataset(args.data)
    split = meta.get("split") or {}
    splits = split_dataset(ds, split.get("val_fraction", TrainParams.val_fraction),
                           split.get("test_fraction", TrainParams.test_fraction), split.get("seed", TrainParams.seed))
    test_rows = np.asarray(splits.test.g_rows)[: args.max_matrices]
    valid = ~ds.failed & (ds.p_w > 0)
    spice_parts, model_parts, exact_parts = [], [], []
    try:
        linear = isinstance(cell_model(ds.spec), LinearCell)
    except UnsupportedCircuitError:
        linear = False
    for row in test_rows:
        mask = valid & (ds.g_index == row)
        if not mask.any():
            continue
        g, v = ds.g_s[row], ds.v_v[mask]
        spice_parts.append(ds.p_parts_w[mask])
        bound = energy.bind_parts(torch.as_tensor(g[None], dtype=torch.float64))
        model_parts.append(bound(torch.as_tensor(v[None], dtype=torch.float64))[0].numpy())
        if linear:
            q = nodal.power_quadratic_forms(ds.spec, g)
            exact_parts.append(np.einsum("nr,prs,ns->np", v, q, v))
    spice_w, model_w = np.concatenate(spice_parts), np.concatenate(model_parts)
    report = {
        "data": str(args.data), "surrogate": str(args.surrogate), "circuit": ds.spec.name,
        "rows": ds.spec.rows, "cols": ds.spec.cols, "n_matrices": len(spice_parts), "n_samples": int(len(spice_w)),
        "parts": list(nodal.POWER_PARTS), "model_split": POWER_SPLIT,
        "wire_fractions": {"row": energy.wire_fraction_row, "col": energy.wire_fraction_col},
        "ngspice": split_stats(spice_w, spice_w),
        "energy_model": split_stats(model_w, spice_w),
        "energy_model_total_rms_rel": float(np.sqrt(np.mean((model_w.sum(1) / spice_w.sum(1) - 1) ** 2))),
    }
    if exact_parts:
        report["exact_nodal"] = split_stats(np.concatenate(exact_parts), spice_w)
    for name in nodal.POWER_PARTS:
        log.info("%-9s ngspice %.4f  model %.4f (RMS err %.2e of the total)", name,
                 report["ngspice"][name]["mean_share"], report["energy_model"][name]["mean_share"],
                 report["energy_model"][name]["rms_error_of_total"])
    Path(args.json).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
