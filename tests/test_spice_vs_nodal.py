"""ngspice against the exact sparse nodal solve (an independent calculation): linear arrays, and the
non-linear sinh cell against a Newton solve of the nodal equations."""

from __future__ import annotations

import numpy as np
import pytest

from spice import ngspice, nodal
from spice.netlist import build_netlist, sweep_command
from spice.simulate import superposition
from tests.conftest import CIRCUITS

pytestmark = pytest.mark.spice

CASES = {
    # name: (rows, cols, r_driver, r_wire_row, r_wire_col, r_sense)
    "square_all": (8, 8, 1000.0, 5.0, 5.0, 1000.0),
    "tall_all": (12, 5, 1000.0, 10.0, 10.0, 1000.0),
    "wide_all": (4, 16, 100.0, 2.0, 7.0, 50.0),
    "wire_only": (8, 6, 0.0, 10.0, 10.0, 0.0),
    "driver_sense_only": (6, 8, 1000.0, 0.0, 0.0, 1000.0),
    "row_wire_only": (5, 5, 0.0, 10.0, 0.0, 0.0),
    "ideal": (4, 4, 0.0, 0.0, 0.0, 0.0),
    "32x32_paper1": (32, 32, 1000.0, 5.0, 5.0, 1000.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_column_currents_match_nodal_solve(case, make_spec):
    rows, cols, rd, rwr, rwc, rs = CASES[case]
    spec = make_spec(case, rows=rows, cols=cols, r_driver_ohm=rd, r_wire_row_ohm=rwr,
                     r_wire_col_ohm=rwc, r_sense_ohm=rs)
    rng = np.random.default_rng(rows * 100 + cols)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (rows, cols))
    v = rng.uniform(0.0, spec.v_read_max_v, (9, rows))
    i_spice, failed = ngspice.solve(spec, g, v)
    i_exact = nodal.column_currents(spec, g, v)
    assert not failed.any()
    rel = np.max(np.abs(i_spice - i_exact)) / np.max(np.abs(i_exact))
    assert rel <= 1e-6, f"{case}: ngspice vs nodal relative error {rel:.2e}"


def test_ideal_array_is_v_times_g(make_spec):
    """No parasitics at all: both solvers must give exactly v @ g (catches a shared topology bug)."""
    spec = make_spec(rows=5, cols=4, r_driver_ohm=0.0, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0, r_sense_ohm=0.0)
    rng = np.random.default_rng(1)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (5, 4))
    v = rng.uniform(0.0, 0.2, (3, 5))
    np.testing.assert_allclose(ngspice.solve(spec, g, v)[0], v @ g, rtol=1e-9)
    np.testing.assert_allclose(nodal.column_currents(spec, g, v), v @ g, rtol=1e-12)


def test_single_cell_hand_calculation(make_spec):
    """1x1 array: the series chain driver + wire + cell + wire + sense, solved by hand."""
    spec = make_spec(rows=1, cols=1, r_driver_ohm=1000.0, r_wire_row_ohm=10.0, r_wire_col_ohm=20.0, r_sense_ohm=500.0)
    g = np.array([[1e-4]])  # 10 kOhm
    v = np.array([[0.15]])
    expected = 0.15 / (1000.0 + 10.0 + 1e4 + 20.0 + 500.0)
    assert ngspice.solve(spec, g, v)[0][0, 0] == pytest.approx(expected, rel=1e-9)
    assert nodal.column_currents(spec, g, v)[0, 0] == pytest.approx(expected, rel=1e-12)


def test_superposition_transfer_matrix_matches_direct_solves(make_spec):
    spec = make_spec(rows=10, cols=7, r_driver_ohm=500.0, r_wire_row_ohm=8.0, r_wire_col_ohm=8.0, r_sense_ohm=300.0)
    rng = np.random.default_rng(3)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (10, 7))
    v = rng.uniform(0.0, 0.2, (20, 10))
    result = superposition(spec, g, rng.uniform(0, 0.2, (2, 10)), rtol=1e-6)
    assert result is not None, "a resistive array must pass the linearity check"
    t, offset = result
    direct, _ = ngspice.solve(spec, g, v)
    np.testing.assert_allclose(offset + v @ t, direct, rtol=1e-7, atol=1e-15)
    np.testing.assert_allclose(t, nodal.transfer_matrix(spec, g), rtol=1e-7)


