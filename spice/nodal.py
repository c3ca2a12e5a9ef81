"""Exact sparse nodal solve of a crossbar with default driver and sense: linear resistive cells, and
the non-linear sinh cell by Newton's method.

An independent reference for ngspice: it shares no code with :mod:`spice.netlist` and assembles
the nodal conductance matrix directly. It is used to cross-check ngspice in tests and as the
"exact" mode of the DNN stage; it never silently replaces SPICE in the dataset stage.

Because the array is linear, the column currents are ``i = v @ T`` with the transfer matrix
``T`` [rows, cols] (A/V); :func:`transfer_matrix` returns it exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from spice.circuit import CircuitSpec


def transfer_matrix(spec: CircuitSpec, g_s: np.ndarray) -> np.ndarray:
    """Exact transfer matrix T [rows, cols] (A/V) such that column currents are ``v @ T``.

    ``g_s`` [rows, cols] are the cell conductances (S). Only valid for linear resistive cells and
    the default (resistor) driver and sense elements.
    """
    rows, cols = spec.rows, spec.cols
    net = _Network(spec, g_s)
    x = spla.splu(net.k_mat).solve(net.b_mat) if net.n else np.zeros((0, rows))  # node volts per unit input

    def voltage_rows(node: tuple) -> np.ndarray:
        """Node voltage as a linear function of the inputs: [rows] coefficients."""
        if node[0] == "gnd":
            return np.zeros(rows)
        if node[0] == "in":
            e = np.zeros(rows)
            e[node[1]] = 1.0
            return e
        return x[net.index[node]]

    t = np.zeros((rows, cols))
    for c in range(cols):
        if spec.r_sense_ohm > 0:
            t[:, c] = voltage_rows(("s", c)) / spec.r_sense_ohm
        else:  # virtual ground: sum the currents of every element that ends on it
            for node, g, _cell in net.into_sense[c]:
                t[:, c] += g * voltage_rows(node)
    return t


POWER_PARTS = ("cells", "row_wires", "col_wires", "driver", "sense")
"""Where the read power goes, in the order of ``/p_parts_w``'s columns (:mod:`spice.io`)."""


def _unit_voltages(spec: CircuitSpec, net: _Network) -> dict[tuple, np.ndarray]:
    """Every node's voltage as a linear function of the inputs: node -> [rows] coefficients."""
    rows = spec.rows
    x = spla.splu(net.k_mat).solve(net.b_mat) if net.n else np.zeros((0, rows))
    out: dict[tuple, np.ndarray] = {("gnd",): np.zeros(rows)}
    for r in range(rows):
        e = np.zeros(rows)
        e[r] = 1.0
        out[("in", r)] = e
    for node, i in net.index.items():
        out[node] = x[i]
    return out


def input_admittance(spec: CircuitSpec, g_s: np.ndarray) -> np.ndarray:
    """Y [rows, rows] (A/V): the currents drawn from the row sources are ``Y @ v``, so the read power is the
    quadratic form ``v @ Y @ v`` (W). Linear resistive cells, default driver and sense; symmetric."""
    net = _Network(spec, g_s)
    volts = _unit_voltages(spec, net)
    y = np.zeros((spec.rows, spec.rows))
    for a, b, g in net.elements:  # only the elements that touch a source (the driver, or what it merges into)
        for here, there in ((a, b), (b, a)):
            if here[0] == "in":
                y[here[1]] += g * (volts[here] - volts[there])
    return y


def power_quadratic_forms(spec: CircuitSpec, g_s: np.ndarray) -> np.ndarray:
    """Q [parts, rows, rows] (A/V): the power dissipated in each part of :data:`POWER_PARTS` is
    ``v @ Q[p] @ v`` (W), from every element's voltage drop (linear resistive cells, default driver and
    sense). Their sum equals :func:`input_admittance` (energy conservation)."""
    net = _Network(spec, g_s)
    volts = _unit_voltages(spec, net)
    q = np.zeros((len(POWER_PARTS), spec.rows, spec.rows))
    for (a, b, g), part in zip(net.elements, net.parts, strict=True):
        d = volts[a] - volts[b]
        q[POWER_PARTS.index(part)] += g * np.outer(d, d)
    return q


