"""spice/netlist.py: the netlist text for each kind of driver, wire and sense, the analysis command, and
ngspice's answer for sub-ohm parasitics and a custom driver subcircuit against the nodal solve."""

from __future__ import annotations

import numpy as np
import pytest

from spice import ngspice, nodal
from spice.netlist import ACCURACY_OPTIONS, build_netlist, sweep_command
from tests.conftest import CIRCUITS

G = np.full((2, 2), 2e-5)
V1 = np.array([[0.1, 0.2]])
V3 = np.array([[0.1, 0.2], [0.0, 0.05], [0.2, 0.2]])


def _lines(text):
    return text.splitlines()


def test_header_options_and_end(make_spec):
    spec = make_spec("n", rows=2, cols=2)
    text = build_netlist(spec, G, V1, use_klu=True)
    lines = _lines(text)
    assert lines[0] == "* xbarchar crossbar 'n' 2x2"
    assert lines[1] == f".options klu {ACCURACY_OPTIONS}"
    assert lines[-1] == ".end" and text.endswith(".end\n")
    assert _lines(build_netlist(spec, G, V1, use_klu=False))[1] == f".options {ACCURACY_OPTIONS}"
    assert _lines(build_netlist(spec, G, V1, use_klu=False, extra_options="gmin=1e-10"))[1] == \
        f".options {ACCURACY_OPTIONS} gmin=1e-10"


def test_one_vector_uses_dc_sources_and_plain_resistors(make_spec):
    spec = make_spec(rows=2, cols=2, r_driver_ohm=100.0, r_sense_ohm=50.0, r_wire_row_ohm=2.0, r_wire_col_ohm=3.0)
    lines = _lines(build_netlist(spec, G, V1, use_klu=False))
    assert "vin0 in0 0 0.1" in lines and "vin1 in1 0 0.2" in lines
    assert "rdrv0 in0 d0 100" in lines and "rwr0_0 d0 a0_0 2" in lines and "rwr0_1 a0_0 a0_1 2" in lines
    assert "rwc0_1 b0_1 b1_1 3" in lines and "rwc1_1 b1_1 s1 3" in lines
    assert "vm1 s1 t1 0" in lines and "rsense1 t1 0 50" in lines
    assert "xc1_0 a1_0 b1_0 cell g=2e-05" in lines
    assert sweep_command(spec, 1) == "op"


def test_several_vectors_use_the_norton_form_and_the_temperature_sweep(make_spec):
    spec = make_spec(rows=2, cols=2, r_driver_ohm=100.0)
    lines = _lines(build_netlist(spec, G, V3, use_klu=False))
    assert "bin0 0 d0 I=pwl(temper, 0,0.1, 1,0, 2,0.2) / 100" in lines
    assert "rdrv0 d0 0 100" in lines and not any(x.startswith("vidx") for x in lines)
    assert sweep_command(spec, 2) == "dc temp 0 1 1" and sweep_command(spec, 3) == "dc temp 0 2 1"
    # an ideal driver: the rows are voltage sources on the row nodes themselves
    ideal = make_spec(rows=2, cols=2, r_driver_ohm=0.0, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0, r_sense_ohm=0.0)
    lines = _lines(build_netlist(ideal, G, V3, use_klu=False))
    assert "bin1 in1 0 V=pwl(temper, 0,0.2, 1,0.05, 2,0.2)" in lines
    assert not any(x.startswith(("rdrv", "rwr", "rwc", "rsense")) for x in lines)
    assert "xc1_1 in1 s1 cell g=2e-05" in lines and "vm1 s1 0 0" in lines


def test_temperature_dependent_cells_sweep_an_index_source(make_spec):
    spec = make_spec(rows=2, cols=2, netlist=str(CIRCUITS / "one_t_one_r.cir"), v_gate_v=1.5)
    lines = _lines(build_netlist(spec, G, V3, use_klu=False))
    assert any(x.startswith("vidx idx 0 0") for x in lines)
    assert "bin0 0 d0 I=pwl(V(idx), 0,0.1, 1,0, 2,0.2) / 100" in lines
    assert "vgate gl 0 1.5" in lines and any(x.startswith("xc0_0 a0_0 b0_0 gl cell") for x in lines)
    assert sweep_command(spec, 3) == "dc vidx 0 2 1"


