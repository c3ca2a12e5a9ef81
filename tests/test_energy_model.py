"""The energy model of a circuit (surrogate.energy): exact where its physics is, fitted to ngspice's read power,
measured on held-out matrices against ngspice and the ideal formula, stored in and loaded from the surrogate file."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from dnn.mvm import PoweredTileMVM
from spice import nodal
from spice.cli import main as spice_main
from spice.io import SpiceDataset
from spice.sampling import SamplingConfig
from spice.simulate import simulate_shard
from surrogate.cli import main as surrogate_main
from surrogate.data import split_dataset
from surrogate.energy import (
    POWER_MODEL,
    EnergyModel,
    EnergyModelError,
    fit_and_measure,
    loaded_admittance,
    model_resistances,
)
from surrogate.io import describe, load_surrogate, save_surrogate
from tests.conftest import CIRCUITS


def test_without_wire_resistance_the_loaded_form_is_the_nodal_admittance(make_spec):
    """Driver and sense only: Y = (1 + R_d A)^-1 A is exact (an independent check of the elimination)."""
    spec = make_spec(rows=6, cols=5, r_driver_ohm=700.0, r_sense_ohm=400.0, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0)
    g = np.random.default_rng(0).uniform(spec.g_off_s, spec.g_on_s, (2, 6, 5))
    y = loaded_admittance(torch.as_tensor(g), spec.r_driver_ohm, spec.r_sense_ohm).numpy()
    for k in range(2):
        exact = nodal.input_admittance(spec, g[k])
        np.testing.assert_allclose(y[k], exact, rtol=0, atol=1e-9 * np.abs(exact).max())


def dataset(spec, n_conductance=10, n_vectors=12, seed=3) -> SpiceDataset:
    cfg = SamplingConfig(n_conductance=n_conductance, n_vectors=n_vectors, seed=seed, sampler="mixed")
    shard = simulate_shard(spec, cfg, 0, progress=False)
    return SpiceDataset(spec=spec, attrs={"sampling": cfg.to_json()}, **shard.arrays())


@pytest.mark.parametrize("cell", ["resistive.cir", "memristor_sinh.cir"])
def test_the_fitted_model_meets_the_target_on_held_out_matrices(make_spec, cell):
    spec = make_spec(netlist=str(CIRCUITS / cell), rows=12, cols=10, r_driver_ohm=1000.0, r_sense_ohm=1000.0,
                     r_wire_row_ohm=10.0, r_wire_col_ohm=10.0, v_read_max_v=0.2)
    ds = dataset(spec)
    splits = split_dataset(ds, val_fraction=0.2, test_fraction=0.3, seed=0)
    model = fit_and_measure(splits)
    test = model.fidelity["test"]
    assert len(model.features) == (1 if cell == "resistive.cir" else 4)
    assert test["n_matrices"] == 3 and test["n_samples"] > 20
    assert test["rms_rel"] <= 0.01 and test["meets_target"]
    assert test["improvement_over_ideal"] >= 10.0
    # the reported error is the model's error against ngspice on those samples, recomputed here
    t = splits.test
    keep = t.p_w > 0
    pred = model.predict_w(t.g_s, t.g_index[keep], t.v_v[keep])
    rel = (pred - t.p_w[keep]) / t.p_w[keep]
    assert np.sqrt(np.mean(rel ** 2)) == pytest.approx(test["rms_rel"], rel=1e-9, abs=0)
    ideal = np.einsum("nr,nrc->n", t.v_v[keep] ** 2, t.g_s[t.g_index[keep]])
    assert np.sqrt(np.mean(((ideal - t.p_w[keep]) / t.p_w[keep]) ** 2)) == pytest.approx(test["ideal_rms_rel"],
                                                                                          rel=1e-9, abs=0)
    assert "test_dnn_like" in model.fidelity  # the mixed sampler put DNN-like matrices in the test split


def test_bound_power_matches_predictions_and_is_batched(make_spec):
    spec = make_spec(netlist=str(CIRCUITS / "memristor_sinh.cir"), rows=6, cols=5)
    splits = split_dataset(dataset(spec, n_conductance=6, n_vectors=8), val_fraction=0.2, test_fraction=0.2, seed=0)
    model = fit_and_measure(splits)
    g = torch.as_tensor(splits.train.g_s[:3])
    v = torch.as_tensor(np.random.default_rng(1).uniform(0, 0.2, (3, 4, 6)))
    p = model.bind(g)(v)
    assert p.shape == (3, 4) and p.dtype == torch.float64
    for t in range(3):
        np.testing.assert_allclose(p[t].numpy(), model.predict_w(g.numpy(), np.full(4, t), v[t].numpy()), rtol=1e-12)
    assert model.bind(g)(v.float()).dtype == torch.float32
    assert model.bind(g)(v[:, :0]).shape == (3, 0)


def test_the_record_round_trips_and_refuses_bad_fields():
    model = EnergyModel(features=("v^T Y v",), theta=(1.01,), r_driver_ohm=1e3, r_sense_ohm=1e3, r_wire_row_ohm=5.0,
                        r_wire_col_ohm=5.0, wire_fraction_row=0.35, wire_fraction_col=0.3, v_scale_v=0.2)
    assert EnergyModel.from_dict(json.loads(model.to_json())) == model
    bad = model.to_dict()
    with pytest.raises(EnergyModelError, match="unknown keys \\['extra'\\]"):
        EnergyModel.from_dict({**bad, "extra": 1})
    with pytest.raises(EnergyModelError, match="r_driver_ohm = -1.0: expected a finite number >= 0"):
        EnergyModel.from_dict({**bad, "r_driver_ohm": -1.0})
    with pytest.raises(EnergyModelError, match="features"):
        EnergyModel.from_dict({**bad, "theta": [1.0, 2.0]})
    with pytest.raises(EnergyModelError, match="format 2 is not supported"):
        EnergyModel.from_dict({**bad, "format": 2})


def test_a_driver_subcircuit_has_no_energy_model(make_spec, tmp_path):
    path = tmp_path / "drv.cir"
    path.write_text((CIRCUITS / "resistive.cir").read_text() + "\n.subckt driver in out params: r=1e3\nR1 in out {r}\n.ends driver\n")
    with pytest.raises(EnergyModelError, match="driver subcircuit has no energy model"):
        model_resistances(make_spec(netlist=str(path)))
    assert model_resistances(make_spec(netlist=str(CIRCUITS / "tia_sense.cir")))[1] < 1.0  # the TIA's input


def test_the_surrogate_file_carries_the_model_and_the_loaded_surrogate_draws_power(tmp_path):
    circuit = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 6, "cols": 5, "r_driver_ohm": 500.0,
               "r_sense_ohm": 500.0, "r_wire_row_ohm": 10.0, "r_wire_col_ohm": 10.0, "t_read_s": 20e-9}
    data, out = tmp_path / "d.h5", tmp_path / "s.h5"
    assert spice_main(["simulate", "--circuit", json.dumps(circuit), "--sampling",
                       '{"n_conductance": 10, "n_vectors": 8}', "--out", str(data), "--quiet"]) == 0
    assert surrogate_main(["train", "--data", str(data), "--out", str(out), "--design", "ridge", "--quiet"]) == 0
    model = load_surrogate(out)
    assert isinstance(model, PoweredTileMVM) and model.power_model == POWER_MODEL
    assert model.tile.t_read_s == 20e-9
    energy = model.energy_model
    assert energy.fidelity["test"]["rms_rel"] <= 0.01
    g = torch.full((2, 6, 5), 3e-5, dtype=torch.float64)
    v = torch.full((2, 3, 6), 0.1, dtype=torch.float64)
    np.testing.assert_array_equal(model.bind_power(g)(v).numpy(), energy.bind(g)(v).numpy())
    text = describe(out)
    assert "energy model: v^T Y v" in text and "held-out RMS relative error" in text
    with h5py.File(out) as f:
        assert json.loads(f.attrs["energy_model"])["theta"] == list(energy.theta)
    # a file without an energy model (a version 2 file has none) loads as a plain tile model
    plain = tmp_path / "plain.h5"
    save_surrogate(plain, load_surrogate(out), model.spec, train_params={}, history={}, data_sha256="", data_path="",
                   split={})
    again = load_surrogate(plain)
    assert not isinstance(again, PoweredTileMVM) and "energy model: none" in describe(plain)


def test_fidelity_on_a_dnn_distribution_dataset(tmp_path):
    """`surrogate fidelity --whole-file` on DNN-like matrices the model never saw reports its read-power error."""
    circuit = {"netlist": str(CIRCUITS / "memristor_sinh.cir"), "rows": 6, "cols": 5, "r_driver_ohm": 500.0,
               "r_sense_ohm": 500.0, "r_wire_row_ohm": 10.0, "r_wire_col_ohm": 10.0}
    data, dnn, out, report = (tmp_path / n for n in ("d.h5", "dnn.h5", "s.h5", "f.json"))
    assert spice_main(["simulate", "--circuit", json.dumps(circuit), "--sampling",
                       '{"n_conductance": 10, "n_vectors": 8, "seed": 1}', "--out", str(data), "--quiet"]) == 0
    assert spice_main(["simulate", "--circuit", json.dumps(circuit), "--sampling",
                       '{"n_conductance": 4, "n_vectors": 8, "seed": 2, "sampler": "dnn_like"}', "--out", str(dnn),
                       "--quiet"]) == 0
    assert surrogate_main(["train", "--data", str(data), "--out", str(out), "--design", "ridge", "--quiet"]) == 0
    assert surrogate_main(["fidelity", "--surrogate", str(out), "--data", str(dnn), "--whole-file", "--json",
                           str(report), "--quiet"]) == 0
    energy = json.loads(report.read_text())["energy_model"]
    assert energy["n_matrices"] == 4 and energy["rms_rel"] <= 0.01 and energy["improvement_over_ideal"] >= 10
