"""ngspice against the exact sparse nodal solve (an independent calculation) for linear arrays."""

from __future__ import annotations

import numpy as np
import pytest

from spice import ngspice, nodal
from spice.simulate import superposition

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
