"""Design cell_iv: the cell's I-V measured by ngspice, factored into a few functions of the voltage, inside one
step of the array's nodal equations, ridge-fitted in closed form. Checked against the exact cell models, its own
unfused path, a saved file, and the 1S1R selector cell's held-out ngspice data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spice import ngspice
from spice.circuit import spec_from_config
from spice.exact import cell_model
from surrogate import fidelity
from surrogate.cell_iv import CellIVRidge, interpolate
from surrogate.cli import main as surrogate_main
from surrogate.data import load_splits
from surrogate.io import load_surrogate
from surrogate.params import TrainParams
from surrogate.physics import TileSpec
from surrogate.train import train
from tests.test_surrogate_auto import ARRAY_8X8, SHIPPED, simulate

pytestmark = pytest.mark.usefixtures("one_torch_thread")
F64 = torch.float64


@pytest.fixture(scope="module")
def selector(tmp_path_factory):
    path = simulate(tmp_path_factory.mktemp("cell_iv"), "s1r8", SHIPPED["one_s_one_r_1v"], seed=5)
    return path, load_splits(path, seed=1)


def test_interpolation_is_numpys_and_clamps():
    table = torch.tensor([[0.0, 1.0, 4.0, 9.0], [1.0, 0.0, 1.0, 0.0]], dtype=F64)
    x = torch.tensor([[-0.5, 0.0, 0.25, 1.0 / 3.0, 0.9, 1.0, 2.0]], dtype=F64)
    out = interpolate(x, 0.0, 1.0, table)
    grid = np.linspace(0.0, 1.0, 4)
    for k in range(2):
        np.testing.assert_allclose(out[k].numpy(), np.interp(x.numpy(), grid, table[k].numpy()), rtol=0, atol=1e-15)


@pytest.mark.spice
@pytest.mark.parametrize("netlist, extra", [("one_s_one_r.cir", {"v_read_max_v": 1.0}),
                                            ("memristor_sinh.cir", {"v_read_max_v": 0.5}),
                                            ("one_t_one_r.cir", {"v_gate_v": 1.8})])
def test_ngspice_cell_iv_is_the_exact_cell_model(netlist, extra):
    spec = spec_from_config("c", {**ARRAY_8X8, "netlist": f"data/circuits/{netlist}", **extra})
    g = np.linspace(spec.g_off_s, spec.g_on_s, 5)
    v, i_a = ngspice.measure_cell_iv(spec, 21, g)
    assert v[0] == min(spec.v_read_min_v, 0.0) and v[-1] == pytest.approx(spec.v_read_max_v)
    gg, vv = (torch.as_tensor(x) for x in np.meshgrid(g, v, indexing="ij"))
    exact = cell_model(spec).current(gg, vv, torch.zeros_like(vv)).numpy()
    np.testing.assert_allclose(i_a, exact, rtol=0, atol=1e-6 * np.abs(exact).max())


def test_without_a_cell_iv_the_model_refuses_to_fold():
    tile = TileSpec(rows=4, cols=3, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=0.0, v_read_max_v=1.0,
                    r_driver_ohm=100.0, r_sense_ohm=100.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)
    with pytest.raises(RuntimeError, match="no cell I-V: call init_from_circuit"):
        CellIVRidge(tile).fold(torch.full((1, 4, 3), 1e-5, dtype=F64))


@pytest.mark.spice
def test_three_functions_of_the_voltage_fit_the_selector_cell():
    """The 1S1R I-V: rank 3, interpolated in g and v, within 2e-4 of the largest current (measured 1.0e-4),
    where the best cubic in v is off by >1e-2."""
    spec = spec_from_config("c", {**ARRAY_8X8, "netlist": "data/circuits/one_s_one_r.cir", "v_read_max_v": 1.0})
    model = CellIVRidge(TileSpec.from_circuit(spec))
    model.init_from_circuit(spec)
    g = torch.linspace(spec.g_off_s, spec.g_on_s, 7, dtype=F64)[:, None]
    v = torch.linspace(0.0, 1.0, 57, dtype=F64)[None, :].expand(7, 57)
    exact = cell_model(spec).current(g.expand(7, 57), v, torch.zeros_like(v))
    rank3 = (model._cell_coef(g) * model._phi(v)).sum(0)
    scale = float(exact.abs().max())
    assert float((rank3 - exact).abs().max()) < 2e-4 * scale
    powers = torch.stack([v[0], v[0] ** 2, v[0] ** 3], 1)
    cubic = powers @ torch.linalg.lstsq(powers, exact.T).solution
    assert float((cubic - exact.T).abs().max()) > 1e-2 * scale


@pytest.mark.spice
def test_the_folded_path_the_unfused_path_and_a_saved_file_agree(selector, tmp_path):
    data, splits = selector
    out = tmp_path / "s.h5"
    assert surrogate_main(["train", "--data", str(data), "--out", str(out), "--design", "cell_iv", "--quiet"]) == 0
    model = load_surrogate(out, expect_spec=splits.spec)
    assert model.design == "cell_iv" and model.line_resistances_ohm()[0] > 0
    g = torch.as_tensor(splits.test.g_s, dtype=F64)
    v = torch.as_tensor(splits.test.v_v[:12], dtype=F64).expand(len(g), 12, -1).contiguous()
    bound = model.bind(g)(v)
    unfused = model(g, v)
    torch.testing.assert_close(bound, unfused, rtol=1e-10, atol=1e-12 * model.full_scale_a)
    shared = model.bind_shared(g.reshape(1, len(g), 8, 8))(v[:1])[0]
    torch.testing.assert_close(shared, bound, rtol=1e-10, atol=1e-12 * model.full_scale_a)
    g.requires_grad_(False)
    v.requires_grad_(True)
    model.bind(g)(v).sum().backward()  # the DNN layers' straight-through training needs dI/dv
    assert v.grad is not None and bool(torch.isfinite(v.grad).all()) and float(v.grad.abs().sum()) > 0


@pytest.mark.spice
def test_on_held_out_selector_matrices_it_beats_ridge_and_meets_the_target(selector):
    """1S1R at 1 V, 8x8, 100 ohm driver and sense: >= 300x better than ideal and <= 5e-4 of full scale on
    held-out ngspice matrices, and several times better than the ridge design."""
    _, splits = selector
    reports = {d: fidelity.evaluate(train(splits, TrainParams(design=d), progress=False).model, splits, ridge=False)[0]
               for d in ("cell_iv", "ridge")}
    err = {d: r["models"]["surrogate"]["rel_rms_fs"] for d, r in reports.items()}
    assert err["cell_iv"] <= 5e-4 and reports["cell_iv"]["improvement_over_ideal"]["surrogate"] >= 300, json.dumps(err)
    assert err["cell_iv"] < err["ridge"] / 3, err


def synthetic_cell_iv_model() -> CellIVRidge:
    """A cell_iv model without ngspice: a sinh cell's I-V table, random weights (the evaluation paths only)."""
    tile = TileSpec(rows=8, cols=6, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=0.0, v_read_max_v=1.0,
                    r_driver_ohm=100.0, r_sense_ohm=100.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)
    model = CellIVRidge(tile)
    v = np.linspace(0.0, 1.0, model.iv_points)
    g = np.linspace(tile.g_off_s, tile.g_on_s, model.iv_levels)[:, None]
    model.set_cell_iv(v, g * 0.2 * np.sinh(v / 0.2) + 1e-7 * (v / 0.1) ** 2)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.coef.copy_(0.3 * torch.randn(model.coef.shape, generator=gen, dtype=F64))
        model.intercept.fill_(1e-3)
        model.lines_ohm.copy_(torch.tensor([100.0, 70.0], dtype=F64))
    return model.requires_grad_(False)


