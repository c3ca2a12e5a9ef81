"""Where a crossbar read's power goes in the DNN stage (cells, row wires, column wires, driver, sense): the tile
models' splits checked against ngspice's and the nodal solver's element-by-element dissipation, their sum against
the total, and the split carried through the energy meter into the result JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dnn.config import CrossbarConfig
from dnn.energy import EnergyMeter, metering
from dnn.layers import CrossbarLinear
from dnn.mvm import POWER_PARTS, IdealTileMVM, PartsPoweredTileMVM, TransferTileMVM
from dnn.periphery import PERIPHERY_PRESETS
from spice import nodal
from spice.sampling import SamplingConfig
from spice.simulate import simulate_shard
from surrogate.energy import LINEAR_FEATURES, NONLINEAR_FEATURES, POWER_SPLIT, EnergyModel, attach
from tests.conftest import CIRCUITS

EPS = np.finfo(np.float64).eps
CELLS = POWER_PARTS.index("cells")


def rounding_rtol(spec) -> float:
    """Relative tolerance of two float64 computations of the same read power by different sums: eps times the
    number of elements summed (~3 rows cols) times the nodal matrix's conditioning, bounded by the ratio of the
    largest to the smallest conductance in the array (a wire or end against an OFF cell), with a margin of 10."""
    resistances = [r for r in (spec.r_driver_ohm, spec.r_sense_ohm, spec.r_wire_row_ohm, spec.r_wire_col_ohm) if r > 0]
    g_max = max([spec.g_on_s, *(1.0 / r for r in resistances)])
    return 10 * 3 * spec.rows * spec.cols * EPS * g_max / spec.g_off_s


def exact_tile_model(spec) -> TransferTileMVM:
    return TransferTileMVM.of(
        spec.tile, transfer_fn=lambda gs: np.stack([nodal.transfer_matrix(spec, x) for x in gs]),
        admittance_fn=lambda gs: np.stack([nodal.input_admittance(spec, x) for x in gs]),
        power_forms_fn=lambda gs: np.stack([nodal.power_quadratic_forms(spec, x) for x in gs]))


def test_power_parts_are_the_spice_datasets_order():
    assert POWER_PARTS == ("cells", "row_wires", "col_wires", "driver", "sense")


def test_the_exact_split_is_ngspices_and_the_nodal_element_sums(make_spec):
    """A linear 5x4 array with every resistance: the per-part quadratic forms against ngspice's own
    dissipation per part (/p_parts_w of a real solve) and the nodal solver's element-by-element sums;
    the parts sum to the exact total v^T Y v within float64 rounding."""
    spec = make_spec(rows=5, cols=4, r_driver_ohm=300.0, r_sense_ohm=200.0, r_wire_row_ohm=10.0, r_wire_col_ohm=7.0,
                     v_read_min_v=-0.2)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=2, n_vectors=6, seed=5), 0, progress=False)
    assert not shard.failed.any()
    mvm = exact_tile_model(spec)
    assert isinstance(mvm, PartsPoweredTileMVM) and mvm.power_split.startswith("exact")
    g = torch.as_tensor(shard.g_s, dtype=torch.float64)  # [2, 5, 4]
    v = torch.as_tensor(np.stack([shard.v_v[shard.g_index == k] for k in range(2)]), dtype=torch.float64)
    parts = mvm.bind_power_parts(g)(v).numpy()  # [2, 6, 5]
    total = mvm.bind_power(g)(v).numpy()
    assert parts.shape == (2, 6, len(POWER_PARTS))
    for k in range(2):
        spice_parts = shard.p_parts_w[shard.g_index == k]
        scale = spice_parts.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(parts[k] / scale, spice_parts / scale, rtol=0, atol=1e-6)  # ngspice: 1e-6
        _p_src, element_parts = nodal.element_powers(spec, shard.g_s[k], v[k].numpy())
        np.testing.assert_allclose(parts[k], element_parts, rtol=1e-9, atol=1e-9 * element_parts.max())
    assert np.all(parts[..., [POWER_PARTS.index(p) for p in ("row_wires", "col_wires", "driver", "sense")]] > 0)
    np.testing.assert_allclose(parts.sum(axis=2), total, rtol=rounding_rtol(spec), atol=0)
    without = TransferTileMVM.of(spec.tile, transfer_fn=lambda gs: gs)
    with pytest.raises(ValueError, match="no per-part power forms"):
        without.bind_power_parts(g)


def test_the_ideal_tile_model_puts_everything_in_the_cells(make_spec):
    spec = make_spec(rows=5, cols=4)
    rng = np.random.default_rng(1)
    g = torch.tensor(rng.uniform(spec.g_off_s, spec.g_on_s, (2, 5, 4)))
    v = torch.tensor(rng.uniform(-0.2, 0.2, (2, 3, 5)))
    ideal = IdealTileMVM.of(spec.tile)
    assert isinstance(ideal, PartsPoweredTileMVM) and "cells" in ideal.power_split
    parts = ideal.bind_power_parts(g)(v)
    np.testing.assert_array_equal(parts[..., CELLS].numpy(), ideal.bind_power(g)(v).numpy())  # the same code
    others = [k for k in range(len(POWER_PARTS)) if k != CELLS]
    assert torch.count_nonzero(parts[..., others]) == 0


def energy_model(spec, features=LINEAR_FEATURES, theta=(1.0,), a=0.0, b=0.0) -> EnergyModel:
    return EnergyModel(features=features, theta=theta, r_driver_ohm=spec.r_driver_ohm, r_sense_ohm=spec.r_sense_ohm,
                       r_wire_row_ohm=spec.r_wire_row_ohm, r_wire_col_ohm=spec.r_wire_col_ohm, wire_fraction_row=a,
                       wire_fraction_col=b, v_scale_v=0.2)


def test_the_energy_models_split_is_exact_without_wire_resistance(make_spec):
    """Driver and sense only: the loaded array is the real one, so its split (torch, dense elimination) equals
    the nodal solver's element sums (scipy, sparse solve of every node)."""
    spec = make_spec(rows=6, cols=5, r_driver_ohm=700.0, r_sense_ohm=400.0, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0)
    rng = np.random.default_rng(2)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (2, 6, 5))
    v = rng.uniform(-0.2, 0.2, (2, 7, 6))
    model = energy_model(spec)
    parts = model.bind_parts(torch.as_tensor(g))(torch.as_tensor(v)).numpy()
    for k in range(2):
        _p_src, element_parts = nodal.element_powers(spec, g[k], v[k])
        np.testing.assert_allclose(parts[k], element_parts, rtol=1e-9, atol=1e-9 * element_parts.max())


