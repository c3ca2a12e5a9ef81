"""Tile bank: conductance tiles and row voltages of a trained DNN on a circuit (``.npz``).

Written by ``python -m dnn export-tiles`` and read by the SPICE stage's ``from_file`` sampler, so
the samples follow the distribution the DNN puts on the array. numpy only (no torch).

Layout (format_version 1): ``g_s`` [n_tiles, rows, cols] float64 S, ``v_v`` [n_vectors, rows]
float64 V, and 0-d string arrays ``kind`` ('xbarchar.tilebank'), ``format_version``, ``units_g_s``
('S'), ``units_v_v`` ('V'). Files written before the header existed (only ``g_s`` and ``v_v``) are
read as version 0, in the same units.

Reading is bounded: before any array is unpacked, every member of the zip is checked from its
declared size and its ``.npy`` header (shape x itemsize); a bank above :data:`TILE_BANK_MAX_BYTES`
(256 MiB, raised with the environment variable ``XBARCHAR_TILE_BANK_MAX_BYTES``) or holding an
object dtype is refused, and arrays are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from spice.circuit import CircuitError
from xbarchar.files import atomic_write_bytes

KIND = "xbarchar.tilebank"
FORMAT_VERSION = 1
UNITS = {"g_s": "S", "v_v": "V"}
TILE_BANK_MAX_BYTES = 256 * 2**20
"""tile_bank_max_bytes: the most bytes the arrays of a tile bank may unpack to (all members together);
the environment variable ``XBARCHAR_TILE_BANK_MAX_BYTES`` raises or lowers it."""
MAX_BYTES_ENV = "XBARCHAR_TILE_BANK_MAX_BYTES"


def save_tile_bank(path: str | Path, g_s: np.ndarray, v_v: np.ndarray) -> None:
    """Write a tile bank atomically (see the module docstring)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, g_s=np.asarray(g_s, dtype=np.float64), v_v=np.asarray(v_v, dtype=np.float64),
                        kind=np.array(KIND), format_version=np.array(str(FORMAT_VERSION)),
                        **{f"units_{k}": np.array(u) for k, u in UNITS.items()})
    atomic_write_bytes(path, buffer.getvalue())


def tile_bank_max_bytes() -> int:
    """:data:`TILE_BANK_MAX_BYTES`, or the environment variable ``XBARCHAR_TILE_BANK_MAX_BYTES`` when set."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return TILE_BANK_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise CircuitError(f"{MAX_BYTES_ENV}={text!r}: expected a whole number of bytes >= 1")
    return value


def _size(n_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


def check_npz_sizes(path: Path, max_bytes: int, where: str) -> None:
    """Refuse an ``.npz`` whose arrays would unpack to more than ``max_bytes`` (or hold objects),
    judged from the zip's declared sizes and each ``.npy`` header before any array is read."""
    def too_big(what: str, n_bytes: int) -> CircuitError:
        return CircuitError(f"{where}: {what} would unpack to {_size(n_bytes)}, above the limit of "
                            f"{_size(max_bytes)} (tile_bank_max_bytes; set {MAX_BYTES_ENV} to raise it); "
                            "expected a tile bank written by python -m dnn export-tiles")

    declared, from_headers = 0, 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.file_size > max_bytes:
                raise too_big(f"array {name!r}", info.file_size)
            declared += info.file_size
            if declared > max_bytes:
                raise too_big("its arrays together", declared)
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version in ((2, 0), (3, 0)):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"member {info.filename!r}: .npy format version {version} is not supported")
            if dtype.hasobject:
                raise CircuitError(f"{where}: array {name!r} has the object dtype {dtype}; a tile bank holds "
                                   "numbers and strings only (objects are never unpickled)")
            n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if n_bytes > max_bytes:
                raise too_big(f"array {name!r}", n_bytes)
            from_headers += n_bytes
            if from_headers > max_bytes:
                raise too_big("its arrays together", from_headers)


def load_tile_bank(path: str | Path, rows: int, cols: int,
                   max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(g_s [n, rows, cols] S, v_v [m, rows] V), checked; every problem is a :class:`CircuitError`
    naming the file (the key is ``sampling.source_file``). ``max_bytes`` defaults to
    :func:`tile_bank_max_bytes`; it is checked before anything is unpacked."""
    p = Path(path)
    where = f"sampling.source_file {p}"
    if not p.is_file():
        raise CircuitError(f"sampling.source_file: {p} does not exist; expected a tile bank .npz "
                           "(python -m dnn export-tiles)")
    try:
        check_npz_sizes(p, tile_bank_max_bytes() if max_bytes is None else max_bytes, where)
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, CircuitError):
            raise
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
