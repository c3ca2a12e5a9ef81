"""What a surrogate file promises about the circuit it fits, readable without torch.

The workflow checks a config's ``surrogate_file`` with :func:`file_problems` before any job runs
(kind, version and integrity record through :func:`spice.io.open_checked`, then the tile);
``surrogate.io.load_surrogate`` applies the same :func:`compatibility_problems` when it loads one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from spice.circuit import CircuitSpec
from spice.io import DatasetFileError, open_checked

KIND = "xbarchar.surrogate"
FORMAT_VERSION = 3
"""Version 2 files carry the integrity record ``content_sha256``; version 1 files are refused. Version 3 files
may carry an energy model (root attribute ``energy_model``, :mod:`surrogate.energy`)."""
READABLE_VERSIONS = (2, 3)
"""Versions this xbarchar reads (a version 2 file has no energy model)."""
COMPATIBILITY_KEYS = ("rows", "cols", "g_off_s", "g_on_s", "v_read_min_v", "v_read_max_v")
"""Fields a surrogate's tile must share with a circuit (CircuitSpec and spice.tile.Tile use the same names)."""
def compatibility_problems(tile: dict[str, Any], spec: CircuitSpec) -> list[str]:
    """Every way a surrogate's tile (``spice.tile.Tile.to_dict()``) does not fit ``spec``; empty when it fits."""
    problems = []
    for key in COMPATIBILITY_KEYS:
        want, have = getattr(spec, key), tile.get(key)
        if have is None or not np.isclose(float(want), float(have), rtol=1e-9, atol=0.0):
            problems.append(f"{key} {have!r} in the file != {want!r} for the circuit")
    return problems


def file_problems(path: str | Path, spec: CircuitSpec) -> str:
    """'' when the surrogate file at ``path`` can serve ``spec``, else one sentence saying why not."""
    try:
        with open_checked(path, KIND, READABLE_VERSIONS) as f:
            architecture = json.loads(f.attrs["architecture"])
            tile = architecture["tile"]
    except DatasetFileError as exc:
        return str(exc)
    except (KeyError, TypeError, ValueError) as exc:
        return f"{path}: corrupt or incomplete surrogate file ({exc})"
    problems = compatibility_problems(tile, spec)
    if problems:
        return (f"{path}: surrogate does not fit circuit '{spec.name}' ({spec.rows}x{spec.cols}): "
                + "; ".join(problems))
    return ""
