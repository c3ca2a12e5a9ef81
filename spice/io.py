"""HDF5 files of SPICE datasets: self-describing, units on every dataset, sealed, written atomically.

Layout (format_version 4)::

    /g_s               float64 [n_g, rows, cols]   S     conductance matrices
    /g_id              int64   [n_g]               1     index of each matrix in the sampler's stream
    /solver            bytes   [n_g]               -     'superposition' or 'sweep'
    /transfer_a_per_v  float64 [n_g, rows, cols]   A/V   exact transfer matrix (NaN when not linear)
    /g_index           int64   [n_samples]         1     matrix of each sample (row of /g_s)
    /v_v               float64 [n_samples, rows]   V     row input voltages
    /i_a               float64 [n_samples, cols]   A     column currents from ngspice (NaN if failed)
    /i_ideal_a         float64 [n_samples, cols]   A     ideal currents v @ g
    /p_w               float64 [n_samples]         W     power drawn from the row sources (NaN if failed)
    /p_parts_w         float64 [n_samples, 5]      W     its dissipation per part; attribute ``parts`` names
                                                         them (cells, row_wires, col_wires, driver, sense)
    /failed            bool    [n_samples]         1     sample is not valid (never fabricated)
    /failure_reason    bytes   [n_samples]         -     why (no convergence, implausible currents); b""

Root attributes: format_version, kind, circuit_spec (json), netlist_sha256, ngspice_version,
ngspice_klu, ngspice_options, pyspice_version, package_version, seed, sampling (json), shard,
sign_convention, power_cells_from (how the cells' power was found, :mod:`spice.power`), created,
content_sha256. Energy per read = ``/p_w`` x the circuit's ``t_read_s`` (in ``circuit_spec``).

Integrity: every non-empty dataset carries HDF5's Fletcher32 checksum, and the root attribute
``content_sha256`` (:mod:`xbarchar.integrity`) covers every dataset's bytes, dtype, shape and units and
every attribute, provenance included. Every read recomputes it: a changed byte anywhere is one
:class:`DatasetFileError` naming the file, never a silently different number. Files of format_version
1 and 2 predate that record and are refused with a message saying so; files of format_version 3 predate
the read power (``/p_w``) and are refused: regenerate them. A read also checks the file's
meaning: units, dtypes and shapes of every dataset against the stored circuit, ``/g_index`` within
``/g_s``, ``/g_id`` unique.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spice.circuit import FORMAT_NOTE, CircuitSpec
from spice.nodal import POWER_PARTS
from xbarchar.files import atomic_write_bytes
from xbarchar.integrity import HASH_ATTR, IntegrityError, seal, verify

FORMAT_VERSION = 4
READABLE_VERSIONS = (4,)
KIND = "xbarchar.spice"
FIRST_SEALED = {KIND: 3, "xbarchar.surrogate": 2}
"""The first format version of each kind that carries the integrity record (older files are refused as such)."""

UNITS = {
    "g_s": "S",
    "g_id": "1",
    "solver": "",
    "transfer_a_per_v": "A/V",
    "g_index": "1",
    "v_v": "V",
    "i_a": "A",
    "i_ideal_a": "A",
    "p_w": "W",
    "p_parts_w": "W",
    "failed": "1",
    "failure_reason": "",
}
FLOAT_KEYS = ("g_s", "transfer_a_per_v", "v_v", "i_a", "i_ideal_a", "p_w", "p_parts_w")
INT_KEYS = ("g_id", "g_index")
SOLVERS = (b"superposition", b"sweep")
MERGE_MAY_DIFFER = ("shard", "created", HASH_ATTR)
"""Root attributes that may differ between shards merged into one dataset (all others must agree)."""


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
    p_w: np.ndarray
    p_parts_w: np.ndarray
    failed: np.ndarray
    failure_reason: np.ndarray
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
    """Context manager: an h5py.File built in memory, written to ``path`` atomically on success.

    Nothing touches the disk until the file is complete; then it is sealed with its integrity record
    (:func:`xbarchar.integrity.seal`) and :func:`xbarchar.files.atomic_write_bytes` writes it (a full
    disk: one :class:`xbarchar.files.OutputError`, no temporary file left).
    """
    return _AtomicH5(Path(path))


class _AtomicH5:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> h5py.File:
        self.buffer = io.BytesIO()
        self.file = h5py.File(self.buffer, "w")
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                seal(self.file)
        finally:
            self.file.close()
        if exc_type is None:
            atomic_write_bytes(self.path, self.buffer.getvalue())


def write_array(group: h5py.Group, name: str, data: Any, units: str) -> h5py.Dataset:
    """One dataset with its ``units`` attribute and a Fletcher32 checksum (gzip when large).

    A 0-d array is stored as shape (1,) with attribute ``scalar`` (HDF5 checksums need chunks,
    which a scalar cannot have); :func:`read_array` gives it back as 0-d.
    """
    data = np.asarray(data)
    scalar = data.ndim == 0
    if scalar:
        data = data.reshape(1)
    opts: dict[str, Any] = {}
    if data.size:
        opts = {"fletcher32": True, "chunks": True}
        if data.size > 4096:
            opts.update(compression="gzip", compression_opts=4)
    ds = group.create_dataset(name, data=data, **opts)
    ds.attrs["units"] = units
    if scalar:
        ds.attrs["scalar"] = True
    return ds


def read_array(ds: h5py.Dataset, path: str | Path) -> np.ndarray:
    """A dataset's values; a failed checksum is a :class:`DatasetFileError` naming file and dataset."""
    try:
        data = ds[()]
    except OSError as exc:
        raise DatasetFileError(f"{path}: dataset {ds.name} is corrupt (its checksum does not match: {exc}); "
                               "the file was changed after it was written, regenerate it") from exc
    return np.asarray(data).reshape(()) if ds.attrs.get("scalar", False) else data


