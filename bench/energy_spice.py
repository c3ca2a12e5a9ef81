"""Read energy from SPICE: the cost of storing the power, the energy model's fidelity, and the dynamic cost.

Usage::

    python bench/energy_spice.py --json bench/energy_spice.json      # a few minutes on one core
    python bench/energy_spice.py --quick                             # 16x16 arrays, seconds

Three measurements, each on real ngspice runs of one machine:

1. **overhead**: per conductance matrix, the solve the SPICE stage did before (column currents only:
   ``spice.ngspice.solve_probed`` with no probe, through ``spice.simulate.superposition_probed`` for a linear
   array) against the same solve reading every node the power needs plus :meth:`spice.power.PowerProbes.powers`
   and the conservation check; the ratio of the two wall times.
2. **fidelity**: a dataset per circuit (``spice.simulate.simulate_shard``, sampler ``mixed``: half uniform, half
   DNN-like matrices), split by matrix; the energy model (``surrogate.energy``) fitted on the train + val
   matrices and measured on the held-out test matrices (RMS relative error of the read power against ngspice),
   next to the ideal formula sum v^2 G and, for the linear cell, the exact quadratic form v^T Y(G) v of the
   nodal solve (``spice.nodal.input_admittance``). Also the largest conservation residual of the dataset.
3. **dynamic**: a transient read (``spice.dynamic.transient_read``) of Paper-1 arrays of growing size with a
   wire capacitance per segment: settling time to half an ADC step, charging energy against the static
   energy of a read of ``t_read_s``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from spice import ngspice, nodal, power
from spice.circuit import spec_from_config
from spice.dynamic import transient_read
from spice.sampling import SamplingConfig, draw
from spice.simulate import simulate_shard, superposition_probed
from surrogate.data import split_dataset
from surrogate.energy import fit_and_measure, rms_rel

log = logging.getLogger("bench.energy_spice")
REPO = Path(__file__).resolve().parents[1]
SINH = str(REPO / "data" / "circuits" / "memristor_sinh.cir")
C_WIRE_F = 0.2e-15
"""Wire capacitance per segment (F): 0.2 fF/um, the interconnect capacitance per length NeuroSim uses, over an
assumed 1 um cell pitch (an assumption of this bench, not a measured layout)."""
ADC_BITS = 8
RISE_S = 1e-12


def circuits(quick: bool) -> dict[str, dict]:
    size = {"rows": 16, "cols": 16} if quick else {}
    return {"paper1_64_w5": {"preset": "paper1_64_w5", **size},
            "paper1_64_w5_sinh": {"preset": "paper1_64_w5", "netlist": SINH, **size}}


def overhead(spec, n_matrices: int, n_vectors: int) -> dict:
    """Wall time per matrix of the solve without and with the power (same matrices, same vectors)."""
    cfg = SamplingConfig(n_conductance=n_matrices, n_vectors=n_vectors, seed=11)
    probes = {n: power.probes_for(spec, n) for n in (1, n_vectors, spec.rows + 3)}
    linear = "sinh" not in spec.netlist_path
    t_without = t_with = 0.0
    for k in range(n_matrices):
        g, v = draw(spec, cfg, k)
        v_check = np.full((2, spec.rows), 0.5 * spec.v_read_max_v)
        t0 = time.perf_counter()
        if linear:
            superposition_probed(spec, g, v_check, 1e-6, None, lambda n: ())
        else:
            ngspice.solve_probed(spec, g, v, lambda n: ())
        t1 = time.perf_counter()
        if linear:
            affine = superposition_probed(spec, g, v_check, 1e-6, None, lambda n: probes[n].names)
            i_a = affine.offset + v @ affine.t
            p_w, parts = probes[spec.rows + 3].powers(v, i_a, affine.probe_offset + v @ affine.probe_t, g)
        else:
            i_a, _, probe = ngspice.solve_probed(spec, g, v, lambda n: probes[n].names)
            p_w, parts = probes[n_vectors].powers(v, i_a, probe, g)
        power.conservation_failures(spec, p_w, parts)
        t2 = time.perf_counter()
        t_without += t1 - t0
        t_with += t2 - t1
    return {"path": "superposition" if linear else "sweep", "n_matrices": n_matrices, "n_vectors": n_vectors,
            "s_per_matrix_without_power": t_without / n_matrices, "s_per_matrix_with_power": t_with / n_matrices,
            "ratio": t_with / t_without}


def fidelity(spec, n_matrices: int, n_vectors: int) -> dict:
    cfg = SamplingConfig(n_conductance=n_matrices, n_vectors=n_vectors, seed=12, sampler="mixed")
    t0 = time.perf_counter()
    shard = simulate_shard(spec, cfg, 0, progress=False)
    t_sim = time.perf_counter() - t0
    from spice.io import SpiceDataset

    ds = SpiceDataset(spec=spec, attrs={"sampling": cfg.to_json()}, **shard.arrays())
    splits = split_dataset(ds, val_fraction=0.15, test_fraction=0.3, seed=0)
    t0 = time.perf_counter()
    model = fit_and_measure(splits)
    t_fit = time.perf_counter() - t0
    ok = ~shard.failed
    out = {"n_samples": int(len(shard.p_w)), "n_failed": int(shard.failed.sum()), "simulate_s": t_sim, "fit_s": t_fit,
           "conservation_residual_max": float(np.nanmax(power.residuals(shard.p_w[ok], shard.p_parts_w[ok]))),
           "parts_share_of_mean_power": dict(zip(power.POWER_PARTS,
                                                 (shard.p_parts_w[ok].mean(0) / shard.p_w[ok].mean()).tolist(),
                                                 strict=True)),
           "energy_model": model.to_dict()}
    if "sinh" not in spec.netlist_path:  # the exact quadratic form of the linear array, on the same test samples
        test = splits.test
        keep = test.p_w > 0
        exact = np.array([float(v @ nodal.input_admittance(spec, test.g_s[k]) @ v)
                          for k, v in zip(test.g_index[keep], test.v_v[keep], strict=True)])
        out["exact_quadratic_form_rms_rel"] = rms_rel(exact, test.p_w[keep])
    # the cost per MVM after bind: one [rows, rows] product per vector
    import torch

    g = torch.as_tensor(splits.test.g_s[:1], dtype=torch.float64)
    v = torch.as_tensor(np.random.default_rng(0).uniform(0, spec.v_read_max_v, (1, 256, spec.rows)))
    t0 = time.perf_counter()
    bound = model.bind(g)
    t_bind = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        bound(v)
    t_apply = (time.perf_counter() - t0) / 20 / 256
    t0 = time.perf_counter()
    for _ in range(20):
        torch.bmm(v, g)
    t_mvm = (time.perf_counter() - t0) / 20 / 256
    out.update({"bind_s_per_tile": t_bind, "power_s_per_vector": t_apply, "ideal_mvm_s_per_vector": t_mvm})
    return out


def dynamic(sizes: tuple[int, ...], t_stop_s: float, t_max_step_s: float) -> list[dict]:
    rows = []
    for n in sizes:
        spec = spec_from_config(f"paper1_{n}", {"preset": "paper1_64_w5", "rows": n, "cols": n,
                                                "c_wire_row_f": C_WIRE_F, "c_wire_col_f": C_WIRE_F})
        rng = np.random.default_rng(n)
        g = rng.uniform(spec.g_off_s, spec.g_on_s, (n, n))
        v = rng.uniform(0.0, spec.v_read_max_v, n)
        t0 = time.perf_counter()
        r = transient_read(spec, g, v, t_stop_s, t_max_step_s, RISE_S, ADC_BITS)
        rows.append({"rows": n, "cols": n, "c_wire_f_per_segment": C_WIRE_F, "adc_bits": ADC_BITS,
                     "settling_time_s": r.settling_time_s, "tolerance_a": r.tolerance_a,
                     "p_static_w": r.p_static_w, "t_read_s": spec.t_read_s,
                     "e_static_per_read_j": r.p_static_w * spec.t_read_s, "e_dynamic_j": r.e_dynamic_j,
                     "e_stored_j": r.e_stored_j, "dynamic_over_static": r.e_dynamic_j / (r.p_static_w * spec.t_read_s),
                     "n_time_points": int(len(r.t_s)), "t_stop_s": t_stop_s, "wall_s": time.perf_counter() - t0})
        log.info("transient %dx%d: settles in %.3g s, dynamic %.3g J vs static %.3g J per read", n, n,
                 r.settling_time_s, r.e_dynamic_j, r.p_static_w * spec.t_read_s)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16x16 arrays, fewer samples")
    parser.add_argument("--json", default="", help="write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("spice").setLevel(logging.WARNING)
    logging.getLogger("surrogate").setLevel(logging.WARNING)
    n_g, n_v = (10, 16) if args.quick else (14, 32)
    out: dict = {"command": "python bench/energy_spice.py" + (" --quick" if args.quick else ""),
                 "ngspice": ngspice.info().version, "circuits": {}}
    for name, entry in circuits(args.quick).items():
        spec = spec_from_config(name, entry)
        log.info("%s %dx%d", name, spec.rows, spec.cols)
        out["circuits"][name] = {"rows": spec.rows, "cols": spec.cols, "netlist": Path(spec.netlist_path).name,
                                 "overhead": overhead(spec, 3, n_v), "fidelity": fidelity(spec, n_g, n_v)}
        o, f = out["circuits"][name]["overhead"], out["circuits"][name]["fidelity"]
        t = f["energy_model"]["fidelity"]["test"]
        log.info("  overhead x%.2f (%s); model RMS rel %.2e vs ideal %.2e (%.0fx); residual max %.1e", o["ratio"],
                 o["path"], t["rms_rel"], t["ideal_rms_rel"], t["improvement_over_ideal"], f["conservation_residual_max"])
    sizes = (8, 16) if args.quick else (16, 32, 64)
    out["dynamic"] = dynamic(sizes, 1e-9 if args.quick else 2e-9, 2e-12)
    text = json.dumps(out, indent=2, sort_keys=True)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
