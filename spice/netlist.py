"""Build the ngspice netlist of a crossbar. Building never runs a simulation (see :mod:`spice.ngspice`).

Many input vectors are solved in one ngspice run: every row is driven by a B-source
``V = pwl(index, 0,v0, 1,v1, ...)`` and one DC sweep steps the index over 0..n-1, so ngspice orders
the sparse matrix once and reuses it for every vector. The index is the circuit temperature
(``dc temp``, B-sources read it as ``temper``) when nothing in the circuit file depends on
temperature (:attr:`CircuitSpec.temperature_independent`): the row sources then couple to no node
and KLU factors the matrix ~1.4x faster. Otherwise the index is the voltage of a swept source
``vidx`` (``V(idx)``). Behind a plain
driver resistor the row source is its Norton equivalent, ``I = pwl(...) / R_driver`` into the
driver node with ``R_driver`` to ground. (An E-source
TABLE is not used: ngspice smooths its corners and the row voltages come out ~1% wrong.)
The current of column ``c`` is the branch current of the 0 V source ``vm<c>`` in series with the
sense element, positive when it flows from the array into the sense element.
"""

from __future__ import annotations

import numpy as np

from spice.circuit import CircuitSpec

SWEEP_SOURCE = "vidx"
# Newton tolerances. ngspice's defaults (reltol 1e-3, vntol 1 uV) end a swept non-linear point after
# two iterations, up to 5e-5 of full scale away from the converged currents; reltol 1e-7 still left 5e-8
# (16x16 sinh, ideal ends, 0.6 V). These bring every swept point to within 1e-9 of full scale of an
# independent Newton solve (tests/test_spice_vs_nodal.py; measured <= 1.4e-10) at no measurable cost
# at 64x64 and 128x128.
ACCURACY_OPTIONS = "reltol=1e-10 vntol=1e-12"


FIRST_CIRCUIT_FILE_LINE = 3
"""Line of the netlist where the vetted circuit-file lines begin (after the title and .options)."""


def circuit_file_line(spec: CircuitSpec, netlist_line: int) -> int | None:
    """The circuit-file line that netlist line ``netlist_line`` (1-based) came from, if any."""
    vetted = spec.vetted_lines()
    k = netlist_line - FIRST_CIRCUIT_FILE_LINE
    return vetted[k].line_number if 0 <= k < len(vetted) else None


def _fmt(x: float) -> str:
    return f"{x:.15g}"


def column_current_vector(col: int) -> str:
    """Name of the ngspice vector that holds the current of column ``col``."""
    return f"vm{col}#branch"


