"""HDF5 files of SPICE datasets: self-describing, units on every dataset, written atomically.

Layout (format_version 1)::

    /g_s               float64 [n_g, rows, cols]   S     conductance matrices
    /g_id              int64   [n_g]               1     index of each matrix in the sampler's stream
    /solver            bytes   [n_g]               -     'superposition' or 'sweep'
    /transfer_a_per_v  float64 [n_g, rows, cols]   A/V   exact transfer matrix (NaN when not linear)
    /g_index           int64   [n_samples]         1     matrix of each sample (row of /g_s)
    /v_v               float64 [n_samples, rows]   V     row input voltages
    /i_a               float64 [n_samples, cols]   A     column currents from ngspice (NaN if failed)
    /i_ideal_a         float64 [n_samples, cols]   A     ideal currents v @ g
    /failed            bool    [n_samples]         1     sample did not converge (never fabricated)

Root attributes: format_version, kind, circuit_spec (json), netlist_sha256, ngspice_version,
ngspice_klu, ngspice_options, pyspice_version, package_version, seed, sampling (json), sign_convention, created.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spice.circuit import FORMAT_NOTE, CircuitSpec

FORMAT_VERSION = 1
KIND = "xbarchar.spice"

UNITS = {
    "g_s": "S",
    "g_id": "1",
    "solver": "",
    "transfer_a_per_v": "A/V",
    "g_index": "1",
    "v_v": "V",
    "i_a": "A",
    "i_ideal_a": "A",
    "failed": "1",
}


class DatasetFileError(ValueError):
    """An HDF5 file is missing, corrupt, of another kind or of an unknown format version."""


@dataclass
class SpiceDataset:
    """A SPICE dataset in memory."""

    spec: CircuitSpec
    g_s: np.ndarray
    g_id: np.ndarray
    solver: np.ndarray
    transfer_a_per_v: np.ndarray
    g_index: np.ndarray
    v_v: np.ndarray
    i_a: np.ndarray
    i_ideal_a: np.ndarray
    failed: np.ndarray
    attrs: dict[str, Any]

    @property
    def n_samples(self) -> int:
        return len(self.v_v)


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("xbarchar")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


def atomic_h5(path: str | Path):
    """Context manager: an h5py.File at a temporary name, renamed onto ``path`` only on success."""
    return _AtomicH5(Path(path))


class _AtomicH5:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")

    def __enter__(self) -> h5py.File:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.tmp, "w")
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        self.file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_dataset(path: str | Path, spec: CircuitSpec, arrays: dict[str, np.ndarray],
                  attrs: dict[str, Any]) -> None:
    """Write a SPICE dataset atomically. ``arrays`` holds every key of :data:`UNITS`."""
    missing = set(UNITS) - set(arrays)
    if missing:
        raise ValueError(f"write_dataset: missing arrays {sorted(missing)}")
    with atomic_h5(path) as f:
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["kind"] = KIND
        f.attrs["circuit_spec"] = spec.to_json()
        f.attrs["netlist_sha256"] = spec.netlist_sha256
        f.attrs["sign_convention"] = FORMAT_NOTE
        f.attrs["package_version"] = package_version()
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for key, value in attrs.items():
            f.attrs[key] = value
        for key, unit in UNITS.items():
            data = np.asarray(arrays[key])
            opts = {"compression": "gzip", "compression_opts": 4} if data.size > 4096 else {}
            ds = f.create_dataset(key, data=data, **opts)
            ds.attrs["units"] = unit


def open_checked(path: str | Path, kind: str, format_version: int) -> h5py.File:
    """Open an xbarchar HDF5 file for reading, with one clear error for every way it can be wrong."""
    p = Path(path)
    if not p.is_file():
        raise DatasetFileError(f"{p}: file does not exist")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise DatasetFileError(f"{p}: not a readable HDF5 file ({exc})") from exc
    found_kind = _plain(f.attrs.get("kind"))
    if found_kind != kind:
        f.close()
        raise DatasetFileError(f"{p}: expected an HDF5 file of kind '{kind}', found kind {found_kind!r}")
    version = _plain(f.attrs.get("format_version"))
    if version != format_version:
        f.close()
        raise DatasetFileError(
            f"{p}: format_version {version!r} is not supported (this xbarchar reads {format_version})"
        )
    return f


def _plain(value: Any) -> Any:
    """HDF5 attribute as a plain Python value (for messages and comparisons)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_dataset(path: str | Path) -> SpiceDataset:
    """Read a SPICE dataset; raises :class:`DatasetFileError` naming the file when it is unusable."""
    with open_checked(path, KIND, FORMAT_VERSION) as f:
        try:
            arrays = {key: f[key][()] for key in UNITS}
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            spec = CircuitSpec.from_json(attrs["circuit_spec"])
        except (KeyError, OSError, ValueError, TypeError) as exc:
            raise DatasetFileError(f"{path}: corrupt or incomplete SPICE dataset ({exc})") from exc
    n = len(arrays["v_v"])
    for key in ("g_index", "i_a", "i_ideal_a", "failed"):
        if len(arrays[key]) != n:
            raise DatasetFileError(f"{path}: /{key} has {len(arrays[key])} rows, /v_v has {n}")
    return SpiceDataset(spec=spec, attrs=attrs, **arrays)


