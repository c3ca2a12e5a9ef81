"""Long exact and SPICE-in-the-loop solves report what they do and the time left."""

from __future__ import annotations

import logging

import numpy as np
import torch

from spice import exact
from spice.circuit import spec_from_config
from tests.conftest import CIRCUITS


def test_progress_logs_the_count_rate_and_time_left(caplog):
    spec = spec_from_config("t", {"netlist": str(CIRCUITS / "one_s_one_r.cir"), "rows": 6, "cols": 6,
                                  "v_read_max_v": 1.0})
    rng = np.random.default_rng(0)
    g = torch.as_tensor(rng.uniform(spec.g_off_s, spec.g_on_s, (2, 6, 6)))
    v = torch.as_tensor(rng.uniform(0.0, 1.0, (2, 5, 6)))
    progress = exact.PROGRESS
    saved = progress.log_every_s
    try:
        progress.expect(40, "evaluation")
        progress.log_every_s = 0.0  # log at every call
        with caplog.at_level(logging.INFO, logger="spice.exact"):
            exact.ArraySolver(spec, exact.cell_model(spec), g).currents(v)
        assert progress.done == 10
        assert "evaluation: 10/40 tile-vectors (25%)" in caplog.text
        assert "s left" in caplog.text and "2 tiles x 5 vectors of 6x6" in caplog.text
    finally:
        progress.log_every_s = saved
        progress.expect(None)


def test_unknown_cell_still_points_to_spice_in_the_loop(tmp_path):
    path = tmp_path / "cell.cir"
    path.write_text(".subckt cell row col params: g=1e-5\nC1 row col 1p\nR1 row col {1/g}\n.ends cell\n")
    spec = spec_from_config("t", {"netlist": str(path), "rows": 4, "cols": 4})
    try:
        exact.cell_model(spec)
    except exact.UnsupportedCircuitError as e:
        assert "--mvm spice" in str(e) and str(path) in str(e)
    else:
        raise AssertionError("an unknown cell was accepted")


def test_no_progress_silences_the_exact_solvers_progress(caplog):
    """`--no-progress` (and `--quiet`) switch off every progress of the command, the module-level one of
    the exact solvers included; the setting is restored after the command."""
    import argparse

    from xbarchar import cli as xcli

    spec = spec_from_config("t", {"netlist": str(CIRCUITS / "one_s_one_r.cir"), "rows": 4, "cols": 4,
                                  "v_read_max_v": 1.0})
    rng = np.random.default_rng(1)
    g = torch.as_tensor(rng.uniform(spec.g_off_s, spec.g_on_s, (1, 4, 4)))
    v = torch.as_tensor(rng.uniform(0.0, 1.0, (1, 3, 4)))
    progress = exact.PROGRESS
    saved = progress.log_every_s
    try:
        for flags, shown in (({"no_progress": True, "quiet": False}, False),
                             ({"no_progress": False, "quiet": False}, True)):
            args = argparse.Namespace(verbose=False, threads=0, **flags)
            caplog.clear()
            with xcli.configured(args):
                assert progress.enabled is shown
                progress.expect(30, "evaluation")
                progress.log_every_s = 0.0
                with caplog.at_level(logging.INFO, logger="spice.exact"):
                    exact.ArraySolver(spec, exact.cell_model(spec), g).currents(v)
                    progress.close()
            assert ("evaluation: 3/30 tile-vectors" in caplog.text) is shown
            assert progress.enabled is True  # restored
    finally:
        progress.log_every_s = saved
        progress.expect(None)
