"""Shared fixtures: small real circuits and a place for real files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spice.circuit import spec_from_config

REPO = Path(__file__).resolve().parents[1]
CIRCUITS = REPO / "data" / "circuits"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models run fastest on one thread; with 2 OpenMP threads on a shared 2-core machine a busy
    neighbour process slows them >10x (measured: 2 s -> 36 s). Restored after the module.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def make_spec():
    """Build a CircuitSpec from keyword overrides of a small resistive array."""

    def _make(name: str = "t", **overrides):
        entry = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 4, "cols": 3, "r_driver_ohm": 100.0,
                 "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 100.0}
        entry.update(overrides)
        return spec_from_config(name, entry)

    return _make


def assert_cli_error(capsys, main, argv, pattern: str, code: int = 2) -> str:
    """Run a CLI ``main(argv)``: it exits with ``code`` and prints one line matching ``pattern``
    (the project's CLI convention: one line on stderr, no traceback)."""
    import re

    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


@dataclass
class PerTileOnly:
    """A tile model seen only through `TileMVM.bind` (hides `bind_shared`): inputs repeated per tile. It
    states the model's line resistances where the model does (None otherwise: the unloaded noise path)."""

    model: Any

    def __post_init__(self):
        for key in ("rows", "cols", "g_off_s", "g_on_s", "v_read_max_v", "v_read_min_v"):
            setattr(self, key, getattr(self.model, key))

    def bind(self, g_s):
        return self.model.bind(g_s)

    def line_resistances_ohm(self):
        stated = getattr(self.model, "line_resistances_ohm", None)
        return stated() if stated is not None else None
