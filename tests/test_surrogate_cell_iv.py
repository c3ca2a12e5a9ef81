"""Design cell_iv: the cell's I-V measured by ngspice, factored into a few functions of the voltage, inside one
step of the array's nodal equations, ridge-fitted in closed form. Checked against the exact cell models, its own
unfused path, a saved file, and the 1S1R selector cell's held-out ngspice data."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch

from spice import ngspice
from spice.circuit import spec_from_config
from spice.exact import cell_model
from surrogate import fidelity
from surrogate.cell_iv import (
    CELL_IV_ALPHA,
    LINEAR_FEATURES,
    LOADING_MAPS,
    CellIVRidge,
    interpolate,
    lookup,
    pack,
)
from surrogate.cli import main as surrogate_main
from surrogate.data import Split, load_splits
from surrogate.io import load_surrogate
from surrogate.params import TrainParams
from surrogate.physics import TileSpec, analytic_transfer, loading_maps
from surrogate.train import train
from tests.conftest import F64_EPS
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
        # another interpolation formula than numpy's (and FMA or not): a few ulp of the table's largest value
        np.testing.assert_allclose(out[k].numpy(), np.interp(x.numpy(), grid, table[k].numpy()), rtol=0,
                                   atol=4 * F64_EPS * float(table.abs().max()))


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
    with pytest.raises(RuntimeError, match=r"^cell_iv surrogate has no cell I-V: call init_from_circuit\(spec\) first$"):
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


def synthetic_cell_iv_model(v_read_max_v: float = 0.8, v_lo_v: float = -0.4) -> CellIVRidge:
    """A cell_iv model without ngspice: a sinh cell's I-V table over v_lo_v..v_read_max_v, random weights (the
    evaluation paths only)."""
    tile = TileSpec(rows=8, cols=6, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=v_lo_v, v_read_max_v=v_read_max_v,
                    r_driver_ohm=100.0, r_sense_ohm=100.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)
    model = CellIVRidge(tile)
    v = np.linspace(v_lo_v, v_read_max_v, model.iv_points)
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

    model = synthetic_cell_iv_model(v_lo_v=-0.8)  # both polarities: every level has its own phi
    gen = torch.Generator().manual_seed(0)
    g = model.g_off_s + (model.g_on_s - model.g_off_s) * torch.rand(2, 3, 8, 6, generator=gen, dtype=F64)
    n = dac_levels(6)
    x = 2 * torch.rand(2, 8, 40, generator=gen).transpose(1, 2) - 1  # [G, B, rows], not contiguous
    v = dac_quantize(x, 6, model.v_read_max_v)[0]
    v[:, 0, :4] = torch.tensor([n + 2, -n - 3, -n, -n + 1]) * (model.v_read_max_v / n)  # on levels, some beyond the range
    assert not v.is_contiguous() and v.dtype == torch.float32 and float(v.min()) < model.v_range_v[0]
    off_level = v + 0.3 * model.v_read_max_v / n
    interpolated, interpolated_off = (model.bind_shared(g)(x) for x in (v, off_level))
    tabulated = model.bind_shared(g, input_levels=n)
    calls = []
    interpolate_inputs = model._inputs
    monkeypatch.setattr(model, "_inputs", lambda *a: calls.append(a[0].shape) or interpolate_inputs(*a))
    out = tabulated(v)
    assert calls == []
    torch.testing.assert_close(out, interpolated, rtol=2e-6, atol=1e-6 * model.full_scale_a)
    torch.testing.assert_close(tabulated(off_level), interpolated_off, rtol=0, atol=0)  # same interpolation code
    assert len(calls) == 1
    v_grad = v.detach().clone().requires_grad_(True)
    tabulated(v_grad).sum().backward()
    assert len(calls) == 2 and float(v_grad.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match=r"v_v has shape \(40, 8\); expected \[2, B, 8\]"):
        tabulated(v[0])
    with pytest.raises(ValueError, match=r"v_v has shape \(1, 40, 8\); expected \[2, B, 8\]"):
        tabulated(v[:1])
    with pytest.raises(ValueError, match=r"g_s has shape \(6, 8, 6\); this surrogate expects \[G, K, 8, 6\]"):
        model.bind_shared(g.reshape(6, 8, 6))
    with pytest.raises(ValueError, match=r"g_s has shape \(2, 3, 6, 8\); this surrogate expects \[G, K, 8, 6\]"):
        model.bind_shared(g.transpose(2, 3))
    # the per-level tables are the interpolated functions at the levels, whatever the path's dtype
    phi_at, slope_at = model._level_tables(n)
    levels = torch.arange(-n, n + 1, dtype=F64) / n * model.v_read_max_v
    torch.testing.assert_close(phi_at.T, model._phi(levels), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(slope_at.T, model._phi(levels, slope=True), rtol=1e-12, atol=1e-13)


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
    g32 = g.float()  # as a crossbar layer binds: the maps are still formed in float64
    torch.testing.assert_close(model.bind_shared(g32)(v), model.bind_shared(g32.double())(v), rtol=1e-13, atol=0)
    assert model.macs_per_vector() == ((3 + 2 + 1) * 8 + 1) * 6
    # the features: c_k(G) times the loading maps of g / g_on (per full scale), analytic and ideal transfer / rows
    per_k, lin, c = model._maps(g[0])
    g_n = g[0] / model.g_on_s
    torch.testing.assert_close(per_k.unflatten(1, (3, 5)), c[:, :, None] * loading_maps(g_n, model.tile)[:, None]
                               / model.full_scale_a, rtol=1e-14, atol=0)
    torch.testing.assert_close(lin, torch.stack([analytic_transfer(g_n, model.tile), g_n], 1) / 8, rtol=1e-14, atol=0)


def test_lookup_is_numpys_interpolation_on_any_voltage_span():
    """The packed one-gather lookup equals np.interp on a span that does not start at 0, clamped at both ends."""
    gen = torch.Generator().manual_seed(2)
    table = torch.randn(2, 9, generator=gen, dtype=F64)
    x = torch.tensor([[-1.0, -0.5, -0.3, 0.1, 0.77, 1.49, 1.5, 2.0]], dtype=F64)
    out = lookup(x, -0.5, 1.5, pack(table))
    assert out.shape == (1, 8, 2)
    grid = np.linspace(-0.5, 1.5, 9)
    for k in range(2):
        np.testing.assert_allclose(out[0, :, k].numpy(), np.interp(x[0].numpy(), grid, table[k].numpy()), atol=1e-14)
        np.testing.assert_allclose(interpolate(x, -0.5, 1.5, table)[k, 0].numpy(), out[0, :, k].numpy(), atol=1e-14)


@pytest.mark.parametrize("kwargs, message", [({"n_basis": 0}, "n_basis must be an integer >= 1, got 0"),
                                             ({"n_basis": True}, "n_basis must be an integer >= 1, got True"),
                                             ({"n_basis": 2.0}, "n_basis must be an integer >= 1, got 2.0"),
                                             ({"iv_points": 2}, "iv_points must be an integer >= 3, got 2"),
                                             ({"iv_levels": 1}, "iv_levels must be an integer >= 2, got 1"),
                                             ({"alpha": -1e-9}, "alpha must be a number >= 0, got -1e-09"),
                                             ({"alpha": math.inf}, "alpha must be a number >= 0, got inf"),
                                             ({"alpha": True}, "alpha must be a number >= 0, got True"),
                                             ({"alpha": "0"}, "alpha must be a number >= 0, got '0'"),
                                             ({"gain_basis": 0}, "gain_basis must be an integer >= 1, got 0"),
                                             ({"gain_basis": 4}, "gain_basis must be at most n_basis=3, got 4")])
def test_bad_hyperparameters_are_refused_by_name(kwargs, message):
    tile = synthetic_cell_iv_model().tile
    with pytest.raises(ValueError, match=re.escape(message)):
        CellIVRidge(tile, **kwargs)


def test_settings_units_and_precision():
    """The documented defaults (33 conductances x 401 voltages, rank 3), the smallest valid settings, float64
    throughout, the units of the stored tensors and the resistances the noise model reads."""
    model = synthetic_cell_iv_model()
    assert model.hyperparameters() == {"n_basis": 3, "iv_points": 401, "iv_levels": 33, "alpha": CELL_IV_ALPHA,
                                       "gain_basis": 2}
    assert all(t.dtype == F64 for t in [*model.parameters(), *model.buffers()])
    assert model.param_units() == {"v_range_v": "V", "coef_g": "A", "lines_ohm": "ohm"}
    assert model.line_resistances_ohm() == (100.0, 70.0)
    small = CellIVRidge(model.tile, n_basis=1, iv_points=3, iv_levels=2, alpha=0, gain_basis=1)
    assert small.basis.shape == (1, 3) and small.coef_g.shape == (1, 2) and small.alpha == 0.0
    # phi' is the derivative of the tabulated phi on its voltage grid
    v = np.linspace(float(model.v_range_v[0]), float(model.v_range_v[1]), model.iv_points)
    np.testing.assert_allclose(model._slope_table().numpy(), np.gradient(model.basis[:2].numpy(), v, axis=1),
                               rtol=1e-9, atol=1e-12)
    norm = model.normalization()
    assert norm["coef"] == model.coef.tolist() and norm["intercept"] == 1e-3 and norm["lines_ohm"] == [100.0, 70.0]
    assert norm["v_range_v"] == [-0.4, 0.8] and norm["full_scale_a"] == model.full_scale_a
    assert norm["loading_maps"] == list(LOADING_MAPS) and norm["linear_features"] == list(LINEAR_FEATURES)
    assert norm["conductance"] == "g_n = g_s / g_on_s; c_k(g_s) interpolated in coef_g (A)"
    assert norm["voltage"] == "v_n = v_v / v_read_max_v; phi_k(v_v) interpolated in basis over v_range_v"
    assert norm["output"] == ("i_a = full_scale_a * i_n; i_n = sum_f coef_f (x_f - feature_mean_f) / feature_scale_f + "
                              "intercept, x = (phi_k(v) @ (c_k(G) * M_m))_c / (1 + r_s D_c) / full_scale_a and "
                              "(v_n @ [T_an, g_n])_c / rows (surrogate.cell_iv)")


def _split_of(model: CellIVRidge, n_matrices: int, n_vectors: int, seed: int) -> Split:
    """Samples of the model itself (what a perfect fit reproduces)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = model.g_off_s, model.g_on_s
    g = lo + (hi - lo) * torch.rand(n_matrices, model.rows, model.cols, generator=gen, dtype=F64)
    v = model.v_read_max_v * torch.rand(n_matrices, n_vectors, model.rows, generator=gen, dtype=F64)
    with torch.no_grad():
        i_a = model(g, v)
    return Split(g_s=g.numpy(), g_rows=np.arange(n_matrices), g_index=np.repeat(np.arange(n_matrices), n_vectors),
                 v_v=v.reshape(-1, model.rows).numpy(), i_a=i_a.reshape(-1, model.cols).numpy(),
                 i_ideal_a=(v @ g).reshape(-1, model.cols).numpy())