def test_at_the_dacs_levels_the_inputs_come_from_a_table_with_the_same_numbers(monkeypatch):
    """bind_shared(input_levels=n) on DAC voltages (float32, a strided view as the crossbar layers pass them)
    gathers phi and phi' from per-level tables: the numbers of the interpolating path, which it does not call.
    Off the levels, or with autograd on the voltages, it interpolates."""
    from dnn.mapping import dac_levels, dac_quantize

    model = synthetic_cell_iv_model()
    gen = torch.Generator().manual_seed(0)
    g = model.g_off_s + (model.g_on_s - model.g_off_s) * torch.rand(2, 3, 8, 6, generator=gen, dtype=F64)
    n = dac_levels(6)
    x = torch.rand(2, 8, 40, generator=gen).transpose(1, 2)  # [G, B, rows], not contiguous
    v = dac_quantize(x, 6, model.v_read_max_v)[0]
    assert not v.is_contiguous() and v.dtype == torch.float32
    off_level = v + 0.3 * model.v_read_max_v / n
    interpolated, interpolated_off = (model.bind_shared(g)(x) for x in (v, off_level))
    tabulated = model.bind_shared(g, input_levels=n)
    calls = []
    interpolate_inputs = model._inputs
    monkeypatch.setattr(model, "_inputs", lambda *a: calls.append(a[0].shape) or interpolate_inputs(*a))
    out = tabulated(v)
    assert calls == []
    torch.testing.assert_close(out, interpolated, rtol=2e-6, atol=1e-6 * model.full_scale_a)
    torch.testing.assert_close(tabulated(off_level), interpolated_off, rtol=0, atol=0)
    assert len(calls) == 1
    v_grad = v.detach().clone().requires_grad_(True)
    tabulated(v_grad).sum().backward()
    assert len(calls) == 2 and float(v_grad.grad.abs().sum()) > 0
    # the per-level tables are the interpolated functions at the levels, whatever the path's dtype
    phi_at, slope_at = model._level_tables(n)
    levels = torch.arange(-n, n + 1, dtype=F64) / n * model.v_read_max_v
    torch.testing.assert_close(phi_at.T, model._phi(levels), rtol=1e-12, atol=0)
    torch.testing.assert_close(slope_at.T, model._phi(levels, slope=True), rtol=1e-12, atol=1e-15)


def test_the_grouped_evaluation_is_the_per_tile_one():
    """bind_shared (groups of tiles side by side, maps in amperes) equals bind and the unfused path."""
    model = synthetic_cell_iv_model()
    gen = torch.Generator().manual_seed(1)
    g = model.g_off_s + (model.g_on_s - model.g_off_s) * torch.rand(2, 3, 8, 6, generator=gen, dtype=F64)
    v = torch.rand(2, 5, 8, generator=gen, dtype=F64) * model.v_read_max_v
    shared = model.bind_shared(g)(v)
    per_tile = model.bind(g.reshape(6, 8, 6))(v.repeat_interleave(3, 0)).reshape(2, 3, 5, 6)
    unfused = model(g.reshape(6, 8, 6), v.repeat_interleave(3, 0)).reshape(2, 3, 5, 6)
    torch.testing.assert_close(shared, per_tile, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(per_tile, unfused, rtol=1e-10, atol=1e-14)
    assert model.macs_per_vector() == (7 * 8 + 1) * 6
