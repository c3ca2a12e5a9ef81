"""The integrity record of an HDF5 file: one SHA-256 over everything a result depends on.

:func:`content_sha256` digests, in a canonical order (object paths sorted, attributes sorted by
name), every group and dataset path, every attribute's name, type, shape and value, and every
dataset's dtype, shape and bytes (its ``units`` and other attributes included). The root attribute
:data:`HASH_ATTR` holds the digest and is the one thing left out of it. HDF5's own Fletcher32
checksums cover dataset chunks only; this record also covers attributes (provenance, circuit
description, units), and a dataset rewritten with a fresh Fletcher32 no longer matches it.

:func:`seal` stamps a file being written; :func:`verify` recomputes the digest of a file being read
and raises :class:`IntegrityError` naming the file when it differs or is absent.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import h5py
import numpy as np

HASH_ATTR = "content_sha256"
"""Root attribute that holds the hex digest of :func:`content_sha256`."""
BLOCK_BYTES = 1 << 24
"""Datasets are hashed in row blocks of about this many bytes (bounded memory)."""


class IntegrityError(ValueError):
    """A file's integrity record is absent or does not match its content."""


def _field(digest: Any, data: bytes) -> None:
    """Length-prefixed, so no two different sequences of fields give the same byte stream."""
    digest.update(struct.pack("<Q", len(data)))
    digest.update(data)


def _value(digest: Any, value: Any) -> None:
    """An attribute value with its type: str and bytes apart, arrays with dtype and shape."""
    if isinstance(value, str):
        _field(digest, b"str")
        _field(digest, value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes):
        _field(digest, b"bytes")
        _field(digest, value)
    else:
        array = np.asarray(value)
        if array.dtype.kind == "O":
            _field(digest, b"object" + repr(array.shape).encode())
            for item in array.ravel():
                _value(digest, item)
        else:
            _array_header(digest, array.dtype, array.shape)
            _field(digest, np.ascontiguousarray(array).tobytes())


def _array_header(digest: Any, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    _field(digest, b"array")
    _field(digest, dtype.str.encode() + repr(dtype.descr).encode())
    _field(digest, repr(tuple(int(n) for n in shape)).encode())


def _attrs(digest: Any, obj: h5py.HLObject, skip: frozenset[str]) -> None:
    names = sorted(k for k in obj.attrs.keys() if k not in skip)
    _field(digest, str(len(names)).encode())
    for name in names:
        _field(digest, name.encode())
        _value(digest, obj.attrs[name])


def _dataset(digest: Any, ds: h5py.Dataset) -> None:
    try:
        _dataset_bytes(digest, ds)
    except OSError as exc:
        raise IntegrityError(f"dataset {ds.name} is corrupt (its checksum does not match: {exc}); the file was "
                             "changed after it was written, regenerate it") from exc


def _dataset_bytes(digest: Any, ds: h5py.Dataset) -> None:
    _array_header(digest, ds.dtype, ds.shape)
    if ds.dtype.kind == "O":
        _value(digest, ds[()])
        return
    if ds.shape == () or ds.size == 0:
        _field(digest, np.ascontiguousarray(ds[()]).tobytes())
        return
    row_bytes = max(1, ds.dtype.itemsize * (ds.size // ds.shape[0]))
    step = max(1, BLOCK_BYTES // row_bytes)
    _field(digest, struct.pack("<Q", ds.size * ds.dtype.itemsize))
    for start in range(0, ds.shape[0], step):
        digest.update(np.ascontiguousarray(ds[start:start + step]).tobytes())


def content_sha256(f: h5py.File) -> str:
    """Hex SHA-256 over every object, attribute and dataset byte of ``f`` except :data:`HASH_ATTR`.

    Reading the datasets also runs their Fletcher32 checks: a corrupt chunk is an :class:`IntegrityError`
    naming the dataset.
    """
    digest = hashlib.sha256()
    _field(digest, b"xbarchar content v1")
    _attrs(digest, f, frozenset({HASH_ATTR}))
    names: list[str] = []
    f.visit(names.append)
    for name in sorted(names):
        obj = f[name]
        _field(digest, name.encode())
        if isinstance(obj, h5py.Dataset):
            _field(digest, b"dataset")
            _dataset(digest, obj)
        else:
            _field(digest, b"group")
        _attrs(digest, obj, frozenset())
    return digest.hexdigest()


def seal(f: h5py.File) -> str:
    """Stamp ``f`` (open for writing, every other object and attribute in place) with its digest."""
    if HASH_ATTR in f.attrs:
        del f.attrs[HASH_ATTR]
    value = content_sha256(f)
    f.attrs[HASH_ATTR] = value
    return value


def verify(f: h5py.File, path: str | Path) -> str:
    """The file's digest when it matches its record; else one :class:`IntegrityError` naming ``path``."""
    stored = f.attrs.get(HASH_ATTR)
    if isinstance(stored, bytes):
        stored = stored.decode("utf-8", "replace")
    if not isinstance(stored, str) or not stored:
        raise IntegrityError(f"{path}: no integrity record (root attribute '{HASH_ATTR}'); the file was not "
                             "written by this xbarchar or was changed after it was written; regenerate it")
    try:
        actual = content_sha256(f)
    except IntegrityError as exc:
        raise IntegrityError(f"{path}: {exc}") from exc
    if actual != stored:
        raise IntegrityError(f"{path}: content hash mismatch: the file was changed after it was written "
                             f"(stored {HASH_ATTR} {stored[:16]}..., content gives {actual[:16]}...); "
                             "regenerate it")
    return actual
