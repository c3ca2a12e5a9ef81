"""Read power from an ngspice solve: what the row sources deliver and where it is dissipated.

The static power of one read is computed from the node voltages ngspice solved (every node of the
array is a vector of the DC sweep) and the known resistances, element by element:

- source power ``p_w = sum_r v_r * I_r``, the current ``I_r`` drawn from row source ``r``: through the plain
  driver resistor ``(v_r - V(d_r)) / r_driver_ohm`` (the Thevenin source a swept row's Norton equivalent
  stands for, :mod:`spice.netlist`), else the source's own branch current;
- dissipation in each part of :data:`POWER_PARTS`: driver ``(v_r - V(d_r))^2 / R`` (a driver subcircuit:
  the power into it, ``(v_r - V(d_r)) I_r``), row and column wire segments ``dV^2 / R``, sense ``V(s_c)^2 / R``
  (a sense subcircuit: ``V(s_c) i_c``), cells ``g dV^2`` for a resistive cell (:class:`spice.exact.LinearCell`),
  otherwise ``I_cell dV`` with each cell's current from Kirchhoff's current law along its row wire
  (or its column wire when the row wire has no resistance).

Energy conservation is checked for every sample (:func:`conservation_failures`): the source power must
equal the sum of the dissipations within :data:`CONSERVATION_RTOL`. With resistive cells every part is
computed from the node voltages alone, so the check tests the whole solve; with other cells it tests the
Kirchhoff current law at the nodes not used to find the cell currents. Where no wire has resistance and
the cell is not resistive, the cells' power is what enters the array minus what leaves it into the sense
elements (Tellegen), and the check cannot fail: stated in ``/p_parts_w``'s attribute ``cells_from``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spice.circuit import CircuitSpec
from spice.nodal import POWER_PARTS

CONSERVATION_RTOL = 1e-6
"""Largest |source power - sum of dissipations| of a valid sample, relative to the sample's source power
plus :data:`CONSERVATION_FLOOR` of the array's full-scale power (so that a read of near-zero inputs is not
judged on rounding)."""
CONSERVATION_FLOOR = 1e-9
"""Fraction of the full-scale power ``rows * cols * g_on_s * v_read_max_v^2`` (W) below which a residual is
solver rounding."""

__all__ = ["POWER_PARTS", "PowerProbes", "conservation_failures", "full_scale_power_w", "probes_for"]


def full_scale_power_w(spec: CircuitSpec) -> float:
    """rows * cols * g_on_s * v_read_max_v^2 (W): every cell at g_on across the largest read voltage."""
    return spec.rows * spec.cols * spec.g_on_s * spec.v_read_max_v ** 2


def _cell_is_resistive(spec: CircuitSpec) -> bool:
    from spice.exact import LinearCell, UnsupportedCircuitError, cell_model

    try:
        return isinstance(cell_model(spec), LinearCell)
    except UnsupportedCircuitError:
        return False


@dataclass(frozen=True)
class PowerProbes:
    """The ngspice vectors the power of a solve of ``spec`` needs, and how to turn them into power."""

    spec: CircuitSpec
    names: tuple[str, ...]
    """Node voltages and branch currents to read, in order."""
    source_branch: bool
    """The row source currents are branch currents (``bin<r>#branch`` / ``vin<r>#branch``), not read off
    a plain driver resistor."""
    resistive_cell: bool
    n_vectors: int
    """The number of vectors of the run the names are for (a run of one vector names its sources
    ``vin<r>``, a sweep ``bin<r>``; a vector of a sweep solved alone reads the same positions)."""

    @property
    def cells_from(self) -> str:
        """How the cells' power is found (stored with the dataset)."""
        if self.resistive_cell:
            return "g dV^2 per cell (resistive cell)"
        if self.spec.r_wire_row_ohm > 0:
            return "I dV per cell, I from Kirchhoff's current law along the row wire"
        if self.spec.r_wire_col_ohm > 0:
            return "I dV per cell, I from Kirchhoff's current law along the column wire"
        return "power into the array minus power into the sense elements (conservation not tested)"

    def powers(self, v_v: np.ndarray, i_a: np.ndarray, probe: np.ndarray, g_s: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """(p_w [n], p_parts_w [n, len(POWER_PARTS)]) in W for row voltages ``v_v`` [n, rows] (V), column
        currents ``i_a`` [n, cols] (A), the probe vectors ``probe`` [n, len(names)] and conductances
        ``g_s`` [rows, cols] (S)."""
        spec = self.spec
        rows, cols = spec.rows, spec.cols
        n = len(v_v)
        at = {name: k for k, name in enumerate(self.names)}

        def get(name: str) -> np.ndarray:
            return probe[:, at[name]]

        def grid(fmt: Callable[[int, int], str]) -> np.ndarray:
            return np.stack([np.stack([get(fmt(r, c)) for c in range(cols)], 1) for r in range(rows)], 1)

        subckts = spec.subckts()
        custom_driver, custom_sense = "driver" in subckts, "sense" in subckts
        has_driver = custom_driver or spec.r_driver_ohm > 0
        v_d = np.stack([get(f"d{r}") for r in range(rows)], 1) if has_driver else v_v
        if self.source_branch:
            i_src = -np.stack([get(_source_vector(r, self.n_vectors)) for r in range(rows)], 1)
        else:
            i_src = (v_v - v_d) / spec.r_driver_ohm
        p_src = np.sum(v_v * i_src, axis=1)
        parts = np.zeros((n, len(POWER_PARTS)))

        def add(part: str, p: np.ndarray) -> None:
            parts[:, POWER_PARTS.index(part)] += p

        if custom_driver:
            add("driver", np.sum((v_v - v_d) * i_src, axis=1))
        elif spec.r_driver_ohm > 0:
            add("driver", np.sum((v_v - v_d) ** 2, axis=1) / spec.r_driver_ohm)
        has_sense_node = custom_sense or spec.r_sense_ohm > 0
        v_s = np.stack([get(f"s{c}") for c in range(cols)], 1) if has_sense_node else np.zeros((n, cols))
        if custom_sense:
            add("sense", np.sum(v_s * i_a, axis=1))
        elif spec.r_sense_ohm > 0:
            add("sense", np.sum(v_s ** 2, axis=1) / spec.r_sense_ohm)
        if spec.r_wire_row_ohm > 0:
            v_row = grid(lambda r, c: f"a{r}_{c}")  # [n, rows, cols]
            row_drop = np.diff(np.concatenate([v_d[:, :, None], v_row], axis=2), axis=2)  # [n, rows, cols]
            add("row_wires", np.sum(row_drop ** 2, axis=(1, 2)) / spec.r_wire_row_ohm)
        else:
            v_row = np.broadcast_to(v_d[:, :, None], (n, rows, cols))
        if spec.r_wire_col_ohm > 0:
            v_col = grid(lambda r, c: f"b{r}_{c}")
            col_drop = np.diff(np.concatenate([v_col, v_s[:, None, :]], axis=1), axis=1)  # [n, rows, cols]
            add("col_wires", np.sum(col_drop ** 2, axis=(1, 2)) / spec.r_wire_col_ohm)
        else:
            v_col = np.broadcast_to(v_s[:, None, :], (n, rows, cols))
        v_cell = v_row - v_col
        if self.resistive_cell:
            add("cells", np.einsum("nrc,rc->n", v_cell ** 2, g_s))
        elif spec.r_wire_row_ohm > 0:
            i_seg = -row_drop / spec.r_wire_row_ohm  # current along the row into each cell's node
            i_cell = i_seg - np.concatenate([i_seg[:, :, 1:], np.zeros((n, rows, 1))], axis=2)
            add("cells", np.sum(i_cell * v_cell, axis=(1, 2)))
        elif spec.r_wire_col_ohm > 0:
            j_seg = -col_drop / spec.r_wire_col_ohm  # current down the column out of each cell's node
            i_cell = j_seg - np.concatenate([np.zeros((n, 1, cols)), j_seg[:, :-1, :]], axis=1)
            add("cells", np.sum(i_cell * v_cell, axis=(1, 2)))
        else:
            add("cells", np.sum(v_d * i_src, axis=1) - np.sum(v_s * i_a, axis=1))
        return p_src, parts


def _source_vector(r: int, n_vectors: int) -> str:
    """The branch current of row ``r``'s source (:func:`spice.netlist.build_netlist`): a DC source for one
    vector, a B-source for a sweep."""
    return f"vin{r}#branch" if n_vectors == 1 else f"bin{r}#branch"


def probes_for(spec: CircuitSpec, n_vectors: int) -> PowerProbes:
    """The vectors to read from a solve of ``n_vectors`` input vectors of ``spec``'s array."""
    rows, cols = spec.rows, spec.cols
    subckts = spec.subckts()
    names: list[str] = []
    has_driver = "driver" in subckts or spec.r_driver_ohm > 0
    source_branch = "driver" in subckts or spec.r_driver_ohm == 0
    if has_driver:
        names += [f"d{r}" for r in range(rows)]
    if source_branch:
        names += [_source_vector(r, n_vectors) for r in range(rows)]
    if "sense" in subckts or spec.r_sense_ohm > 0:
        names += [f"s{c}" for c in range(cols)]
    if spec.r_wire_row_ohm > 0:
        names += [f"a{r}_{c}" for r in range(rows) for c in range(cols)]
    if spec.r_wire_col_ohm > 0:
        names += [f"b{r}_{c}" for r in range(rows) for c in range(cols)]
    return PowerProbes(spec=spec, names=tuple(names), source_branch=source_branch,
                       resistive_cell=_cell_is_resistive(spec), n_vectors=n_vectors)


def conservation_failures(spec: CircuitSpec, p_w: np.ndarray, p_parts_w: np.ndarray) -> np.ndarray:
    """Per sample: '' when the source power equals the sum of the dissipations within
    :data:`CONSERVATION_RTOL` (and the floor), else why not."""
    total = p_parts_w.sum(axis=1)
    residual = np.abs(p_w - total)
    tolerance = CONSERVATION_RTOL * np.abs(p_w) + CONSERVATION_FLOOR * full_scale_power_w(spec)
    reasons = np.full(len(p_w), "", dtype=object)
    finite = np.isfinite(p_w) & np.all(np.isfinite(p_parts_w), axis=1)
    for k in np.flatnonzero(~finite):
        reasons[k] = "energy: non-finite read power"
    for k in np.flatnonzero(finite & (residual > tolerance)):
        reasons[k] = (f"energy: source power {p_w[k]:.6e} W != sum of dissipations {total[k]:.6e} W "
                      f"(residual {residual[k]:.2e} W > tolerance {tolerance[k]:.2e} W)")
    return reasons


def residuals(p_w: np.ndarray, p_parts_w: np.ndarray) -> np.ndarray:
    """|source power - sum of dissipations| / source power per sample (NaN where the source power is 0: a
    read of all-zero inputs)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p_w != 0, np.abs(p_w - p_parts_w.sum(axis=1)) / np.abs(p_w), np.nan)
