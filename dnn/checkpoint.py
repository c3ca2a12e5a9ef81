"""Per-seed partial results of one evaluation, so that an interrupted evaluation resumes where it stopped.

An evaluation runs its seeds one after another; each seed's work is seeded on its own (conversion,
calibration subset, method, read-noise draws), so a seed's result does not depend on the seeds run
before it. After every seed ``dnn evaluate`` writes the seeds done so far to ``<out>.partial.json``
(atomically); run again with the same inputs it takes those seeds from that file and runs only the rest.
The file carries a key: the SHA-256 of everything that decides the numbers (the model and surrogate
files' bytes, the crossbar config, the evaluation settings, the tile model, the dataset, the batch sizes,
the device). A file with another key, or one that is not such a file, is ignored with a log line and
replaced. The file is removed once the evaluation's result is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from xbarchar.files import atomic_write_text, file_sha256

logger = logging.getLogger(__name__)

PARTIAL_KIND = "xbarchar.evaluation.partial"
PARTIAL_FORMAT_VERSION = 1
MAX_PARTIAL_BYTES = 64 * 2**20
"""A partial-results file larger than this is not read (ignored and replaced)."""

SeedRecord = dict[str, Any]
"""One seed's results: ``{"runs": {method: run}, "pc2": {method: {layer: value}}}``."""


def partial_path(out: str | Path) -> Path:
    """Where the partial results of the evaluation writing ``out`` live."""
    out = Path(out)
    return out.with_name(out.name + ".partial.json")


def checkpoint_key(files: dict[str, str | Path | None], **inputs: Any) -> str:
    """SHA-256 over the bytes of ``files`` (name -> path; None: absent) and the JSON of ``inputs``."""
    digest = hashlib.sha256()
    for name in sorted(files):
        path = files[name]
        digest.update(f"{name}={file_sha256(path) if path is not None else '-'};".encode())
    digest.update(json.dumps(inputs, sort_keys=True, default=str).encode())
    return digest.hexdigest()


class SeedCheckpoint:
    """The partial results at ``path`` for the evaluation identified by ``key``."""

    def __init__(self, path: str | Path, key: str) -> None:
        self.path, self.key = Path(path), key
        self.seeds: dict[int, SeedRecord] = {}

    def load(self) -> dict[int, SeedRecord]:
        """The seeds done by an earlier run of the same evaluation ({} when none or not usable)."""
        self.seeds = {}
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return {}
        except OSError as e:
            logger.warning("%s: partial results not read (%s); starting from the first seed", self.path, e)
            return {}
        reason = self._unusable(st)
        if reason:
            logger.warning("%s: partial results ignored (%s); starting from the first seed", self.path, reason)
            return {}
        logger.info("%s: resuming, %d seed(s) done: %s", self.path, len(self.seeds), sorted(self.seeds))
        return dict(self.seeds)

    def _unusable(self, st: os.stat_result) -> str:
        import stat

        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size > MAX_PARTIAL_BYTES:
            return f"{st.st_size} bytes, over the {MAX_PARTIAL_BYTES}-byte limit"
        try:
            data = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return f"not JSON: {e}"
        if not isinstance(data, dict) or data.get("kind") != PARTIAL_KIND:
            return "not a partial-results file"
        if data.get("format_version") != PARTIAL_FORMAT_VERSION:
            return f"format_version {data.get('format_version')!r}"
        if data.get("key") != self.key:
            return "made with other inputs"
        seeds = data.get("seeds")
        if not isinstance(seeds, dict):
            return "seeds: expected an object"
        out: dict[int, SeedRecord] = {}
        for k, rec in seeds.items():
            if not (isinstance(k, str) and k.isdigit() and isinstance(rec, dict)
                    and isinstance(rec.get("runs"), dict) and isinstance(rec.get("pc2"), dict)):
                return f"seeds.{k}: expected {{'runs': {{...}}, 'pc2': {{...}}}}"
            out[int(k)] = rec
        self.seeds = out
        return ""

    def save(self, seed: int, record: SeedRecord) -> None:
        """Add ``seed``'s results and rewrite the file atomically."""
        self.seeds[int(seed)] = record
        atomic_write_text(self.path, json.dumps(
            {"kind": PARTIAL_KIND, "format_version": PARTIAL_FORMAT_VERSION, "key": self.key,
             "seeds": {str(s): r for s, r in sorted(self.seeds.items())}}, sort_keys=True) + "\n")

    def remove(self) -> None:
        """Delete the file (the evaluation's result is written)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