def test_shape_errors_name_the_circuit(make_spec):
    spec = make_spec("arr", rows=2, cols=2)
    with pytest.raises(ValueError, match="^g_s has shape \\(3, 2\\), expected \\(2, 2\\) for circuit 'arr'$"):
        build_netlist(spec, np.zeros((3, 2)), V1, use_klu=False)
    with pytest.raises(ValueError, match="^v_v has 3 rows, expected 2 for circuit 'arr'$"):
        build_netlist(spec, G, np.zeros((1, 3)), use_klu=False)


@pytest.mark.spice
@pytest.mark.parametrize("n_vectors", [1, 2, 3])
def test_sub_ohm_parasitics_are_in_the_circuit(make_spec, n_vectors):
    """0.5 ohm driver, wires and sense: small, but ngspice must see them (the nodal solve does)."""
    spec = make_spec(rows=4, cols=3, r_driver_ohm=0.5, r_wire_row_ohm=0.5, r_wire_col_ohm=0.5, r_sense_ohm=0.5,
                     g_on_s=1e-2, g_off_s=1e-3)
    rng = np.random.default_rng(n_vectors)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (4, 3))
    v = rng.uniform(0.0, 0.2, (n_vectors, 4))
    i, failed = ngspice.solve(spec, g, v)
    exact = nodal.column_currents(spec, g, v)
    assert not failed.any()
    assert np.max(np.abs(v @ g - exact)) > 1e-3 * np.max(np.abs(exact))  # the parasitics matter here
    np.testing.assert_allclose(i, exact, rtol=1e-7)


@pytest.mark.spice
def test_custom_driver_subcircuit_is_used_for_every_row(make_spec, tmp_path):
    """A driver subcircuit that is a series resistor of value r: the same array as R_driver = r."""
    text = (CIRCUITS / "resistive.cir").read_text() + "\n.subckt driver in out params: r=1\nR1 in out {r}\n.ends driver\n"
    path = tmp_path / "driver.cir"
    path.write_text(text)
    spec = make_spec(rows=3, cols=2, netlist=str(path), r_driver_ohm=700.0)
    plain = make_spec(rows=3, cols=2, r_driver_ohm=700.0)
    lines = _lines(build_netlist(spec, G[:1].repeat(3, 0)[:, :2], V3[:, :1].repeat(3, 1), use_klu=False))
    assert "xdrv2 in2 d2 driver r=700" in lines and not any(x.startswith("rdrv") for x in lines)
    assert any(x.startswith("bin0 in0 0 V=pwl(") for x in lines)  # no Norton form behind a subcircuit
    g = np.random.default_rng(0).uniform(spec.g_off_s, spec.g_on_s, (3, 2))
    v = np.random.default_rng(1).uniform(0.0, 0.2, (4, 3))
    i, failed = ngspice.solve(spec, g, v)
    assert not failed.any()
    np.testing.assert_allclose(i, nodal.column_currents(plain, g, v), rtol=1e-7)
    # ... also with R_driver = 0 in the spec: the subcircuit still drives node d
    zero = make_spec(rows=3, cols=2, netlist=str(path), r_driver_ohm=0.0)
    assert "xc0_0 a0_0 b0_0 cell g=2e-05" in _lines(build_netlist(zero, G[:1].repeat(3, 0)[:, :2], V1[:, :1].repeat(3, 1),
                                                                  use_klu=False))


def test_nodal_stamp_is_the_textbook_conductance_stamp():
    """MNA: a conductance g between unknown nodes a and b adds [[g, -g], [-g, g]]; an end on a known
    node (index >= n) adds only the diagonal entry of the other end."""
    from spice.nodal import _scatter, _stamp

    k = _stamp(3, np.array([0, 1]), np.array([1, 3]), np.array([2.0, 5.0])).toarray()
    np.testing.assert_array_equal(k, [[2.0, -2.0, 0.0], [-2.0, 7.0, 0.0], [0.0, 0.0, 0.0]])
    k = _stamp(2, np.array([2]), np.array([1]), np.array([4.0])).toarray()
    np.testing.assert_array_equal(k, [[0.0, 0.0], [0.0, 4.0]])
    # currents i_ab leave a and enter b; known nodes are dropped
    np.testing.assert_array_equal(_scatter(2, np.array([0, 1]), np.array([1, 2]), np.array([3.0, 1.0])),
                                  [3.0, -2.0])