def test_the_fit_finds_the_effective_sense_resistance_and_the_weights(caplog):
    """On samples of a cell_iv model whose effective sense is 0.5x the circuit's, a fresh model of the same cell
    picks that resistance from SENSE_FACTORS and reproduces the samples, and says so in the log."""
    base = synthetic_cell_iv_model(v_read_max_v=1.0, v_lo_v=0.0)
    truth = CellIVRidge(dataclasses.replace(base.tile, r_sense_ohm=100.1))
    truth.load_state_dict(base.state_dict())
    with torch.no_grad():
        truth.lines_ohm.copy_(torch.tensor([100.0, 100.1 * 0.3], dtype=F64))
    train_split, test_split = _split_of(truth, 10, 48, seed=4), _split_of(truth, 3, 32, seed=5)
    model = CellIVRidge(truth.tile)
    with caplog.at_level("INFO", logger="surrogate.cell_iv"):
        model.set_cell_iv(np.linspace(0.0, 1.0, truth.iv_points), (truth.coef_g.T @ truth.basis).numpy())
        model.init_from_data(train_split)
    assert model.line_resistances_ohm() == (100.0, pytest.approx(100.1 * 0.3, rel=1e-14))
    with torch.no_grad():
        pred = model(torch.as_tensor(test_split.g_s)[test_split.g_index], torch.as_tensor(test_split.v_v)[:, None])
    np.testing.assert_allclose(pred[:, 0].numpy(), test_split.i_a, rtol=0, atol=1e-7 * model.full_scale_a)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("cell I-V: 33 x 401 ngspice points over 0..1 V; 3 basis functions fit it within ")
    assert float(messages[0].split("within ")[1].split(" ")[0]) < 1e-12  # the table is of rank 3
    calibration = [m for m in messages if m.startswith("cell_iv: effective R_sense 30 ohm (circuit 100); rms ")]
    assert len(calibration) == 1 and calibration[0].endswith(" of full scale on the calibration samples"), messages
    assert float(calibration[0].split("rms ")[1].split(" ")[0]) < 1e-10
    assert f"cell_iv fitted on {10 * 48 * 6} (sample, column) pairs, {len(model.coef)} features" in messages
    empty = Split(**{k: None if v is None else v[:0] for k, v in vars(train_split).items()})
    with pytest.raises(ValueError, match="^the training split is empty: no samples to fit the cell_iv model on$"):
        model.init_from_data(empty)


