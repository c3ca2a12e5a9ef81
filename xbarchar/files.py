"""Writing results safely: every output appears whole or not at all, and never replaces an input.

Each writer builds the complete file in memory, then :func:`atomic_write_bytes` writes it to a
temporary file beside the target, flushes it to disk and renames it onto the target. The temporary
file has an unpredictable name (``.{stem}.{random}.tmp{suffix}``) and is created exclusively
(``O_CREAT | O_EXCL | O_NOFOLLOW``): a file or link placed beforehand is never opened, followed or
truncated. The rename replaces whatever sits at the target, a symbolic link included, without
writing through it. A failure (a full disk, a missing permission) removes the temporary file,
leaves whatever the target held before untouched and becomes one :class:`OutputError` naming the
path.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO


class OutputError(RuntimeError):
    """An output file could not be written (full disk, no permission); nothing was left behind."""


class OutputPathError(ValueError):
    """An output path would replace one of the command's inputs (or another of its outputs)."""


TEMPORARY_NAME_ATTEMPTS = 100
"""Random temporary names tried before giving up (each one is 64 random bits)."""

_EXCLUSIVE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                    | getattr(os, "O_CLOEXEC", 0))


def open_temporary(path: str | Path) -> tuple[int, Path]:
    """A new, empty file beside ``path``: (its descriptor open for writing, its path).

    The name is ``.{stem}.{16 random hex digits}.tmp{suffix}`` (the suffix is kept, so a writer
    that picks its format from the name still can); it is created with ``O_CREAT | O_EXCL |
    O_NOFOLLOW`` and mode 0o666 less the umask, so nothing placed there beforehand (a file, a
    symbolic link) is ever opened. The folder must exist.
    """
    path = Path(path)
    for _ in range(TEMPORARY_NAME_ATTEMPTS):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(8)}.tmp{path.suffix}")
        try:
            return os.open(tmp, _EXCLUSIVE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no unused temporary name after {TEMPORARY_NAME_ATTEMPTS} tries",
                          str(path.parent))


def reserve_temporary(path: str | Path) -> Path:
    """:func:`open_temporary`, closed at once: the path of a new empty file beside ``path`` for a
    writer that only takes a file name (the caller renames it onto ``path`` or removes it)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = open_temporary(path)
    os.close(fd)
    return tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = open_temporary(path)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        reason = exc.strerror or str(exc)
        raise OutputError(f"{path}: cannot write ({reason}); nothing was written there") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | Path, writer: Callable[[BinaryIO], object]) -> None:
    """``writer(buffer)`` fills an in-memory buffer (torch.save, np.savez, savefig ...), then it is
    written atomically to ``path``."""
    buffer = io.BytesIO()
    writer(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _remove_quietly(path: Path | None) -> None:
    if path is None:
        return
    try:
        path.unlink(missing_ok=True)
    except OSError:  # pragma: no cover - nothing more can be done
        pass


def _identity(path: Path) -> Path | tuple[int, int]:
    """(device, inode) of an existing file (every name of one file, hard links included), else the
    resolved path."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return path.resolve()
    return (st.st_dev, st.st_ino)


def refuse_overwriting_inputs(outputs: Mapping[str, str | Path | None],
                              inputs: Mapping[str, str | Path | Sequence[str | Path] | None]) -> None:
    """Raise :class:`OutputPathError` when an output names the same file as an input or another output.

    ``outputs`` and ``inputs`` map a flag (for the message) to a path, or to a list of paths;
    empty entries are skipped. An existing file is compared by its device and inode, so ``./a.h5``,
    ``dir/../a.h5``, a symlink to ``a.h5`` and a hard link to it are the same file; a path that does
    not exist yet, after resolving links.
    """
    def resolved(value) -> list[tuple[Path | tuple[int, int], str]]:
        values = value if isinstance(value, (list, tuple)) else [value]
        return [(_identity(Path(v)), str(v)) for v in values if v]

    seen: dict[Path | tuple[int, int], str] = {}
    for flag, value in inputs.items():
        for real, text in resolved(value):
            seen.setdefault(real, f"input {flag} {text}")
    for flag, value in outputs.items():
        for real, text in resolved(value):
            if real in seen:
                raise OutputPathError(f"{flag} {text}: is the same file as the {seen[real]}; "
                                      "choose another output path (the command never replaces its inputs)")
            seen[real] = f"output {flag} {text}"


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
