"""Circuit presets that cite their source. A config entry names one with ``preset:`` and may override keys.

Paper 1 = Bhattacharjee et al. 2023, "Examining the Role and Limits of Batchnorm Optimization to
Mitigate Diverse Hardware-noise in In-memory Computing" (arXiv 2305.18416): RRAM R_on ~ 20 kOhm,
ON/OFF ratio 10, R_driver 1 kOhm, R_wire 5-10 Ohm per segment, R_sense 1 kOhm, 64x64 and 128x128.
GENIEx = Chakraborty et al., DAC 2020: R_on 100 kOhm, ON/OFF 6, arrays 16/32/64.
The read voltage (0.2 V max) is a typical RRAM read level, not taken from either paper.

A preset's circuit file is the copy that ships in the package (:mod:`spice.resources`), so presets work
from any working directory and from an installed wheel.
"""

from __future__ import annotations

from typing import Any

from spice.resources import circuit_path

_RESISTIVE = str(circuit_path("resistive.cir"))
_PAPER1 = {
    "netlist": _RESISTIVE,
    "r_driver_ohm": 1000.0,
    "r_sense_ohm": 1000.0,
    "g_on_s": 1.0 / 20e3,  # R_on = 20 kOhm
    "g_off_s": 1.0 / 200e3,  # ON/OFF = 10
    "v_read_max_v": 0.2,
}
_GENIEX = {
    "netlist": _RESISTIVE,
    "r_driver_ohm": 1000.0,
    "r_sense_ohm": 1000.0,
    "r_wire_row_ohm": 5.0,
    "r_wire_col_ohm": 5.0,
    "g_on_s": 1.0 / 100e3,  # R_on = 100 kOhm
    "g_off_s": 1.0 / 600e3,  # ON/OFF = 6
    "v_read_max_v": 0.25,
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper1_32_w5": {**_PAPER1, "rows": 32, "cols": 32, "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0},  # size sweep
    "paper1_64_w5": {**_PAPER1, "rows": 64, "cols": 64, "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0},
    "paper1_64_w10": {**_PAPER1, "rows": 64, "cols": 64, "r_wire_row_ohm": 10.0, "r_wire_col_ohm": 10.0},
    "paper1_128_w5": {**_PAPER1, "rows": 128, "cols": 128, "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0},
    "paper1_128_w10": {**_PAPER1, "rows": 128, "cols": 128, "r_wire_row_ohm": 10.0, "r_wire_col_ohm": 10.0},
    "geniex_16": {**_GENIEX, "rows": 16, "cols": 16},
    "geniex_32": {**_GENIEX, "rows": 32, "cols": 32},
    "geniex_64": {**_GENIEX, "rows": 64, "cols": 64},
}
