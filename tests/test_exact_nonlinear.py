"""The exact tile mode for non-linear cells (spice.exact) and ngspice in the loop (spice.inloop), against
real ngspice runs on the same conductances and inputs, and through the DNN stage."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torch import nn

from dnn.config import CrossbarConfig
from dnn.convert import convert_to_crossbar
from dnn.evaluate import exact_tile_model, spice_tile_model
from dnn.mvm import SolverTileMVM, TransferTileMVM
from spice import exact, ngspice, nodal
from spice.circuit import spec_from_config
from spice.inloop import InLoopError, SpiceArray, spice_array_fn
from tests.conftest import CIRCUITS, assert_cli_error, reorder_atol

SINH = str(CIRCUITS / "memristor_sinh.cir")
ONE_T_ONE_R = str(CIRCUITS / "one_t_one_r.cir")
ONE_S_ONE_R = str(CIRCUITS / "one_s_one_r.cir")
TIA = str(CIRCUITS / "tia_sense.cir")


SINH_CASES = {
    # name: (rows, cols, r_driver, r_wire_row, r_wire_col, r_sense)
    "8x8_all": (8, 8, 1000.0, 5.0, 5.0, 1000.0),
    "16x12_all": (16, 12, 1000.0, 5.0, 5.0, 1000.0),
    "16x12_virtual_ground": (16, 12, 100.0, 2.0, 7.0, 0.0),
    "8x8_wires_only": (8, 8, 0.0, 10.0, 10.0, 0.0),
}


def _spec(netlist: str, rows: int, cols: int, rd=1000.0, rwr=5.0, rwc=5.0, rs=1000.0, **extra):
    entry = {"netlist": netlist, "rows": rows, "cols": cols, "r_driver_ohm": rd, "r_wire_row_ohm": rwr,
             "r_wire_col_ohm": rwc, "r_sense_ohm": rs, **extra}
    return spec_from_config("t", entry)


def _newton(spec, g, v, options=None):
    solver = exact.ArraySolver(spec, exact.cell_model(spec), torch.as_tensor(g)[None], options)
    return solver.currents(torch.as_tensor(v)[None])[0].numpy()


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ----------------------------------------------------------------------------- against ngspice
@pytest.mark.spice
@pytest.mark.parametrize("v_read_max_v", [0.2, 0.5])
@pytest.mark.parametrize("case", sorted(SINH_CASES))
def test_sinh_newton_matches_ngspice(case, v_read_max_v):
    rows, cols, rd, rwr, rwc, rs = SINH_CASES[case]
    spec = _spec(SINH, rows, cols, rd, rwr, rwc, rs, v_read_max_v=v_read_max_v)
    assert exact.cell_model(spec) == exact.SinhCell(b_per_v=5.0)  # b read from the subckt's params line
    rng = np.random.default_rng(rows * 100 + cols)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (rows, cols))
    v = rng.uniform(0.0, v_read_max_v, (9, rows))
    v[3] = 0.0  # an all-zero input is solved too (zero currents)
    i_spice, failed = ngspice.solve(spec, g, v)
    assert not failed.any()
    i_newton = _newton(spec, g, v)
    assert _rel(i_newton, i_spice) <= 1e-6, case
    assert np.all(i_newton[3] == 0.0)
    # the cells are clearly non-linear here: the linear array is far off
    assert _rel(nodal.column_currents(spec, g, v), i_spice) > 1e-3


@pytest.mark.spice
@pytest.mark.parametrize("v_gate_v, signed", [(1.8, False), (0.6, True)])
def test_one_t_one_r_newton_matches_ngspice(v_gate_v, signed):
    """Gate fully on (linear region, positive inputs) and barely on with inputs of both signs (saturation,
    drain and source swapped)."""
    spec = _spec(ONE_T_ONE_R, 8, 8, v_gate_v=v_gate_v, v_read_max_v=0.5, v_read_min_v=-0.5 if signed else 0.0)
    cell = exact.cell_model(spec)
    assert isinstance(cell, exact.OneTOneRCell)
    assert cell.beta_a_per_v2 == pytest.approx(200e-6 * 2 / 0.18) and cell.vto_v == 0.4
    rng = np.random.default_rng(5)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (8, 8))
    v = rng.uniform(spec.v_read_min_v, spec.v_read_max_v, (9, 8))
    i_spice, failed = ngspice.solve(spec, g, v)
    assert not failed.any()
    assert _rel(_newton(spec, g, v), i_spice) <= 1e-6
    if signed:  # the transistor limits the current: far from a resistive array of conductance g
        assert _rel(nodal.column_currents(spec, g, v), i_spice) > 1e-2


SELECTOR_CASES = {
    # name: (rows, cols, r_driver, r_wire_row, r_wire_col, r_sense, signed inputs)
    "8x8_all": (8, 8, 1000.0, 5.0, 5.0, 1000.0, False),
    "16x12_all_signed": (16, 12, 1000.0, 5.0, 5.0, 1000.0, True),
    "16x12_virtual_ground_signed": (16, 12, 100.0, 2.0, 7.0, 0.0, True),
}


@pytest.mark.spice
@pytest.mark.parametrize("case", sorted(SELECTOR_CASES))
def test_one_s_one_r_newton_matches_ngspice(case):
    """Reads up to 1 V: cells from off (below ~0.3 V) to resistor-limited; every vector on its own scale, so
    the low reads (selector off, currents ~100x smaller) are held to 1e-6 too."""
    rows, cols, rd, rwr, rwc, rs, signed = SELECTOR_CASES[case]
    spec = _spec(ONE_S_ONE_R, rows, cols, rd, rwr, rwc, rs, v_read_max_v=1.0, v_read_min_v=-1.0 if signed else 0.0)
    assert exact.cell_model(spec) == exact.OneSOneRCell(is_a=1e-9, n=1.5)  # read from the .model card
    rng = np.random.default_rng(rows * 100 + cols)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (rows, cols))
    v = rng.uniform(spec.v_read_min_v, 1.0, (9, rows))
    v[3] = 0.0
    v[4] *= 0.25  # selector (mostly) off
    i_spice, failed = ngspice.solve(spec, g, v)
    assert not failed.any()
    i_newton = _newton(spec, g, v)
    assert np.all(i_newton[3] == 0.0)
    on = np.arange(9) != 3
    per_vector = np.max(np.abs(i_newton - i_spice), axis=1)[on] / np.max(np.abs(i_spice), axis=1)[on]
    assert np.max(per_vector) <= 1e-6, per_vector
    # far from the resistive array of the same conductances
    assert _rel(nodal.column_currents(spec, g, v), i_spice) > 0.3


@pytest.mark.spice
def test_one_s_one_r_is_a_threshold_selector():
    """One cell, no parasitics: at 0.2 V the selector holds the current far below g * 0.2 V; at 1 V it takes
    well under half the read and the current approaches the resistor's g * 1 V. A cell whose diodes were
    ignored (or shorted) would pass g * V at both."""
    spec = _spec(ONE_S_ONE_R, 1, 1, 0.0, 0.0, 0.0, 0.0, v_read_max_v=1.0, v_read_min_v=-1.0)
    v = np.array([[0.2], [1.0], [-0.2], [-1.0]])
    for g_s in (spec.g_off_s, spec.g_on_s):
        g = np.array([[g_s]])
        i_spice, failed = ngspice.solve(spec, g, v)
        assert not failed.any()
        ratio = i_spice[:, 0] / (g_s * v[:, 0])  # of the resistor-limited current
        assert np.all(ratio[[0, 2]] < 0.15) and np.all(ratio[[1, 3]] > 0.55), ratio
        np.testing.assert_allclose(i_spice[2:], -i_spice[:2], rtol=1e-6)  # a symmetric selector
        np.testing.assert_allclose(_newton(spec, g, v), i_spice, rtol=1e-6)


ONE_S_ONE_R_TEXT = (CIRCUITS / "one_s_one_r.cir").read_text()
ROW_SIDE_RESISTOR = ONE_S_ONE_R_TEXT.replace("D1 row mid dsel\nD2 mid row dsel\nR1 mid col {1/g}",
                                             "R1 row x {1/g}\nD2 col x dsel\nD1 x col dsel")


@pytest.mark.spice
def test_one_s_one_r_in_either_order(tmp_path):
    """The resistor on the row side, the diodes listed the other way round: the same cell, and ngspice agrees."""
    assert ROW_SIDE_RESISTOR != ONE_S_ONE_R_TEXT
    path = tmp_path / "row_side.cir"
    path.write_text(ROW_SIDE_RESISTOR)
    spec = _spec(str(path), 6, 5, v_read_max_v=1.0, v_read_min_v=-1.0)
    assert exact.cell_model(spec) == exact.cell_model(_spec(ONE_S_ONE_R, 6, 5))
    rng = np.random.default_rng(9)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (6, 5))
    v = rng.uniform(-1.0, 1.0, (4, 6))
    i_spice, failed = ngspice.solve(spec, g, v)
    assert not failed.any() and _rel(_newton(spec, g, v), i_spice) <= 1e-6


@pytest.mark.parametrize("old, new, message", [
    ("D2 mid row dsel", "D2 row mid dsel", r"line 10: the diodes must be antiparallel between 'mid' and 'row'"),
    ("D2 mid row dsel", "D2 mid row dsel2", r"line 11: both diodes must use one model"),
    ("D2 mid row dsel", "D2 mid row dsel area=2", r"line 11: diode 'D2': instance parameters"),
    ("D2 mid row dsel\n", "", r"line 10: cell element 'D1': a 1S1R cell is two antiparallel diodes"),
    ("R1 mid col {1/g}", "R1 mid col 1e5", r"line 12: the resistor must be '{1/g}' between one pin"),
    ("R1 mid col {1/g}", "R1 row col {1/g}", r"line 12: the resistor must be '{1/g}' between one pin"),
    ("(is=1e-9 n=1.5)", "(is=1e-9 n=1.5 rs=10)", r"line 14: the 1S1R selector's diodes need a 'd' model"),
    ("(is=1e-9 n=1.5)", "(is=1e-9 n=1.5 cjo=1p)", r"line 14: .*; unsupported: cjo"),
    ("(is=1e-9 n=1.5)", "(is=1e-9 n=1.5 bv=5)", r"line 14: .*; unsupported: bv"),
    ("dsel d (", "dsel nmos (", r"line 14: the 1S1R selector's diodes need a 'd' model"),
])
def test_one_s_one_r_refuses_what_it_cannot_solve(tmp_path, old, new, message):
    assert old in ONE_S_ONE_R_TEXT
    path = tmp_path / "selector.cir"
    path.write_text(ONE_S_ONE_R_TEXT.replace(old, new, 1))
    with pytest.raises(exact.UnsupportedCircuitError, match=r"selector\.cir, " + message + r".*--mvm spice"):
        exact.cell_model(_spec(str(path), 4, 4))


@pytest.mark.spice
def test_spice_in_the_loop_runs_the_selector_cell():
    """ngspice in the loop (the reference of the exact mode) on 1S1R tiles, signed reads up to 1 V."""
    spec = _spec(ONE_S_ONE_R, 6, 5, v_read_max_v=1.0, v_read_min_v=-1.0)
    rng = np.random.default_rng(17)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (2, 6, 5))
    v = rng.uniform(-1.0, 1.0, (2, 4, 6))
    got = spice_array_fn(spec)(torch.as_tensor(g)).currents(torch.as_tensor(v)).numpy()
    for t in range(2):
        direct, _ = ngspice.solve(spec, g[t], v[t])
        np.testing.assert_array_equal(got[t], direct)
        assert _rel(got[t], _newton(spec, g[t], v[t])) <= 1e-6
    mvm, info = exact_tile_model(spec)
    assert isinstance(mvm, SolverTileMVM) and info["cell"] == "1s1r"
    np.testing.assert_allclose(mvm.bind(torch.as_tensor(g))(torch.as_tensor(v)).numpy(), got, rtol=1e-6,
                               atol=1e-6 * np.max(np.abs(got)))


@pytest.mark.spice
def test_spice_in_the_loop_equals_ngspice_and_newton():
    spec = _spec(SINH, 6, 5, v_read_max_v=0.4)
    rng = np.random.default_rng(7)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (2, 6, 5))
    v = rng.uniform(0.0, 0.4, (2, 4, 6))
    array = spice_array_fn(spec)(torch.as_tensor(g))
    got = array.currents(torch.as_tensor(v)).numpy()
    for t in range(2):
        direct, _ = ngspice.solve(spec, g[t], v[t])
        np.testing.assert_array_equal(got[t], direct)
        assert _rel(got[t], _newton(spec, g[t], v[t])) <= 1e-6
    assert array.vectors == 8 and array.seconds > 0
    # the small-signal transfer (gradients only) is the linear array's
    t_ss = array.small_signal_transfer().numpy()
    np.testing.assert_allclose(t_ss[1], nodal.transfer_matrix(spec, g[1]), rtol=1e-5)


@pytest.mark.spice
def test_spice_in_the_loop_reports_an_implausible_vector():
    spec = _spec(SINH, 3, 2)
    check = ngspice.CircuitCheck(cell_current_max_a=1e-12, column_current_bound_a=1e-12)  # nothing passes

    array = SpiceArray(spec, torch.full((1, 3, 2), 2e-5, dtype=torch.float64), check)
    with pytest.raises(InLoopError, match=r"tile 0, 2 vector\(s\) failed \(vector 0: implausible"):
        array.currents(torch.full((1, 2, 3), 0.1, dtype=torch.float64))


# ----------------------------------------------------------------------------- linear case, selection, errors
def test_linear_cells_keep_the_transfer_matrix():
    spec = _spec(str(CIRCUITS / "resistive.cir"), 6, 4)
    mvm, info = exact_tile_model(spec)
    assert isinstance(mvm, TransferTileMVM) and info["cell"] == "linear"
    g = torch.as_tensor(np.random.default_rng(1).uniform(spec.g_off_s, spec.g_on_s, (2, 6, 4)))
    v = torch.rand(2, 3, 6, dtype=torch.float64) * 0.2
    t_ref = torch.stack([torch.as_tensor(nodal.transfer_matrix(spec, g[t].numpy())) for t in range(2)])
    expected = torch.stack([v[t] @ t_ref[t] for t in range(2)])
    # one batched matmul vs one per tile: another summation order of 6 terms
    atol = reorder_atol(6, float((v.abs() @ t_ref.abs()).max()))
    torch.testing.assert_close(mvm.bind(g)(v), expected, rtol=0, atol=atol)


def test_newton_is_the_linear_array_at_small_signal():
    """An independent check of the ladder equations: at tiny inputs the sinh array is the resistive one."""
    spec = _spec(SINH, 7, 5, rd=300.0, rwr=8.0, rwc=3.0, rs=50.0)
    g = np.random.default_rng(2).uniform(spec.g_off_s, spec.g_on_s, (7, 5))
    v = np.random.default_rng(3).uniform(0.0, 1e-6, (4, 7))
    np.testing.assert_allclose(_newton(spec, g, v), nodal.column_currents(spec, g, v), rtol=1e-9)
    solver = exact.ArraySolver(spec, exact.cell_model(spec), torch.as_tensor(g)[None])
    np.testing.assert_allclose(solver.small_signal_transfer()[0].numpy(), nodal.transfer_matrix(spec, g), rtol=1e-9)


def test_nonlinear_cells_select_the_newton_solver():
    for netlist, kind in ((SINH, "sinh"), (ONE_T_ONE_R, "1t1r"), (ONE_S_ONE_R, "1s1r")):
        mvm, info = exact_tile_model(_spec(netlist, 4, 4, v_gate_v=1.8))
        assert isinstance(mvm, SolverTileMVM) and info["cell"] == kind and "Newton" in info["solver"]


UNKNOWN_CELL = """* a diode in series with the resistor
.subckt cell row col params: g=1e-5
R1 row mid {1/g}
D1 mid col dmod
.ends cell
.model dmod d is=1e-14
"""


TIA_TEXT = (CIRCUITS / "tia_sense.cir").read_text()


@pytest.mark.spice
@pytest.mark.parametrize("cell", ["resistive", "sinh"])
def test_tia_sense_is_its_input_resistance(cell, tmp_path):
    """The op-amp TIA (gain 1e6, feedback r) holds the column at i r / (1 + A): both exact solvers use that."""
    netlist = TIA
    if cell == "sinh":
        netlist = tmp_path / "sinh_tia.cir"
        netlist.write_text(TIA_TEXT.replace("R1 row col {1/g}", "B1 row col I={g/b*sinh(b*V(row,col))}")
                           .replace("params: g=1e-5\n", "params: g=1e-5 b=5\n", 1))
    spec = _spec(str(netlist), 8, 6, v_read_max_v=0.5)
    assert exact.sense_resistance_ohm(spec) == pytest.approx(1000.0 / (1 + 1e6))
    rng = np.random.default_rng(8)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (1, 8, 6))
    v = rng.uniform(0.0, 0.5, (1, 5, 8))
    mvm, info = exact_tile_model(spec)
    assert info["cell"] == ("linear" if cell == "resistive" else "sinh")
    got = mvm.bind(torch.as_tensor(g))(torch.as_tensor(v))[0].numpy()
    i_spice, failed = ngspice.solve(spec, g[0], v[0])
    assert not failed.any() and _rel(got, i_spice) <= 1e-6
    assert _rel(nodal.column_currents(spec, g[0], v[0]), i_spice) > 1e-3  # the 1 kOhm resistor is not the TIA


def test_unknown_cell_is_one_clear_error(tmp_path):
    path = tmp_path / "diode_cell.cir"
    path.write_text(UNKNOWN_CELL)
    spec = _spec(str(path), 4, 4)
    with pytest.raises(exact.UnsupportedCircuitError, match=r"diode_cell\.cir, line 4: cell element 'D1'.*--mvm spice"):
        exact_tile_model(spec)
    other_sense = tmp_path / "other_sense.cir"
    other_sense.write_text(TIA_TEXT.replace("Eamp out 0 0 in 1e6", "Eamp out 0 in 0 1e6"))
    with pytest.raises(exact.UnsupportedCircuitError,
                       match=r"other_sense\.cir, line \d+: custom '\.subckt sense' cannot.*--mvm spice"):
        exact_tile_model(_spec(str(other_sense), 4, 4))


def test_unknown_cell_exits_2_through_the_cli(tmp_path, capsys):
    from dnn.cli import main

    path = tmp_path / "diode_cell.cir"
    path.write_text(UNKNOWN_CELL)
    model = tmp_path / "m.pt"
    params = {"dataset": "digits", "model": "bn_cnn", "epochs": 1, "batch_size": 64, "seed": 3, "width": 0.125,
              "n_train": 64, "n_test": 32}
    assert main(["train", "-q", "--params-json", json.dumps(params), "--no-progress",
                 "--out", str(model)]) == 0
    circuit = json.dumps({"netlist": str(path), "rows": 16, "cols": 16})
    assert_cli_error(capsys, main, ["evaluate", "--model", str(model), "--circuit", circuit, "--mvm", "exact",
                                    "--methods", "none", "--out", str(tmp_path / "e.json")],
                     r"^error: circuit file .*diode_cell\.cir, line 4: .*--mvm spice")
    assert_cli_error(capsys, main, ["evaluate", "--model", str(model), "--mvm", "spice", "--methods", "none",
                                    "--out", str(tmp_path / "e.json")], "--mvm spice needs --circuit")


# ----------------------------------------------------------------------------- non-convergence
def test_slow_vectors_are_retried(caplog):
    spec = _spec(SINH, 8, 8, v_read_max_v=0.5)
    g = np.random.default_rng(4).uniform(spec.g_off_s, spec.g_on_s, (8, 8))
    v = np.random.default_rng(5).uniform(0.0, 0.5, (3, 8))
    reference = _newton(spec, g, v)
    with caplog.at_level(logging.WARNING, logger="spice.exact"):
        retried = _newton(spec, g, v, exact.NewtonOptions(max_iter=2))
    assert "tile 0, vector(s) 0, 1, 2 converged only after retries" in caplog.text
    np.testing.assert_allclose(retried, reference, rtol=1e-9)


def test_a_vector_that_never_converges_is_named():
    spec = _spec(SINH, 8, 8, v_read_max_v=0.5)
    g = np.random.default_rng(4).uniform(spec.g_off_s, spec.g_on_s, (2, 8, 8))
    v = np.random.default_rng(5).uniform(0.0, 0.5, (2, 3, 8))
    v[0] = 0.0  # tile 0: zero inputs converge at once
    options = exact.NewtonOptions(max_iter=1, retry_max_iter=1, source_steps=2)
    solver = exact.ArraySolver(spec, exact.cell_model(spec), torch.as_tensor(g), options)
    with pytest.raises(exact.ArrayConvergenceError,
                       match=r"memristor_sinh\.cir \(8x8\): 3 vector\(s\) did not converge.*"
                             r"\(tile 1 vector 0, tile 1 vector 1, tile 1 vector 2\)"):
        solver.currents(torch.as_tensor(v))


# ----------------------------------------------------------------------------- through the DNN stage
@pytest.mark.spice
def test_dnn_forward_exact_nonlinear_equals_spice_in_the_loop():
    """A tiny model converted onto 8x8 sinh tiles: the Newton mode and ngspice in the loop give the same
    outputs; the gradient w.r.t. the input exists (straight-through small-signal transfer)."""
    torch.manual_seed(0)
    spec = _spec(SINH, 8, 8, v_read_max_v=0.5)
    model = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()
    cfg = CrossbarConfig(analog_layers="all", adc_bits=0)
    exact_mvm, _ = exact_tile_model(spec)
    spice_mvm, info = spice_tile_model(spec)
    assert info["kind"] == "spice"
    x = torch.randn(4, 12, dtype=torch.float64)
    with torch.no_grad():
        y_exact = convert_to_crossbar(model, cfg, exact_mvm)(x)
        y_spice = convert_to_crossbar(model, cfg, spice_mvm)(x)
        y_ideal = model(x)
    assert _rel(y_exact.numpy(), y_spice.numpy()) <= 1e-6
    assert _rel(y_exact.numpy(), y_ideal.numpy()) > 1e-3  # parasitics and non-linearity are there
    xg = x.clone().requires_grad_(True)
    convert_to_crossbar(model, cfg, exact_mvm)(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- reads of redrawn conductances
def test_per_vector_conductances_equal_one_solve_per_vector():
    """g_factor: each vector is solved with its own conductances (the tile's factorization at g is only
    the chord), exactly as a solver bound to those conductances."""
    spec = _spec(SINH, 8, 6, v_read_max_v=0.5)
    rng = np.random.default_rng(11)
    g = torch.as_tensor(rng.uniform(spec.g_off_s, spec.g_on_s, (2, 8, 6)))
    v = torch.as_tensor(rng.uniform(0.0, 0.5, (2, 3, 8)))
    factor = torch.as_tensor(1.0 + 0.3 * rng.standard_normal((2, 3, 8, 6)))
    got = exact.ArraySolver(spec, exact.cell_model(spec), g).currents(v, factor)
    for t in range(2):
        for b in range(3):
            alone = _newton(spec, (g[t] * factor[t, b]).numpy(), v[t, b:b + 1].numpy())
            np.testing.assert_allclose(got[t, b].numpy(), alone[0], rtol=1e-9)
    with pytest.raises(ValueError, match=r"g_factor has shape \(2, 3, 8\); expected \[2, 3, 8, 6\]"):
        exact.ArraySolver(spec, exact.cell_model(spec), g).currents(v, factor[..., 0])


def test_linear_cells_solve_like_the_nodal_reference():
    """The array solver takes linear cells too (reads of redrawn conductances of a resistive array)."""
    spec = _spec(str(CIRCUITS / "resistive.cir"), 8, 8)
    rng = np.random.default_rng(12)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (8, 8))
    v = rng.uniform(0.0, spec.v_read_max_v, (4, 8))
    assert _rel(_newton(spec, g, v), nodal.column_currents(spec, g, v)) <= 1e-9


def test_noisy_bind_redraws_every_read_reproducibly():
    spec = _spec(SINH, 8, 8, v_read_max_v=0.5)
    mvm, _ = exact_tile_model(spec)
    g = torch.as_tensor(np.random.default_rng(13).uniform(spec.g_off_s, spec.g_on_s, (1, 8, 8)))
    v = torch.full((1, 400, 8), 0.4, dtype=torch.float64)

    def read(seed, sigma=0.1, clip=None):
        return mvm.bind_noisy(g, sigma, torch.Generator().manual_seed(seed), clip)(v)[0]

    clean = mvm.bind(g)(v[:, :1])[0, 0]
    a, b = read(1), read(1)
    assert torch.equal(a, b)  # seeded
    assert not torch.equal(a, read(2))
    assert (a[1:] != a[:1]).any(dim=1).all()  # every vector of one call has its own draw
    assert torch.allclose(read(1, sigma=0.0), clean.expand(400, 8), rtol=1e-12, atol=0)
    # unbiased to first order; the spread is that of one redraw per read
    assert torch.allclose(a.mean(0), clean, rtol=0.02)
    assert float((a.std(0) / clean).median()) > 0.01
    # clipped draws: the conductances read are g (1 + sigma N(0, 1)) clipped to the programmable range
    eps = torch.randn((1, 400, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    drawn = (g[:, None] * (1.0 + eps)).clamp(spec.g_off_s, spec.g_on_s)
    expected = exact.ArraySolver(spec, exact.cell_model(spec), g).currents(v, drawn / g[:, None])[0]
    torch.testing.assert_close(read(1, sigma=1.0, clip=(spec.g_off_s, spec.g_on_s)), expected, rtol=1e-9, atol=0)


def test_per_read_noise_through_exact_physics_is_the_redrawn_spread():
    """With per-read noise, a crossbar layer on the exact non-linear tile model reads redrawn conductances
    through the solver: the spread of its outputs over identical inputs is that of redrawn conductances,
    not the transfer-matrix approximation's (larger here: the 1 kOhm driver and sense load the cells)."""
    torch.manual_seed(0)
    spec = _spec(SINH, 16, 16, v_read_max_v=0.5)
    mvm, _ = exact_tile_model(spec)
    layer = nn.Sequential(nn.Linear(16, 16, bias=False)).double().eval()
    base = CrossbarConfig(analog_layers="all", adc_bits=0, encoding="differential", read_noise_sigma=0.2,
                          read_noise_mode="per_read")
    x = torch.rand(1, 16, dtype=torch.float64).expand(300, 16).contiguous()
    clean_cfg = base.replace(read_noise_sigma=0.0)
    with torch.no_grad():
        clean = convert_to_crossbar(layer, clean_cfg, mvm)(x[:1])[0]
        redrawn = convert_to_crossbar(layer, base, mvm)(x)
        approx = convert_to_crossbar(layer, base, mvm.replace(noisy_reads=False))(x)
    assert torch.allclose(redrawn.mean(0), clean, atol=0.15 * float(clean.abs().max()))
    ratio = float((approx.std(0) / redrawn.std(0)).median())
    assert ratio > 1.2, ratio