@pytest.mark.parametrize("case", ["square_all", "tall_all", "wide_all", "wire_only", "driver_sense_only", "ideal"])
def test_nonlinear_cell_matches_newton_nodal_solve(case, make_spec):
    """Every swept vector and a single `.op` agree with the Newton reference to 1e-8 of full scale
    (ngspice's default tolerances leave swept points up to 5e-5 off)."""
    rows, cols, rd, rwr, rwc, rs = CASES[case]
    spec = make_spec(case, rows=rows, cols=cols, r_driver_ohm=rd, r_wire_row_ohm=rwr, r_wire_col_ohm=rwc,
                     r_sense_ohm=rs, netlist=str(CIRCUITS / "memristor_sinh.cir"))
    assert spec.temperature_independent and "dc temp" in sweep_command(spec, 9)
    rng = np.random.default_rng(rows * 10 + cols)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (rows, cols))
    v = rng.uniform(0.0, spec.v_read_max_v, (9, rows))
    exact = nodal.column_currents_sinh(spec, g, v, b_per_v=5.0)
    scale = np.max(np.abs(exact))
    # sinh(5 V) at 0.2 V: clearly not the linear array (so the reference's Newton steps matter)
    assert np.max(np.abs(exact - nodal.column_currents(spec, g, v))) > 1e-3 * scale
    swept, failed = ngspice.solve(spec, g, v)
    single, _ = ngspice.solve(spec, g, v[4:5])
    assert not failed.any()
    assert np.max(np.abs(swept - exact)) <= 1e-8 * scale
    assert np.max(np.abs(single - exact[4:5])) <= 1e-8 * scale


def test_newton_reference_is_the_linear_solve_at_small_voltage(make_spec):
    spec = make_spec(rows=5, cols=4, netlist=str(CIRCUITS / "memristor_sinh.cir"))
    g = np.random.default_rng(2).uniform(spec.g_off_s, spec.g_on_s, (5, 4))
    v = np.random.default_rng(3).uniform(0.0, 1e-5, (3, 5))
    np.testing.assert_allclose(nodal.column_currents_sinh(spec, g, v, 5.0), nodal.column_currents(spec, g, v),
                               rtol=1e-9)


def test_temperature_dependent_circuits_sweep_an_index_source(make_spec):
    """The circuit temperature is the sweep index only when nothing in the circuit file depends on it;
    the 1T1R cell's MOSFET does, so its rows follow V(idx), and its sweep equals one `.op` per vector."""
    spec = make_spec(rows=4, cols=3, netlist=str(CIRCUITS / "one_t_one_r.cir"), v_gate_v=1.8)
    assert not spec.temperature_independent
    rng = np.random.default_rng(4)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (4, 3))
    v = rng.uniform(0.0, spec.v_read_max_v, (5, 4))
    netlist = build_netlist(spec, g, v, use_klu=False)
    assert "V(idx)" in netlist and "temper" not in netlist and sweep_command(spec, 5).startswith("dc vidx")
    swept, failed = ngspice.solve(spec, g, v)
    singles = np.concatenate([ngspice.solve(spec, g, v[k:k + 1])[0] for k in range(5)])
    assert not failed.any()
    np.testing.assert_allclose(swept, singles, rtol=1e-8, atol=1e-8 * np.max(np.abs(singles)))


def test_nonlinear_sweep_with_ideal_ends_matches_newton(make_spec):
    """The hardest swept case measured: no driver or sense resistance and 0.6 V on sinh cells (3x the
    cell's linear current at full read), 32 vectors on a 16x16 array: every point within 1e-9 of full
    scale of the Newton reference (seeds 0-7 measured at most 1.4e-10; ngspice's reltol=1e-7 left 5e-8)."""
    spec = make_spec(rows=16, cols=16, r_driver_ohm=0.0, r_sense_ohm=0.0, v_read_max_v=0.6,
                     netlist=str(CIRCUITS / "memristor_sinh.cir"))
    rng = np.random.default_rng(0)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (16, 16))
    v = rng.uniform(0.0, 0.6, (32, 16))
    exact = nodal.column_currents_sinh(spec, g, v, b_per_v=5.0)
    swept, failed = ngspice.solve(spec, g, v)
    assert not failed.any()
    assert np.max(np.abs(swept - exact)) <= 1e-9 * np.max(np.abs(exact))