@pytest.mark.parametrize("features, theta", [(LINEAR_FEATURES, (1.03,)), (NONLINEAR_FEATURES, (0.98, 0.2, -0.05, 0.01))])
def test_the_energy_models_parts_sum_to_its_total(make_spec, features, theta):
    """With wires: the lumped driver and row wires share the source currents' power in proportion to their
    resistances (likewise sense and column wires), the curvature features go to the cells, and the parts sum
    to the model's total within float64 rounding."""
    spec = make_spec(rows=12, cols=10, r_driver_ohm=1000.0, r_sense_ohm=1000.0, r_wire_row_ohm=10.0,
                     r_wire_col_ohm=5.0)
    rng = np.random.default_rng(3)
    g = torch.as_tensor(rng.uniform(spec.g_off_s, spec.g_on_s, (3, 12, 10)))
    v = torch.as_tensor(rng.uniform(-0.2, 0.2, (3, 9, 12)))
    model = energy_model(spec, features, theta, a=0.3, b=0.4)
    parts = model.bind_parts(g)(v).numpy()
    total = model.bind(g)(v).numpy()
    np.testing.assert_allclose(parts.sum(axis=2), total, rtol=rounding_rtol(spec), atol=0)
    at = POWER_PARTS.index
    np.testing.assert_allclose(parts[..., at("row_wires")] / parts[..., at("driver")], 0.3 * 10 * 10.0 / 1000.0,
                               rtol=1e-12)
    np.testing.assert_allclose(parts[..., at("col_wires")] / parts[..., at("sense")], 0.4 * 12 * 5.0 / 1000.0,
                               rtol=1e-12)
    if len(features) == 1:
        assert np.all(parts > 0)


def test_a_surrogate_with_an_energy_model_names_its_split(make_spec):
    spec = make_spec(rows=6, cols=5)

    class Surrogate:  # what surrogate.io.load_surrogate returns, to the protocol: a tile and bind
        tile = spec.tile

        def bind(self, g_s):
            return lambda v_v: torch.bmm(v_v, g_s)

    surrogate = Surrogate()
    energy = energy_model(spec, a=0.3, b=0.3)
    attach(surrogate, energy)
    assert isinstance(surrogate, PartsPoweredTileMVM) and surrogate.power_split == POWER_SPLIT
    assert POWER_SPLIT.startswith("model: the energy model's lumped array")
    g = torch.full((1, 6, 5), 3e-5, dtype=torch.float64)
    v = torch.full((1, 2, 6), 0.1, dtype=torch.float64)
    np.testing.assert_array_equal(surrogate.bind_power_parts(g)(v).numpy(), energy.bind_parts(g)(v).numpy())