def merge_shards(paths: list[str | Path], out: str | Path) -> SpiceDataset:
    """Concatenate shard files (same circuit and sampler) into one dataset file, atomically."""
    parts = [read_dataset(p) for p in paths]
    if not parts:
        raise ValueError("merge_shards: no shard files given")
    first = parts[0]
    for p, part in zip(paths, parts, strict=True):
        for key in ("circuit_spec", "sampling", "seed"):
            if part.attrs.get(key) != first.attrs.get(key):
                raise DatasetFileError(f"{p}: attribute '{key}' differs from {paths[0]}; shards do not belong together")
    offsets = np.cumsum([0] + [len(p.g_s) for p in parts[:-1]])
    arrays = {
        "g_s": np.concatenate([p.g_s for p in parts]),
        "g_id": np.concatenate([p.g_id for p in parts]),
        "solver": np.concatenate([p.solver for p in parts]),
        "transfer_a_per_v": np.concatenate([p.transfer_a_per_v for p in parts]),
        "g_index": np.concatenate([p.g_index + o for p, o in zip(parts, offsets, strict=True)]),
        "v_v": np.concatenate([p.v_v for p in parts]),
        "i_a": np.concatenate([p.i_a for p in parts]),
        "i_ideal_a": np.concatenate([p.i_ideal_a for p in parts]),
        "failed": np.concatenate([p.failed for p in parts]),
    }
    keep = {k: v for k, v in first.attrs.items()
            if k not in ("format_version", "kind", "circuit_spec", "netlist_sha256", "sign_convention",
                         "package_version", "created", "shard")}
    keep["n_shards_merged"] = len(parts)
    write_dataset(out, first.spec, arrays, keep)
    return read_dataset(out)


def summary(path: str | Path) -> str:
    """Human-readable provenance and statistics of a SPICE dataset (the ``inspect`` CLI)."""
    ds = read_dataset(path)
    ok = ~ds.failed
    rel = np.abs(ds.i_a[ok] - ds.i_ideal_a[ok])
    fs = ds.spec.g_on_s * ds.spec.v_read_max_v * ds.spec.rows
    spec = json.loads(ds.attrs["circuit_spec"])
    spec.pop("netlist_text", None)
    lines = [f"{path}", "provenance:"]
    for key in ("format_version", "created", "package_version", "ngspice_version", "ngspice_klu",
                "ngspice_options", "pyspice_version", "netlist_sha256", "seed", "sampling", "sign_convention"):
        lines.append(f"  {key}: {ds.attrs.get(key)}")
    lines.append(f"circuit: {json.dumps(spec, sort_keys=True)}")
    solvers = {s.decode() if isinstance(s, bytes) else s for s in ds.solver}
    lines += [
        "contents:",
        f"  conductance matrices: {len(ds.g_s)}  samples: {ds.n_samples}  failed: {int(ds.failed.sum())}",
        f"  solvers used: {sorted(solvers)}",
        f"  g_s  [S]: min {ds.g_s.min():.3e}  max {ds.g_s.max():.3e}",
        f"  v_v  [V]: min {ds.v_v.min():.3e}  max {ds.v_v.max():.3e}",
        f"  i_a  [A]: min {np.nanmin(ds.i_a):.3e}  max {np.nanmax(ds.i_a):.3e}",
        f"  i/i_ideal (mean over samples): {np.nanmean(ds.i_a[ok].sum(1) / ds.i_ideal_a[ok].sum(1)):.4f}",
        f"  |i - i_ideal| / full scale: mean {rel.mean() / fs:.3e}  max {rel.max() / fs:.3e}"
        f"  (full scale = g_on*v_max*rows = {fs:.3e} A)",
    ]
    return "\n".join(lines)
