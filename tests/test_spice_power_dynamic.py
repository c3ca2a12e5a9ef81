"""The transient read (spice.dynamic): wire capacitance, settling time to half an ADC step, charging energy."""

from __future__ import annotations

import numpy as np
import pytest

from spice import ngspice
from spice.circuit import CircuitError
from spice.dynamic import transient_read


@pytest.fixture
def array(make_spec):
    def _make(c_f=0.2e-15, **overrides):
        spec = make_spec(rows=4, cols=4, r_driver_ohm=1000.0, r_sense_ohm=1000.0, c_wire_row_f=c_f,
                         c_wire_col_f=c_f, **overrides)
        rng = np.random.default_rng(0)
        return spec, rng.uniform(spec.g_off_s, spec.g_on_s, (4, 4)), rng.uniform(0.0, 0.2, 4)

    return _make


def test_a_step_charges_the_wires_with_twice_the_energy_they_store(array):
    """A linear RC network driven by a step draws C V^2 beyond its static power: half stored, half dissipated
    (the excess charge is dY/ds at s = 0 times v, and dY/ds = H^T C H). A ramp of 10 fs is a step here."""
    spec, g, v = array()
    r = transient_read(spec, g, v, t_stop_s=0.1e-9, t_max_step_s=0.1e-12, rise_s=1e-14, adc_bits=8)
    assert r.e_stored_j > 0
    assert r.e_dynamic_j / r.e_stored_j == pytest.approx(2.0, rel=0.01, abs=0)
    # the run ends settled: at the DC currents and power of the same read
    i_dc, _ = ngspice.solve(spec, g, v[None])
    np.testing.assert_allclose(r.i_final_a, i_dc[0], rtol=1e-9)
    np.testing.assert_allclose(r.i_a[-1], i_dc[0], rtol=1e-6)
    assert r.p_w[-1] == pytest.approx(r.p_static_w, rel=1e-6, abs=0)
    assert 0 < r.settling_time_s < 0.1e-9


def test_more_capacitance_settles_later_and_costs_more(array):
    small = transient_read(*array(c_f=0.2e-15), t_stop_s=0.2e-9, t_max_step_s=0.5e-12, rise_s=1e-12, adc_bits=8)
    large = transient_read(*array(c_f=2e-15), t_stop_s=0.2e-9, t_max_step_s=0.5e-12, rise_s=1e-12, adc_bits=8)
    assert large.settling_time_s > 2 * small.settling_time_s
    assert large.e_dynamic_j > 5 * small.e_dynamic_j
    finer = transient_read(*array(c_f=0.2e-15), t_stop_s=0.2e-9, t_max_step_s=0.5e-12, rise_s=1e-12, adc_bits=12)
    assert finer.tolerance_a == pytest.approx(small.tolerance_a / 16, abs=0) and finer.settling_time_s > small.settling_time_s


def test_a_run_too_short_to_settle_says_so(array):
    r = transient_read(*array(c_f=2e-15), t_stop_s=2e-12, t_max_step_s=0.1e-12, rise_s=1e-12, adc_bits=8)
    assert r.settling_time_s == float("inf")


def test_no_capacitance_or_no_wire_is_refused_naming_the_key(array):
    spec, g, v = array(c_f=0.0)
    with pytest.raises(CircuitError, match="c_wire_row_f and c_wire_col_f are 0"):
        transient_read(spec, g, v, 1e-10, 1e-12, 1e-12, 8)
    spec, g, v = array(r_wire_row_ohm=0.0)
    with pytest.raises(CircuitError, match="r_wire_row_ohm"):
        transient_read(spec, g, v, 1e-10, 1e-12, 1e-12, 8)
    spec, g, v = array()
    with pytest.raises(ValueError, match="t_stop_s must be a number > 0 s"):
        transient_read(spec, g, v, 0.0, 1e-12, 1e-12, 8)
