"""Exact sparse nodal solve of a *linear* crossbar (resistive cells, default driver and sense).

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
    g_s = np.asarray(g_s, dtype=float)
    if g_s.shape != (rows, cols):
        raise ValueError(f"g_s has shape {g_s.shape}, expected ({rows}, {cols})")

    # Unknown-node numbering. Known nodes: inputs (one per row) and ground.
    index: dict[tuple, int] = {}

    def unknown(key: tuple) -> int:
        if key not in index:
            index[key] = len(index)
        return index[key]

    # Each node is ("in", r) [known], ("gnd",) [known] or an unknown tuple.
    def drv(r: int) -> tuple:
        return ("in", r) if spec.r_driver_ohm == 0 else ("d", r)

    def row_node(r: int, c: int) -> tuple:
        return drv(r) if spec.r_wire_row_ohm == 0 else ("a", r, c)

    def sense_in(c: int) -> tuple:
        return ("gnd",) if spec.r_sense_ohm == 0 else ("s", c)

    def col_node(r: int, c: int) -> tuple:
        return sense_in(c) if spec.r_wire_col_ohm == 0 else ("b", r, c)

    elements: list[tuple[tuple, tuple, float]] = []
    # Elements whose second terminal is column c's sense input (used when that input is ground).
    into_sense: dict[int, list[tuple[tuple, float]]] = {c: [] for c in range(cols)}
    for r in range(rows):
        if spec.r_driver_ohm > 0:
            elements.append((("in", r), drv(r), 1.0 / spec.r_driver_ohm))
        if spec.r_wire_row_ohm > 0:
            gw = 1.0 / spec.r_wire_row_ohm
            elements.append((drv(r), row_node(r, 0), gw))
            for c in range(1, cols):
                elements.append((row_node(r, c - 1), row_node(r, c), gw))
        for c in range(cols):
            elements.append((row_node(r, c), col_node(r, c), g_s[r, c]))
            if spec.r_wire_col_ohm == 0:
                into_sense[c].append((row_node(r, c), g_s[r, c]))
    if spec.r_wire_col_ohm > 0:
        gw = 1.0 / spec.r_wire_col_ohm
        for c in range(cols):
            for r in range(rows - 1):
                elements.append((col_node(r, c), col_node(r + 1, c), gw))
            elements.append((col_node(rows - 1, c), sense_in(c), gw))
            into_sense[c].append((col_node(rows - 1, c), gw))
    if spec.r_sense_ohm > 0:
        for c in range(cols):
            elements.append((sense_in(c), ("gnd",), 1.0 / spec.r_sense_ohm))

    def is_known(node: tuple) -> bool:
        return node[0] in ("in", "gnd")

    for a, b, _g in elements:
        for node in (a, b):
            if not is_known(node):
                unknown(node)
    n = len(index)
    ki, kj, kv = [], [], []  # nodal matrix K
    bi, bj, bv = [], [], []  # B: injection from inputs, K x = B v
    for a, b, g in elements:
        for p, q in ((a, b), (b, a)):
            if is_known(p):
                continue
            ip = index[p]
            ki.append(ip)
            kj.append(ip)
            kv.append(g)
            if is_known(q):
                if q[0] == "in":
                    bi.append(ip)
                    bj.append(q[1])
                    bv.append(g)
            else:
                ki.append(ip)
                kj.append(index[q])
                kv.append(-g)
    k_mat = sp.csc_matrix((kv, (ki, kj)), shape=(n, n))
    b_mat = sp.csr_matrix((bv, (bi, bj)), shape=(n, rows)).toarray()
    x = spla.splu(k_mat).solve(b_mat) if n else np.zeros((0, rows))  # [n, rows]: node volts per unit input

    def voltage_rows(node: tuple) -> np.ndarray:
        """Node voltage as a linear function of the inputs: [rows] coefficients."""
        if node[0] == "gnd":
            return np.zeros(rows)
        if node[0] == "in":
            e = np.zeros(rows)
            e[node[1]] = 1.0
            return e
        return x[index[node]]

    t = np.zeros((rows, cols))
    for c in range(cols):
        if spec.r_sense_ohm > 0:
            t[:, c] = voltage_rows(sense_in(c)) / spec.r_sense_ohm
        else:  # virtual ground: sum the currents of every element that ends on it
            for node, g in into_sense[c]:
                t[:, c] += g * voltage_rows(node)
    return t


def column_currents(spec: CircuitSpec, g_s: np.ndarray, v_v: np.ndarray) -> np.ndarray:
    """Column currents [n_vectors, cols] (A) for input vectors ``v_v`` [n_vectors, rows] (V)."""
    return np.atleast_2d(v_v) @ transfer_matrix(spec, g_s)