def element_powers(spec: CircuitSpec, g_s: np.ndarray, v_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(source power [n] (W): sum over rows of v_r times the current drawn from source r; dissipation per
    part [n, len(POWER_PARTS)] (W): sum over elements of g (v_a - v_b)^2) for input vectors ``v_v``
    [n, rows] (V). Linear resistive cells, default driver and sense."""
    v_v = np.atleast_2d(np.asarray(v_v, dtype=float))
    net = _Network(spec, g_s)
    volts = _unit_voltages(spec, net)
    p_src = np.zeros(v_v.shape[0])
    parts = np.zeros((v_v.shape[0], len(POWER_PARTS)))
    for (a, b, g), part in zip(net.elements, net.parts, strict=True):
        d = v_v @ (volts[a] - volts[b])  # [n] voltage drop a -> b
        parts[:, POWER_PARTS.index(part)] += g * d * d
        if a[0] == "in":
            p_src += v_v[:, a[1]] * g * d
        if b[0] == "in":
            p_src -= v_v[:, b[1]] * g * d
    return p_src, parts


def column_currents(spec: CircuitSpec, g_s: np.ndarray, v_v: np.ndarray) -> np.ndarray:
    """Column currents [n_vectors, cols] (A) for input vectors ``v_v`` [n_vectors, rows] (V)."""
    return np.atleast_2d(v_v) @ transfer_matrix(spec, g_s)


def column_currents_sinh(spec: CircuitSpec, g_s: np.ndarray, v_v: np.ndarray, b_per_v: float,
                         rel_tol: float = 1e-13, max_iter: int = 50) -> np.ndarray:
    """Column currents [n_vectors, cols] (A) of the array with non-linear cells ``I = g/b sinh(b V)``.

    The cell of ``data/circuits/memristor_sinh.cir`` (``b = b_per_v``; ``dI/dV = g`` at 0 V), solved
    by Newton's method on the nodal equations from the linear solution, until the largest node
    voltage step is below ``rel_tol`` of the largest node voltage. Default driver and sense only.
    """
    net = _Network(spec, g_s)
    v_v = np.atleast_2d(np.asarray(v_v, dtype=float))
    n, rows = net.n, spec.rows
    # Cell terminals as positions in z = [unknown node volts, input volts, ground].
    where = {node: i for node, i in net.index.items()}
    where.update({("in", r): n + r for r in range(rows)})
    where[("gnd",)] = n + rows
    ia = np.array([where[a] for a, _b, _g in net.cells], dtype=int)
    ib = np.array([where[b] for _a, b, _g in net.cells], dtype=int)
    gc = np.array([g for _a, _b, g in net.cells])
    k_lin = net.k_mat - net.k_cells
    lu_lin = spla.splu(net.k_mat)
    out = np.zeros((v_v.shape[0], spec.cols))
    for k, v in enumerate(v_v):
        x = lu_lin.solve(net.b_mat @ v) if n else np.zeros(0)
        for _ in range(max_iter):
            z = np.concatenate([x, v, [0.0]])
            d = z[ia] - z[ib]
            i_cell = gc / b_per_v * np.sinh(b_per_v * d)
            residual = k_lin @ x - net.b_lin @ v + _scatter(n, ia, ib, i_cell)
            jac = k_lin + _stamp(n, ia, ib, gc * np.cosh(b_per_v * d))
            step = spla.spsolve(jac.tocsc(), -residual)
            x = x + step
            if np.max(np.abs(step), initial=0.0) <= rel_tol * max(np.max(np.abs(x), initial=0.0), 1e-300):
                break
        else:
            raise RuntimeError(f"Newton solve of vector {k} did not converge in {max_iter} iterations")
        z = np.concatenate([x, v, [0.0]])
        for c in range(spec.cols):
            if spec.r_sense_ohm > 0:
                out[k, c] = z[where[("s", c)]] / spec.r_sense_ohm
            else:  # virtual ground: every element that ends on it
                for node, g, cell in net.into_sense[c]:
                    vn = z[where[node]]
                    out[k, c] += g / b_per_v * np.sinh(b_per_v * vn) if cell else g * vn
    return out


def _scatter(n: int, ia: np.ndarray, ib: np.ndarray, i_ab: np.ndarray) -> np.ndarray:
    """Net current leaving each unknown node for element currents ``i_ab`` flowing from a to b."""
    out = np.zeros(n + 1)  # index n collects every known node (dropped)
    np.add.at(out, np.minimum(ia, n), i_ab)
    np.add.at(out, np.minimum(ib, n), -i_ab)
    return out[:n]


def _stamp(n: int, ia: np.ndarray, ib: np.ndarray, g: np.ndarray) -> sp.csr_matrix:
    """Nodal matrix of conductances ``g`` between a and b, on the unknown nodes (index < n) only."""
    ii, jj, vv = [], [], []
    for p, q, sign in ((ia, ia, 1.0), (ib, ib, 1.0), (ia, ib, -1.0), (ib, ia, -1.0)):
        keep = (p < n) & (q < n)
        ii.append(p[keep])
        jj.append(q[keep])
        vv.append(sign * g[keep])
    return sp.csr_matrix((np.concatenate(vv), (np.concatenate(ii), np.concatenate(jj))), shape=(n, n))


class _Network:
    """The array's nodes and elements (no code shared with :mod:`spice.netlist`).

    ``k_mat``/``b_mat``: nodal matrix on the unknown nodes and injection from the row inputs with
    cells as conductances g (``k_mat x = b_mat v``); ``k_cells``/``b_cells``: the cells' share of
    them; ``cells``: (row node, column node, g) per cell; ``elements``: (a, b, g) of every element and
    ``parts`` its :data:`POWER_PARTS` name; ``into_sense[c]``: (node, g, is_cell) of
    the elements ending on column c's sense input.
    """

    def __init__(self, spec: CircuitSpec, g_s: np.ndarray) -> None:
        rows, cols = spec.rows, spec.cols
        g_s = np.asarray(g_s, dtype=float)
        if g_s.shape != (rows, cols):
            raise ValueError(f"g_s has shape {g_s.shape}, expected ({rows}, {cols})")

        # Each node is ("in", r) [known], ("gnd",) [known] or an unknown tuple.
        def drv(r: int) -> tuple:
            return ("in", r) if spec.r_driver_ohm == 0 else ("d", r)

        def row_node(r: int, c: int) -> tuple:
            return drv(r) if spec.r_wire_row_ohm == 0 else ("a", r, c)

        def sense_in(c: int) -> tuple:
            return ("gnd",) if spec.r_sense_ohm == 0 else ("s", c)

        def col_node(r: int, c: int) -> tuple:
            return sense_in(c) if spec.r_wire_col_ohm == 0 else ("b", r, c)

        elements: list[tuple[tuple, tuple, float, bool]] = []  # (a, b, g, is_cell)
        parts: list[str] = []  # the POWER_PARTS name of each element
        self.into_sense: dict[int, list[tuple[tuple, float, bool]]] = {c: [] for c in range(cols)}
        for r in range(rows):
            if spec.r_driver_ohm > 0:
                elements.append((("in", r), drv(r), 1.0 / spec.r_driver_ohm, False))
                parts.append("driver")
            if spec.r_wire_row_ohm > 0:
                gw = 1.0 / spec.r_wire_row_ohm
                elements.append((drv(r), row_node(r, 0), gw, False))
                parts.append("row_wires")
                for c in range(1, cols):
                    elements.append((row_node(r, c - 1), row_node(r, c), gw, False))
                    parts.append("row_wires")
            for c in range(cols):
                elements.append((row_node(r, c), col_node(r, c), g_s[r, c], True))
                parts.append("cells")
                if spec.r_wire_col_ohm == 0:
                    self.into_sense[c].append((row_node(r, c), g_s[r, c], True))
        if spec.r_wire_col_ohm > 0:
            gw = 1.0 / spec.r_wire_col_ohm
            for c in range(cols):
                for r in range(rows - 1):
                    elements.append((col_node(r, c), col_node(r + 1, c), gw, False))
                    parts.append("col_wires")
                elements.append((col_node(rows - 1, c), sense_in(c), gw, False))
                parts.append("col_wires")
                self.into_sense[c].append((col_node(rows - 1, c), gw, False))
        if spec.r_sense_ohm > 0:
            for c in range(cols):
                elements.append((sense_in(c), ("gnd",), 1.0 / spec.r_sense_ohm, False))
                parts.append("sense")

        self.index: dict[tuple, int] = {}
        for a, b, _g, _cell in elements:
            for node in (a, b):
                if node[0] not in ("in", "gnd") and node not in self.index:
                    self.index[node] = len(self.index)
        self.n = len(self.index)
        self.cells = [(a, b, g) for a, b, g, cell in elements if cell]
        self.elements = [(a, b, g) for a, b, g, _cell in elements]
        self.parts = parts
        self.k_mat, self.b_mat = self._matrices(elements, rows)
        self.k_cells, b_cells = self._matrices([e for e in elements if e[3]], rows)
        self.b_lin = sp.csr_matrix(self.b_mat - b_cells)

    def _matrices(self, elements: list, rows: int) -> tuple[sp.csc_matrix, np.ndarray]:
        """Nodal matrix K on the unknown nodes and injection B from the inputs: K x = B v."""
        ki, kj, kv = [], [], []
        bi, bj, bv = [], [], []
        for a, b, g, _cell in elements:
            for p, q in ((a, b), (b, a)):
                if p[0] in ("in", "gnd"):
                    continue
                ip = self.index[p]
                ki.append(ip)
                kj.append(ip)
                kv.append(g)
                if q[0] == "in":
                    bi.append(ip)
                    bj.append(q[1])
                    bv.append(g)
                elif q[0] != "gnd":
                    ki.append(ip)
                    kj.append(self.index[q])
                    kv.append(-g)
        k_mat = sp.csc_matrix((kv, (ki, kj)), shape=(self.n, self.n))
        b_mat = sp.csr_matrix((bv, (bi, bj)), shape=(self.n, rows)).toarray()
        return k_mat, b_mat
