"""Shared fixtures: small real circuits and a place for real files."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spice.circuit import spec_from_config
from spice.tile import Tile

REPO = Path(__file__).resolve().parents[1]
CIRCUITS = REPO / "data" / "circuits"
F64_EPS = float(np.finfo(np.float64).eps)
F32_EPS = float(np.finfo(np.float32).eps)
TORCH_THREADS_ENV = "XBARCHAR_TORCH_THREADS"  # read below; set by scripts/float_check.sh = "XBARCHAR_TORCH_THREADS"


def reorder_atol(n_terms: int, scale: float, eps: float = F64_EPS) -> float:
    """Absolute tolerance between two summation orders (batched vs single, BLAS kernel, thread count) of
    ``n_terms`` products whose magnitudes add up to at most ``scale`` (in the result's unit). Either order
    is within (n - 1) eps scale of the exact sum; 8 sqrt(n) eps scale covers that up to n = 64 and is
    still far below any wrong term."""
    return 8.0 * eps * math.sqrt(n_terms) * scale


@pytest.fixture(scope="session", autouse=True)
def torch_threads_from_env():
    """``XBARCHAR_TORCH_THREADS=n`` runs every test with n torch threads (scripts/float_check.sh reruns the
    cross-path float comparisons under another thread count); unset, torch's default is kept."""
    import os

    n = os.environ.get(TORCH_THREADS_ENV)
    if n:
        import torch

        torch.set_num_threads(int(n))
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models run fastest on one thread; with 2 OpenMP threads on a shared 2-core machine a busy
    neighbour process slows them >10x (measured: 2 s -> 36 s). Restored after the module.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``. ``XBARCHAR_TORCH_THREADS``
    set: that many threads instead (the float check's second thread count)."""
    import os

    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get(TORCH_THREADS_ENV) or 1))
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


class TileOfFields:
    """A test tile model's `tile` (`dnn.mvm.TileMVM`) from its own fields rows, cols, g_off_s, g_on_s,
    v_read_min_v and v_read_max_v (an ideal array: no resistance)."""

    @property
    def tile(self) -> Tile:
        return Tile(rows=self.rows, cols=self.cols, g_off_s=self.g_off_s, g_on_s=self.g_on_s,
                    v_read_min_v=self.v_read_min_v, v_read_max_v=self.v_read_max_v, r_driver_ohm=0.0,
                    r_sense_ohm=0.0, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0)


@dataclass
class PerTileOnly:
    """A tile model seen only through `TileMVM.bind` (hides `bind_shared`): inputs repeated per tile. It
    states the model's line resistances where the model does (None otherwise: the unloaded noise path)."""

    model: Any

    def __post_init__(self):
        self.tile = self.model.tile

    def bind(self, g_s):
        return self.model.bind(g_s)

    def line_resistances_ohm(self):
        stated = getattr(self.model, "line_resistances_ohm", None)
        return stated() if stated is not None else None


@pytest.fixture(scope="session")
def small_digits_model(tmp_path_factory):
    """A half-width digits BN-CNN trained for one epoch by ``dnn train`` (seconds), shared by the tests that
    evaluate a real model file end to end."""
    import json

    from dnn.cli import main

    out = tmp_path_factory.mktemp("model") / "digits_small.pt"
    params = {"dataset": "digits", "model": "bn_cnn", "epochs": 1, "batch_size": 32, "lr": 0.003, "seed": 3,
              "width": 0.5}
    assert main(["train", "-q", "--params-json", json.dumps(params), "--no-progress", "--out", str(out)]) == 0
    return out
