"""The dynamic cost of a read: a transient ngspice run with wire capacitance, its settling time and charging energy.

A measurement path, not part of the dataset stage: every wire segment's node gets the circuit's capacitance
to ground (``c_wire_row_f``, ``c_wire_col_f``), every row source steps from 0 V to its read voltage at t = 0
(rise time ``rise_s``), and ngspice integrates the array until ``t_stop_s``. From the run:

- **settling time**: the last time any column current is further than half an ADC step from its final (DC)
  value, an ADC step being the full-scale column current ``g_on_s * v_read_max_v * rows`` over 2^bits;
- **energy**: the source energy ``integral of sum_r v_r(t) I_r(t) dt`` over the run, against the static energy
  the same read draws without capacitance (``p_static_w`` over the run, the ramp at ``(t / rise)^2`` of it); their
  difference is the charging energy (what the wire capacitance costs per read), next to the energy it stores,
  ``1/2 sum C V_node^2`` at DC. For a linear array driven by a step the charging energy is twice the stored
  energy (half of it is dissipated while charging): a check of the run's time resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spice import ngspice
from spice.circuit import CircuitError, CircuitSpec
from spice.netlist import build_netlist, column_current_vector
from spice.power import probes_for


@dataclass(frozen=True)
class TransientRead:
    """One transient read (units in the names; arrays over the time points ngspice chose)."""

    t_s: np.ndarray
    i_a: np.ndarray
    """[n_t, cols] column currents."""
    p_w: np.ndarray
    """[n_t] power drawn from the row sources."""
    i_final_a: np.ndarray
    """[cols] the DC (settled) column currents."""
    p_static_w: float
    """The DC read power."""
    tolerance_a: float
    """Half an ADC step."""
    settling_time_s: float
    """inf when the run ended before the currents settled."""
    e_source_j: float
    e_static_j: float
    e_stored_j: float
    """1/2 sum C V^2 over the wire nodes at DC."""

    @property
    def e_dynamic_j(self) -> float:
        """Charging energy: the source energy of the run minus the static energy over the same time."""
        return self.e_source_j - self.e_static_j


def transient_read(spec: CircuitSpec, g_s: np.ndarray, v_v: np.ndarray, t_stop_s: float, t_max_step_s: float,
                   rise_s: float, adc_bits: int) -> TransientRead:
    """Solve one read of row voltages ``v_v`` [rows] (V) on conductances ``g_s`` [rows, cols] (S) in time.

    Raises :class:`spice.circuit.CircuitError` naming the key when the circuit has no wire capacitance or no
    wire resistance for it to sit on, and :class:`spice.ngspice.NgspiceError` when ngspice fails."""
    where = f"circuit '{spec.name}'"
    if not (spec.c_wire_row_f > 0 or spec.c_wire_col_f > 0):
        raise CircuitError(f"{where}: c_wire_row_f and c_wire_col_f are 0: a transient read needs a wire "
                           "capacitance per segment (F)")
    if (spec.c_wire_row_f > 0 and spec.r_wire_row_ohm == 0) or (spec.c_wire_col_f > 0 and spec.r_wire_col_ohm == 0):
        raise CircuitError(f"{where}: a wire capacitance needs the wire's segments (r_wire_row_ohm / r_wire_col_ohm "
                           "> 0) to sit on")
    for key, value in (("t_stop_s", t_stop_s), ("t_max_step_s", t_max_step_s), ("rise_s", rise_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{key} must be a number > 0 s, got {value!r}")
    v = np.asarray(v_v, dtype=float).reshape(1, spec.rows)
    names = [column_current_vector(c) for c in range(spec.cols)] + [f"vin{r}#branch" for r in range(spec.rows)]
    text = build_netlist(spec, g_s, v, ngspice.info().has_klu, step_rise_s=rise_s)
    out = ngspice.run_netlist(text, f"tran {t_max_step_s:.6g} {t_stop_s:.6g} 0 {t_max_step_s:.6g}",
                              ["time", *names])
    t = np.asarray(out["time"], dtype=float)
    i_a = np.stack([np.asarray(out[n], dtype=float) for n in names[:spec.cols]], axis=1)
    ramp = np.clip(t / rise_s, 0.0, 1.0)[:, None] * v  # the row source voltages in time
    i_src = -np.stack([np.asarray(out[n], dtype=float) for n in names[spec.cols:]], axis=1)
    p_w = np.sum(ramp * i_src, axis=1)

    probes = probes_for(spec, 1)
    cap_nodes = ([f"a{r}_{c}" for r in range(spec.rows) for c in range(spec.cols)] if spec.c_wire_row_f > 0 else [])
    n_row = len(cap_nodes)
    cap_nodes += [f"b{r}_{c}" for r in range(spec.rows) for c in range(spec.cols)] if spec.c_wire_col_f > 0 else []
    i_final, failed, probe = ngspice.solve_probed(spec, g_s, v, lambda n: [*probes.names, *cap_nodes])
    if failed.any():
        raise ngspice.NgspiceError(f"{where}: the DC read did not converge")
    k = len(probes.names)
    p_static = float(probes.powers(v, i_final, probe[:, :k], g_s)[0][0])
    tolerance = spec.tile.full_scale_a / 2 ** adc_bits / 2.0
    off = np.max(np.abs(i_a - i_final[0][None, :]), axis=1) > tolerance
    if off[-1]:
        settling = math.inf
    else:
        last = np.flatnonzero(off)
        settling = float(t[last[-1] + 1]) if last.size else 0.0
    e_source = float(np.trapezoid(p_w, t))
    volts = probe[0, k:]
    e_stored = 0.5 * (spec.c_wire_row_f * np.sum(volts[:n_row] ** 2) + spec.c_wire_col_f * np.sum(volts[n_row:] ** 2))
    return TransientRead(t_s=t, i_a=i_a, p_w=p_w, i_final_a=i_final[0], p_static_w=p_static, tolerance_a=tolerance,
                         settling_time_s=settling, e_source_j=e_source,
                         e_static_j=p_static * (float(t[-1]) - 2.0 * rise_s / 3.0),  # the ramp draws (t/rise)^2 of it
                         e_stored_j=float(e_stored))