def test_the_column_gain_takes_the_slopes_of_the_first_gain_basis_functions_and_old_files_all(tmp_path):
    """gain_basis sets how many basis slopes form D (folded, grouped and unfused paths agree for each); a file
    written before the setting existed (no gain_basis stored) loads with every basis function in the gain, as
    it was fitted."""
    from surrogate.models import from_architecture

    base = synthetic_cell_iv_model()
    gen = torch.Generator().manual_seed(7)
    g = base.g_off_s + (base.g_on_s - base.g_off_s) * torch.rand(2, 2, 8, 6, generator=gen, dtype=F64)
    v = torch.rand(2, 5, 8, generator=gen, dtype=F64) * base.v_read_max_v
    out = {}
    for k_g in (1, 2, 3):
        model = CellIVRidge(base.tile, gain_basis=k_g).requires_grad_(False)
        model.load_state_dict(base.state_dict())
        out[k_g] = model.bind_shared(g)(v)
        unfused = model(g.reshape(4, 8, 6), v.repeat_interleave(2, 0)).reshape(2, 2, 5, 6)
        torch.testing.assert_close(out[k_g], unfused, rtol=1e-10, atol=1e-14)
        assert model.macs_per_vector() == ((3 + k_g + 1) * 8 + 1) * 6
    assert float((out[1] - out[3]).abs().max()) > float((out[2] - out[3]).abs().max()) > 0
    arch = {**base.architecture(), "hyperparameters": {"n_basis": 3, "iv_points": 401, "iv_levels": 33, "alpha": 1e-8}}
    assert from_architecture(arch).gain_basis == 3
    two = {**arch, "hyperparameters": {"n_basis": 2, "iv_points": 401, "iv_levels": 33, "alpha": 1e-8}}
    assert from_architecture(two).gain_basis == 2
    assert from_architecture({**arch, "hyperparameters": {"alpha": 1e-8}}).gain_basis == 3  # the n_basis default
    assert from_architecture(base.architecture()).gain_basis == 2
