"""Swap the crossbar circuit: the same array read through different cells, with real ngspice.

A circuit is an array xbarchar builds (rows x cols, driver, wires, sense) plus a circuit file with
the swappable ``cell`` (and optionally ``driver``/``sense``) subcircuits. This example reads one
conductance matrix and a few input vectors through three shipped circuit files and one written
here (a resistive cell with a series contact resistance), all at 8x8 with the Paper-1 peripherals,
and prints each circuit's column currents relative to the ideal v.G. It also shows that a circuit
file that tries to include another file is refused before ngspice sees it. Runs in seconds:

    python examples/03_swap_a_circuit.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from spice import CircuitError, spec_from_config
from spice.ngspice import check_circuit, solve

REPO = Path(__file__).resolve().parents[1]
PERIPHERALS = {"rows": 8, "cols": 8, "r_driver_ohm": 1000.0, "r_sense_ohm": 1000.0,
               "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "v_read_max_v": 0.5}

MY_CELL = """\
* Resistive cell with a 2 kOhm series contact resistance (a circuit file of your own).
.subckt cell row col params: g=1e-5
R1 row mid {1/g}
Rc mid col 2k
.ends cell
"""

BAD_CELL = """\
.include /etc/passwd
.subckt cell row col params: g=1e-5
R1 row col {1/g}
.ends cell
"""


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        mine = Path(tmp) / "contact_resistance.cir"
        mine.write_text(MY_CELL)
        bad = Path(tmp) / "includes_a_file.cir"
        bad.write_text(BAD_CELL)
        circuits = {
            "resistive": REPO / "data/circuits/resistive.cir",
            "memristor_sinh": REPO / "data/circuits/memristor_sinh.cir",
            "one_s_one_r": REPO / "data/circuits/one_s_one_r.cir",
            "contact_resistance": mine,
        }
        g_s = v_v = None
        for name, path in circuits.items():
            spec = spec_from_config(name, {**PERIPHERALS, "netlist": str(path)})
            if g_s is None:  # one matrix and four input vectors, shared by every circuit
                g_s = rng.uniform(spec.g_off_s, spec.g_on_s, size=(spec.rows, spec.cols))
                v_v = rng.uniform(0.0, spec.v_read_max_v, size=(4, spec.rows))
            check = check_circuit(spec)  # a 2x2 copy through ngspice, and the cell's current envelope
            i_a, failed = solve(spec, g_s, v_v)
            ratio = i_a.sum() / (v_v @ g_s).sum()
            print(f"{name}: column current / ideal = {ratio:.3f} "
                  f"(failed vectors {int(failed.sum())}, cell current bound {check.cell_current_max_a:.2e} A)")
        try:
            spec_from_config("bad", {**PERIPHERALS, "netlist": str(bad)})
        except CircuitError as err:
            print(f"refused: {err}")


if __name__ == "__main__":
    main()