def checksum_report(f: h5py.File, path: str | Path) -> str:
    """'fletcher32 on N of M datasets, all verified' (every dataset is read), or why not."""
    datasets: list[h5py.Dataset] = []
    f.visititems(lambda _, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
    checked = [ds for ds in datasets if ds.fletcher32]
    for ds in checked:
        read_array(ds, path)
    unchecked = [ds.name for ds in datasets if not ds.fletcher32 and ds.size]
    text = f"fletcher32 on {len(checked)} of {len(datasets)} datasets, all verified"
    return text + (f"; no checksum on {unchecked}" if unchecked else "")


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
            if key != HASH_ATTR:
                f.attrs[key] = value
        for key, unit in UNITS.items():
            write_array(f, key, arrays[key], unit)
        f["p_parts_w"].attrs["parts"] = ",".join(POWER_PARTS)


def open_checked(path: str | Path, kind: str, format_version: int | Iterable[int]) -> h5py.File:
    """Open an xbarchar HDF5 file for reading, with one clear error for every way it can be wrong.

    Kind and format version are checked first, then the integrity record (``content_sha256``) is
    recomputed over the whole file: a file changed after it was written is never returned.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetFileError(f"{p}: file does not exist")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise DatasetFileError(f"{p}: not a readable HDF5 file ({exc})") from exc
    try:
        found_kind = _plain(f.attrs.get("kind"))
        if found_kind != kind:
            raise DatasetFileError(f"{p}: expected an HDF5 file of kind '{kind}', found kind {found_kind!r}")
        version = _plain(f.attrs.get("format_version"))
        readable = (format_version,) if isinstance(format_version, int) else tuple(format_version)
        if isinstance(version, int) and not isinstance(version, bool) and 0 < version < FIRST_SEALED.get(kind, min(readable)):
            raise DatasetFileError(
                f"{p}: format_version {version} was written before files carried an integrity record "
                f"({HASH_ATTR}); this xbarchar reads {', '.join(map(str, readable))}: regenerate the file")
        if version not in readable:
            raise DatasetFileError(
                f"{p}: format_version {version!r} is not supported (this xbarchar reads "
                f"{', '.join(map(str, readable))}){': regenerate the file' if isinstance(version, int) and version < min(readable) else ''}")
        verify(f, p)
    except IntegrityError as exc:
        f.close()
        raise DatasetFileError(str(exc)) from exc
    except BaseException:
        f.close()
        raise
    return f


def _plain(value: Any) -> Any:
    """HDF5 attribute as a plain Python value (for messages and comparisons)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_dataset(path: str | Path) -> SpiceDataset:
    """Read a SPICE dataset; raises :class:`DatasetFileError` naming the file when it is unusable
    (missing, changed after it was written, or inconsistent: see :func:`check_consistent`)."""
    with open_checked(path, KIND, READABLE_VERSIONS) as f:
        try:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            for key, unit in UNITS.items():
                found = _plain(f[key].attrs.get("units"))
                if found != unit:
                    raise DatasetFileError(f"{path}: /{key} has units {found!r}, expected {unit!r}")
            arrays = {key: read_array(f[key], path) for key in UNITS}
            parts = _plain(f["p_parts_w"].attrs.get("parts"))
            if parts != ",".join(POWER_PARTS):
                raise DatasetFileError(f"{path}: /p_parts_w names its parts {parts!r}, expected "
                                       f"{','.join(POWER_PARTS)!r}")
            spec = CircuitSpec.from_json(attrs["circuit_spec"])
        except DatasetFileError:
            raise
        except (KeyError, OSError, ValueError, TypeError) as exc:
            raise DatasetFileError(f"{path}: corrupt or incomplete SPICE dataset ({exc})") from exc
    check_consistent(path, spec, arrays, attrs)
    return SpiceDataset(spec=spec, attrs=attrs, **arrays)


def check_consistent(path: str | Path, spec: CircuitSpec, arrays: dict[str, np.ndarray],
                     attrs: dict[str, Any]) -> None:
    """One :class:`DatasetFileError` for the first way the arrays contradict each other or the circuit:
    dtypes, shapes against the circuit's rows x cols, ``/g_index`` rows of ``/g_s``, unique ``/g_id``,
    known solver names, the netlist digest."""
    def bad(what: str) -> DatasetFileError:
        return DatasetFileError(f"{path}: {what}; the file is inconsistent, regenerate it with python -m spice")

    kinds = {**{k: "f" for k in FLOAT_KEYS}, **{k: "iu" for k in INT_KEYS}, "failed": "b", "solver": "S",
             "failure_reason": "S"}
    for key, kind in kinds.items():
        if arrays[key].dtype.kind not in kind:
            raise bad(f"/{key} has dtype {arrays[key].dtype}, expected kind {kind!r}")
    if attrs.get("netlist_sha256") != spec.netlist_sha256:
        raise bad("attribute netlist_sha256 does not match the circuit file stored in circuit_spec")
    g = arrays["g_s"]
    if g.ndim != 3 or g.shape[1:] != (spec.rows, spec.cols):
        raise bad(f"the circuit description (circuit_spec) says {spec.rows}x{spec.cols}, /g_s has shape {g.shape}")
    n_g, n = len(g), len(arrays["v_v"])
    shapes = {"transfer_a_per_v": g.shape, "g_id": (n_g,), "solver": (n_g,), "v_v": (n, spec.rows),
              "i_a": (n, spec.cols), "i_ideal_a": (n, spec.cols), "p_w": (n,), "p_parts_w": (n, len(POWER_PARTS)),
              "g_index": (n,), "failed": (n,),
              "failure_reason": (n,)}
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            raise bad(f"/{key} has shape {arrays[key].shape}, the circuit ({spec.rows}x{spec.cols}) and "
                      f"{n_g} matrices, {n} samples need {shape}")
    g_index = arrays["g_index"]
    if n and (g_index.min() < 0 or g_index.max() >= n_g):
        raise bad(f"/g_index holds {int(g_index.min())}..{int(g_index.max())}, expected rows of /g_s in 0..{n_g - 1}")
    g_id = arrays["g_id"]
    if n_g and (g_id.min() < 0 or len(np.unique(g_id)) != n_g):
        raise bad("/g_id must hold distinct non-negative matrix numbers")
    unknown = sorted({bytes(s) for s in arrays["solver"]} - set(SOLVERS))
    if unknown:
        raise bad(f"/solver holds {unknown}, expected one of {list(SOLVERS)}")


def provenance_differences(first: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """Root attributes (all but :data:`MERGE_MAY_DIFFER`) on which two shards disagree, one phrase each."""
    def shown(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    problems = []
    for key in sorted((set(first) | set(other)) - set(MERGE_MAY_DIFFER)):
        a, b = first.get(key), other.get(key)
        if key not in first or key not in other:
            problems.append(f"{key} {'absent' if key not in other else shown(b)} here, "
                            f"{'absent' if key not in first else shown(a)} there")
        elif not np.array_equal(np.asarray(a), np.asarray(b)):
            problems.append(f"{key} {shown(b)} here, {shown(a)} there")
    return problems


def merge_shards(paths: list[str | Path], out: str | Path) -> SpiceDataset:
    """Concatenate shard files into one dataset file, atomically.

    Every shard must carry the same provenance (package, ngspice and PySpice versions, solver options,
    circuit, sampler settings, seed, passive bounds; all but :data:`MERGE_MAY_DIFFER`), else one
    :class:`DatasetFileError` names the shard and every difference. The merged file records that
    common provenance.
    """
    if not paths:
        raise DatasetFileError("merge: no shard files given")
    real = [Path(p).resolve() for p in paths]
    for k, r in enumerate(real):
        if r in real[:k]:
            raise DatasetFileError(f"{paths[k]}: given twice (same file as {paths[real.index(r)]}); "
                                   "each shard may be merged once")
    parts = [read_dataset(p) for p in paths]
    first = parts[0]
    for p, part in zip(paths, parts, strict=True):
        problems = provenance_differences(first.attrs, part.attrs)
        if problems:
            raise DatasetFileError(f"{p}: provenance differs from {paths[0]}: {'; '.join(problems)}; shards made "
                                   "with different settings or software do not belong together, re-simulate them alike")
    owner: dict[int, str] = {}
    for p, part in zip(paths, parts, strict=True):
        for g_id in part.g_id.tolist():
            if g_id in owner:
                raise DatasetFileError(
                    f"{p}: conductance matrix g_id {g_id} is also in {owner[g_id]}; shards must not overlap "
                    "(a matrix in two shards would sit in two of the train/val/test splits)")
            owner[g_id] = str(p)
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
        "p_w": np.concatenate([p.p_w for p in parts]),
        "p_parts_w": np.concatenate([p.p_parts_w for p in parts]),
        "failed": np.concatenate([p.failed for p in parts]),
        "failure_reason": np.concatenate([p.failure_reason for p in parts]).astype("S"),
    }
    keep = {k: v for k, v in first.attrs.items()
            if k not in ("format_version", "kind", "circuit_spec", "netlist_sha256", "sign_convention",
                         *MERGE_MAY_DIFFER)}
    keep["n_shards_merged"] = len(parts)
    write_dataset(out, first.spec, arrays, keep)
    return read_dataset(out)


def summary(path: str | Path) -> str:
    """Human-readable provenance and statistics of a SPICE dataset (the ``inspect`` CLI)."""
    ds = read_dataset(path)
    with open_checked(path, KIND, READABLE_VERSIONS) as f:
        checksums = checksum_report(f, path)
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
    reasons: dict[str, int] = {}
    for reason in ds.failure_reason[ds.failed]:
        key = reason.decode().split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    lines += [
        f"integrity: content hash verified ({HASH_ATTR} {ds.attrs[HASH_ATTR]})",
        f"checksums: {checksums}",
        "contents:",
        f"  conductance matrices: {len(ds.g_s)}  samples: {ds.n_samples}  failed: {int(ds.failed.sum())}"
        + (f" ({', '.join(f'{n} {why}' for why, n in sorted(reasons.items()))})" if reasons else ""),
        f"  solvers used: {sorted(solvers)}",
        f"  g_s  [S]: min {ds.g_s.min():.3e}  max {ds.g_s.max():.3e}",
        f"  v_v  [V]: min {ds.v_v.min():.3e}  max {ds.v_v.max():.3e}",
    ]
    if not ok.any():
        lines.append("  i_a  [A]: no valid sample")
        return "\n".join(lines)
    lines += [
        f"  i_a  [A]: min {ds.i_a[ok].min():.3e}  max {ds.i_a[ok].max():.3e}",
        f"  i/i_ideal (mean over samples): {np.nanmean(ds.i_a[ok].sum(1) / ds.i_ideal_a[ok].sum(1)):.4f}",
        f"  |i - i_ideal| / full scale: mean {rel.mean() / fs:.3e}  max {rel.max() / fs:.3e}"
        f"  (full scale = g_on*v_max*rows = {fs:.3e} A)",
        f"  p_w  [W]: mean {ds.p_w[ok].mean():.3e}  max {ds.p_w[ok].max():.3e}; energy per read at t_read_s = "
        f"{ds.spec.t_read_s:.3g} s: mean {ds.p_w[ok].mean() * ds.spec.t_read_s:.3e} J",
        "  power by part (share of the mean): " + ", ".join(
            f"{name} {share:.3f}" for name, share in zip(POWER_PARTS, ds.p_parts_w[ok].mean(0) / ds.p_w[ok].mean(),
                                                         strict=True)),
    ]
    return "\n".join(lines)