# ------------------------------------------------------------------ the energy meter and the result JSON
G_MIN, G_MAX, V_MAX, T_READ = 5e-6, 50e-6, 0.2, 50e-9


@pytest.mark.parametrize("sample", [0, 3])
def test_the_meter_reports_the_array_parts_summing_to_the_array(make_spec, sample):
    spec = make_spec(rows=8, cols=4, r_driver_ohm=500.0, r_sense_ohm=500.0, r_wire_row_ohm=10.0, r_wire_col_ohm=10.0)
    torch.manual_seed(0)
    layer = CrossbarLinear.from_float(nn.Linear(20, 6), CrossbarConfig(), exact_tile_model(spec), name="fc")
    x = torch.randn(5, 20, generator=torch.Generator().manual_seed(1))
    meter = EnergyMeter(PERIPHERY_PRESETS["isaac_32nm"], power_sample_vectors=sample)
    with metering(layer, meter):
        layer(x)
        layer(x[:2])  # a second forward adds to the same tally
    out = meter.summary(7)
    (cost,) = out["per_layer"]
    assert out["power_split"] == cost["power_split"] and out["power_split"].startswith("exact")
    assert list(out["array_parts_j"]) == list(POWER_PARTS) and all(e > 0 for e in out["array_parts_j"].values())
    assert sum(out["array_parts_j"].values()) == pytest.approx(out["energy_breakdown_j"]["array"], rel=1e-12, abs=0)
    assert out["array_parts_j"] == cost["array_parts_j"]
    # the power is drawn through 500-ohm ends: the cells take less than the ideal formula says
    assert out["array_parts_j"]["cells"] < out["array_ideal_formula_j"]
    json.dumps(out, allow_nan=False)


def test_a_tile_model_that_tells_only_the_total_has_no_parts(make_spec):
    spec = make_spec(rows=8, cols=4)
    mvm = TransferTileMVM.of(spec.tile, transfer_fn=lambda gs: np.stack([nodal.transfer_matrix(spec, x) for x in gs]),
                             admittance_fn=lambda gs: np.stack([nodal.input_admittance(spec, x) for x in gs]))
    layer = CrossbarLinear.from_float(nn.Linear(20, 6), CrossbarConfig(), mvm, name="fc")
    meter = EnergyMeter(PERIPHERY_PRESETS["isaac_32nm"])
    with metering(layer, meter):
        layer(torch.randn(3, 20))
    out = meter.summary(3)
    assert out["array_parts_j"] is None and out["per_layer"][0]["array_parts_j"] is None
    assert out["power_split"].startswith("none: this transfer-matrix tile model has no per-part power forms")
    assert out["energy_breakdown_j"]["array"] > 0


@pytest.mark.usefixtures("one_torch_thread")
def test_an_exact_evaluation_reports_the_array_parts_per_method_and_layer(small_digits_model, tmp_path):
    """`dnn evaluate --mvm exact` on a 16x16 linear circuit: every method's energy carries the array's parts,
    per inference and per layer, named by the exact split, and they add up to the array energy."""
    from dnn.cli import main
    from dnn.results import EvaluationResult

    circuit = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 16, "cols": 16, "r_driver_ohm": 1000.0,
               "r_sense_ohm": 1000.0, "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0}
    evaluation = {"methods": ["none"], "seeds": [0], "calibration_samples": 32, "energy": {"n_images": 2}}
    out = tmp_path / "e.json"
    assert main(["evaluate", "-q", "--model", str(small_digits_model), "--circuit", json.dumps(circuit), "--mvm", "exact",
                 "--evaluation-json", json.dumps(evaluation), "--no-progress", "--device", "cpu",
                 "--out", str(out)]) == 0
    e = EvaluationResult.read(out).methods["none"].energy
    assert e["power_model"] == "exact nodal" and e["power_split"].startswith("exact: per-part quadratic forms")
    assert sum(e["array_parts_j"].values()) == pytest.approx(e["energy_breakdown_j"]["array"], rel=1e-9, abs=0)
    assert all(e["array_parts_j"][p] > 0 for p in POWER_PARTS)
    for layer in e["per_layer"]:
        assert sum(layer["array_parts_j"].values()) == pytest.approx(layer["energy_breakdown_j"]["array"], rel=1e-9, abs=0)
