"""Tile bank: conductance tiles and row voltages of a trained DNN on a circuit (``.npz``).

Written by ``python -m dnn export-tiles`` and read by the SPICE stage's ``from_file`` sampler, so
the samples follow the distribution the DNN puts on the array. numpy only (no torch).

Layout (format_version 1): ``g_s`` [n_tiles, rows, cols] float64 S, ``v_v`` [n_vectors, rows]
float64 V, and 0-d string arrays ``kind`` ('xbarchar.tilebank'), ``format_version``, ``units_g_s``
('S'), ``units_v_v`` ('V'). Files written before the header existed (only ``g_s`` and ``v_v``) are
read as version 0, in the same units. Loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from spice.circuit import CircuitError
from xbarchar.files import atomic_write_bytes

KIND = "xbarchar.tilebank"
FORMAT_VERSION = 1
UNITS = {"g_s": "S", "v_v": "V"}


def save_tile_bank(path: str | Path, g_s: np.ndarray, v_v: np.ndarray) -> None:
    """Write a tile bank atomically (see the module docstring)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, g_s=np.asarray(g_s, dtype=np.float64), v_v=np.asarray(v_v, dtype=np.float64),
                        kind=np.array(KIND), format_version=np.array(str(FORMAT_VERSION)),
                        **{f"units_{k}": np.array(u) for k, u in UNITS.items()})
    atomic_write_bytes(path, buffer.getvalue())


def load_tile_bank(path: str | Path, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(g_s [n, rows, cols] S, v_v [m, rows] V), checked; every problem is a :class:`CircuitError`
    naming the file (the key is ``sampling.source_file``)."""
    p = Path(path)
    where = f"sampling.source_file {p}"
    if not p.is_file():
        raise CircuitError(f"sampling.source_file: {p} does not exist; expected a tile bank .npz "
                           "(python -m dnn export-tiles)")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CircuitError(f"{where}: not a readable .npz tile bank ({exc})") from None
    if "kind" in arrays:
        if str(arrays["kind"]) != KIND or str(arrays.get("format_version")) != str(FORMAT_VERSION):
            raise CircuitError(f"{where}: kind {str(arrays['kind'])!r} version {str(arrays.get('format_version'))!r}; "
                               f"this xbarchar reads {KIND!r} version {FORMAT_VERSION}")
        for key, unit in UNITS.items():
            if str(arrays.get(f"units_{key}")) != unit:
                raise CircuitError(f"{where}: {key} is in {str(arrays.get(f'units_{key}'))!r}, expected {unit!r}")
    if "g_s" not in arrays or "v_v" not in arrays:
        raise CircuitError(f"{where}: expected arrays 'g_s' and 'v_v', has {sorted(arrays)}")
    g_s, v_v = arrays["g_s"], arrays["v_v"]
    if g_s.ndim != 3 or g_s.shape[1:] != (rows, cols) or v_v.ndim != 2 or v_v.shape[1] != rows:
        raise CircuitError(f"{where}: g_s {g_s.shape} / v_v {v_v.shape} do not fit a {rows}x{cols} array "
                           f"(expected [n, {rows}, {cols}] and [m, {rows}])")
    if not (np.all(np.isfinite(g_s)) and np.all(np.isfinite(v_v))) or len(g_s) == 0 or len(v_v) == 0:
        raise CircuitError(f"{where}: empty, or holds non-finite numbers")
    return g_s.astype(np.float64), v_v.astype(np.float64)