@pytest.mark.spice
def test_sinh_cells_driven_directly_by_the_inputs(make_spec):
    """No driver and no row wire: the cells hang on the input nodes themselves (known voltages)."""
    spec = make_spec(rows=3, cols=3, r_driver_ohm=0.0, r_wire_row_ohm=0.0, r_wire_col_ohm=4.0, r_sense_ohm=200.0,
                     netlist=str(CIRCUITS / "memristor_sinh.cir"))
    rng = np.random.default_rng(8)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (3, 3))
    v = rng.uniform(0.0, spec.v_read_max_v, (4, 3))
    exact = nodal.column_currents_sinh(spec, g, v, b_per_v=5.0)
    swept, failed = ngspice.solve(spec, g, v)
    assert not failed.any()
    # swept points with these 4 ohm column wires: 1.1e-7 of full scale (the first, an .op, 1e-14)
    assert np.max(np.abs(swept - exact)) <= 1e-6 * np.max(np.abs(exact))
    assert np.max(np.abs(exact - nodal.column_currents(spec, g, v))) > 1e-3 * np.max(np.abs(exact))
    with pytest.raises(ValueError, match="^g_s has shape \\(2, 3\\), expected \\(3, 3\\)$"):
        nodal.column_currents(spec, g[:2], v)


def test_newton_reference_says_when_it_does_not_converge(make_spec):
    spec = make_spec(rows=3, cols=2, netlist=str(CIRCUITS / "memristor_sinh.cir"))
    g = np.full((3, 2), 3e-5)
    v = np.array([[0.0, 0.0, 0.0], [0.2, 0.1, 0.2]])
    with pytest.raises(RuntimeError, match="^Newton solve of vector 1 did not converge in 1 iterations$"):
        nodal.column_currents_sinh(spec, g, v, b_per_v=5.0, max_iter=1)


def test_two_vectors_and_a_sub_ohm_driver_use_the_norton_form(make_spec):
    spec = make_spec(rows=2, cols=2, r_driver_ohm=0.5)
    lines = _lines(build_netlist(spec, G, V3[:2], use_klu=False))
    assert "bin0 0 d0 I=pwl(temper, 0,0.1, 1,0) / 0.5" in lines and "rdrv0 d0 0 0.5" in lines


def test_driver_subcircuit_with_zero_spec_resistance_still_feeds_the_row_wire(make_spec, tmp_path):
    path = tmp_path / "driver.cir"
    path.write_text((CIRCUITS / "resistive.cir").read_text()
                    + "\n.subckt driver in out params: r=1\nR1 in out {r}\n.ends driver\n")
    spec = make_spec(rows=2, cols=2, netlist=str(path), r_driver_ohm=0.0, r_wire_row_ohm=2.0)
    lines = _lines(build_netlist(spec, G, V1, use_klu=False))
    assert "xdrv1 in1 d1 driver r=0" in lines and "rwr1_0 d1 a1_0 2" in lines


@pytest.mark.spice
@pytest.mark.parametrize("r_sense, r_wire_col", [(0.0, 0.0), (0.5, 0.0)])
def test_sinh_cells_ending_on_ground_or_a_sub_ohm_sense(make_spec, r_sense, r_wire_col):
    spec = make_spec(rows=3, cols=2, r_driver_ohm=100.0, r_wire_row_ohm=3.0, r_wire_col_ohm=r_wire_col,
                     r_sense_ohm=r_sense, netlist=str(CIRCUITS / "memristor_sinh.cir"), g_on_s=1e-3, g_off_s=1e-4)
    rng = np.random.default_rng(9)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (3, 2))
    v = rng.uniform(0.0, spec.v_read_max_v, (3, 3))
    exact = nodal.column_currents_sinh(spec, g, v, b_per_v=5.0)
    swept, failed = ngspice.solve(spec, g, v)
    assert not failed.any()
    assert np.max(np.abs(swept - exact)) <= 1e-6 * np.max(np.abs(exact))
