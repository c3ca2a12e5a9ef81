"""The shipped circuit files: non-linear, 1T1R and TIA sense behave as their physics says."""

from __future__ import annotations

import numpy as np
import pytest

from spice import ngspice, nodal
from spice.circuit import circuit_is_temperature_independent
from spice.simulate import superposition
from tests.conftest import CIRCUITS

pytestmark = pytest.mark.spice


def test_nonlinear_cell_reduces_to_linear_at_small_voltage(make_spec):
    lin = make_spec(rows=6, cols=5)
    nl = make_spec(rows=6, cols=5, netlist=str(CIRCUITS / "memristor_sinh.cir"))
    rng = np.random.default_rng(4)
    g = rng.uniform(lin.g_off_s, lin.g_on_s, (6, 5))
    v_small = rng.uniform(0, 1e-3, (3, 6))
    i_lin, _ = ngspice.solve(lin, g, v_small)
    i_nl, _ = ngspice.solve(nl, g, v_small)
    np.testing.assert_allclose(i_nl, i_lin, rtol=1e-4)
    # ... and at read voltages sinh makes it draw clearly more current than the linear cell.
    v_big = np.full((1, 6), 0.2)
    assert np.all(ngspice.solve(nl, g, v_big)[0] > 1.02 * ngspice.solve(lin, g, v_big)[0])


def test_nonlinear_cell_fails_linearity_check(make_spec):
    nl = make_spec(rows=4, cols=4, netlist=str(CIRCUITS / "memristor_sinh.cir"))
    g = np.full((4, 4), 3e-5)
    assert superposition(nl, g, np.full((2, 4), 0.15), rtol=1e-6) is None


def test_one_t_one_r_fully_on_is_its_series_resistance(make_spec):
    """Gate at 5 V: the NMOS is a small triode resistance; currents match the resistive array
    whose cells are R_cell + R_on(transistor), within that small resistance."""
    onetr = make_spec(rows=4, cols=4, netlist=str(CIRCUITS / "one_t_one_r.cir"), v_gate_v=5.0)
    lin = make_spec(rows=4, cols=4)
    rng = np.random.default_rng(5)
    g = rng.uniform(lin.g_off_s, lin.g_on_s, (4, 4))
    v = rng.uniform(0.0, 0.2, (5, 4))
    i_1t1r, _ = ngspice.solve(onetr, g, v)
    # level-1 triode, small Vds: R_on = 1 / (kp * W/L * (Vgs - Vt)) = 1/(200u*11.1*4.6) ~ 98 Ohm
    r_on = 1.0 / (200e-6 * (2.0 / 0.18) * (5.0 - 0.4))
    i_series = nodal.column_currents(lin, 1.0 / (1.0 / g + r_on), v)
    np.testing.assert_allclose(i_1t1r, i_series, rtol=2e-3)
    # Gate off: the transistor blocks, almost no current.
    off = make_spec(rows=4, cols=4, netlist=str(CIRCUITS / "one_t_one_r.cir"), v_gate_v=0.0)
    assert np.max(np.abs(ngspice.solve(off, g, v)[0])) < 1e-3 * np.max(np.abs(i_1t1r))


def test_tia_sense_is_a_virtual_ground(make_spec):
    tia = make_spec(rows=5, cols=4, netlist=str(CIRCUITS / "tia_sense.cir"), r_sense_ohm=1e4)
    ideal_sense = make_spec(rows=5, cols=4, r_sense_ohm=0.0)
    rng = np.random.default_rng(6)
    g = rng.uniform(tia.g_off_s, tia.g_on_s, (5, 4))
    v = rng.uniform(0.0, 0.2, (3, 5))
    np.testing.assert_allclose(ngspice.solve(tia, g, v)[0], nodal.column_currents(ideal_sense, g, v), rtol=1e-4)


@pytest.mark.parametrize("text, independent", [
    ((CIRCUITS / "resistive.cir").read_text(), True),
    ((CIRCUITS / "memristor_sinh.cir").read_text(), True),
    ((CIRCUITS / "tia_sense.cir").read_text(), True),
    ((CIRCUITS / "one_t_one_r.cir").read_text(), False),  # MOSFET and .model card
    (".subckt cell row col params: g=1e-5\nR1 row col {1/g} tc1=0.001\n.ends cell", False),
    (".subckt cell row col params: g=1e-5\nB1 row col I={g*V(row,col)*(1+0.01*(temper-27))}\n.ends", False),
    (".subckt cell row col params: g=1e-5\nD1 row col dmod\n.ends cell", False),
    (".subckt cell row col params: g=1e-5\nR1 row col\n+ {1/g} dtemp=5\n.ends cell", False),
])
def test_temperature_independence_is_read_from_the_circuit_text(text, independent):
    assert circuit_is_temperature_independent(text) is independent
