"""Files that ship inside the package, found through :mod:`importlib.resources` from any directory.

- ``spice/circuits/*.cir``: the example circuit files the presets use (``resistive.cir``, ``memristor_sinh.cir``,
  ``one_t_one_r.cir``, ``one_s_one_r.cir``, ``tia_sense.cir``);
- ``spice/schema.yaml``: the JSON schema of the workflow config.

In a source checkout both are links to the one copy the workflow uses (``data/circuits/`` and
``config/schema.yaml``); a built wheel holds the files themselves.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _package_file(*parts: str) -> Path:
    # A package installed as plain files (a wheel, an editable install, a checkout): a real path.
    return Path(str(files("spice").joinpath(*parts)))


def circuit_path(name: str) -> Path:
    """Path of the shipped circuit file `name` (e.g. ``"resistive.cir"``)."""
    return _package_file("circuits", name)


def circuit_names() -> list[str]:
    """Names of the shipped circuit files."""
    return sorted(p.name for p in _package_file("circuits").iterdir() if p.suffix == ".cir")


def schema_path() -> Path:
    """Path of the workflow config's JSON schema."""
    return _package_file("schema.yaml")