def build_netlist(spec: CircuitSpec, g_s: np.ndarray, v_v: np.ndarray, use_klu: bool,
                  extra_options: str = "", step_rise_s: float = 0.0) -> str:
    """Netlist that solves the array with conductances ``g_s`` [rows, cols] for every input vector.

    ``v_v`` is [n_vectors, rows] (volts). With one vector the rows are plain DC sources; with more,
    the rows follow the swept index source (see module docstring) and the caller runs
    ``dc vidx 0 n-1 1``.

    ``step_rise_s`` > 0 (one vector only): a transient read (:mod:`spice.dynamic`): every row source steps
    from 0 V to its voltage at t = 0 with that rise time, and every wire segment's node gets the circuit's
    capacitance to ground (``c_wire_row_f`` on row nodes ``a<r>_<c>``, ``c_wire_col_f`` on column nodes
    ``b<r>_<c>``).
    """
    rows, cols = spec.rows, spec.cols
    g_s = np.asarray(g_s, dtype=float)
    v_v = np.atleast_2d(np.asarray(v_v, dtype=float))
    if g_s.shape != (rows, cols):
        raise ValueError(f"g_s has shape {g_s.shape}, expected ({rows}, {cols}) for circuit '{spec.name}'")
    if v_v.shape[1] != rows:
        raise ValueError(f"v_v has {v_v.shape[1]} rows, expected {rows} for circuit '{spec.name}'")
    n = v_v.shape[0]
    if step_rise_s > 0 and n != 1:
        raise ValueError(f"a transient read takes one input vector, got {n}")
    out: list[str] = [f"* xbarchar crossbar '{spec.name}' {rows}x{cols}"]
    options = " ".join(x for x in ("klu" if use_klu else "", ACCURACY_OPTIONS, extra_options) if x)
    out.append(f".options {options}")
    assert len(out) == FIRST_CIRCUIT_FILE_LINE - 1
    out.extend(line.text for line in spec.vetted_lines())
    subckts = spec.subckts()
    gate = spec.cell_has_gate

    # A swept row behind a plain driver resistor is driven by its Norton equivalent (a current
    # V/R_driver into the driver node, R_driver to ground): the same circuit for the array, and KLU
    # factors it ~1.5x faster than a B voltage source behind a series resistor.
    norton = n > 1 and "driver" not in subckts and spec.r_driver_ohm > 0
    by_temperature = spec.temperature_independent
    index = "temper" if by_temperature else "V(idx)"
    if not by_temperature:
        out.append(f"{SWEEP_SOURCE} idx 0 0")
    for r in range(rows):
        if n == 1 and step_rise_s > 0:
            rise = _fmt(step_rise_s)
            out.append(f"vin{r} in{r} 0 PULSE(0 {_fmt(v_v[0, r])} 0 {rise} {rise} 1 2)")
            continue
        if n == 1:
            out.append(f"vin{r} in{r} 0 {_fmt(v_v[0, r])}")
            continue
        points = ", ".join(f"{k},{_fmt(v_v[k, r])}" for k in range(n))
        if norton:
            out.append(f"bin{r} 0 d{r} I=pwl({index}, {points}) / {_fmt(spec.r_driver_ohm)}")
        else:
            out.append(f"bin{r} in{r} 0 V=pwl({index}, {points})")
    if gate:
        out.append(f"vgate gl 0 {_fmt(spec.v_gate_v)}")

    # Node names; a zero resistance merges the nodes it would separate.
    def drv(r: int) -> str:
        return f"in{r}" if spec.r_driver_ohm == 0 and "driver" not in subckts else f"d{r}"

    def row_node(r: int, c: int) -> str:
        return drv(r) if spec.r_wire_row_ohm == 0 else f"a{r}_{c}"

    def col_node(r: int, c: int) -> str:
        return f"s{c}" if spec.r_wire_col_ohm == 0 else f"b{r}_{c}"

    for r in range(rows):
        if "driver" in subckts:
            out.append(f"xdrv{r} in{r} d{r} driver r={_fmt(spec.r_driver_ohm)}")
        elif norton:
            out.append(f"rdrv{r} d{r} 0 {_fmt(spec.r_driver_ohm)}")
        elif spec.r_driver_ohm > 0:
            out.append(f"rdrv{r} in{r} d{r} {_fmt(spec.r_driver_ohm)}")
        if spec.r_wire_row_ohm > 0:
            out.append(f"rwr{r}_0 {drv(r)} a{r}_0 {_fmt(spec.r_wire_row_ohm)}")
            for c in range(1, cols):
                out.append(f"rwr{r}_{c} a{r}_{c - 1} a{r}_{c} {_fmt(spec.r_wire_row_ohm)}")
    for r in range(rows):
        for c in range(cols):
            pins = f"{row_node(r, c)} {col_node(r, c)}" + (" gl" if gate else "")
            out.append(f"xc{r}_{c} {pins} cell g={_fmt(g_s[r, c])}")
    if spec.r_wire_col_ohm > 0:
        for c in range(cols):
            for r in range(rows - 1):
                out.append(f"rwc{r}_{c} b{r}_{c} b{r + 1}_{c} {_fmt(spec.r_wire_col_ohm)}")
            out.append(f"rwc{rows - 1}_{c} b{rows - 1}_{c} s{c} {_fmt(spec.r_wire_col_ohm)}")
    if step_rise_s > 0:
        for r in range(rows):
            for c in range(cols):
                if spec.c_wire_row_f > 0 and spec.r_wire_row_ohm > 0:
                    out.append(f"cwr{r}_{c} a{r}_{c} 0 {_fmt(spec.c_wire_row_f)}")
                if spec.c_wire_col_f > 0 and spec.r_wire_col_ohm > 0:
                    out.append(f"cwc{r}_{c} b{r}_{c} 0 {_fmt(spec.c_wire_col_f)}")
    for c in range(cols):
        if "sense" in subckts:
            out.append(f"vm{c} s{c} t{c} 0")
            out.append(f"xsense{c} t{c} sense r={_fmt(spec.r_sense_ohm)}")
        elif spec.r_sense_ohm > 0:
            out.append(f"vm{c} s{c} t{c} 0")
            out.append(f"rsense{c} t{c} 0 {_fmt(spec.r_sense_ohm)}")
        else:
            out.append(f"vm{c} s{c} 0 0")
    out.append(".end")
    return "\n".join(out) + "\n"


def sweep_command(spec: CircuitSpec, n_vectors: int) -> str:
    """The analysis command that solves all vectors of :func:`build_netlist`."""
    if n_vectors == 1:
        return "op"
    swept = "temp" if spec.temperature_independent else SWEEP_SOURCE
    return f"dc {swept} 0 {n_vectors - 1} 1"
