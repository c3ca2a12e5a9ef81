"""The exact solver's fast paths (warm internal nodes, compiled sweeps) give the converged answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spice import exact, ngspice
from spice.circuit import spec_from_config
from tests.conftest import CIRCUITS

ONE_S_ONE_R = str(CIRCUITS / "one_s_one_r.cir")
ONE_T_ONE_R = str(CIRCUITS / "one_t_one_r.cir")


def _spec(netlist: str, n: int, **extra):
    return spec_from_config("t", {"netlist": netlist, "rows": n, "cols": n, "r_driver_ohm": 100.0,
                                  "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 100.0, **extra})


def _inputs(spec, tiles: int, vectors: int, seed: int):
    rng = np.random.default_rng(seed)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (tiles, spec.rows, spec.cols))
    v = rng.uniform(spec.v_read_min_v, spec.v_read_max_v, (tiles, vectors, spec.rows))
    v[rng.random(v.shape) < 0.3] = 0.0  # post-ReLU-like inputs: some rows off
    v[0, 1] = 0.0  # one all-zero vector
    return torch.as_tensor(g), torch.as_tensor(v)


def _solve(spec, g, v, **options):
    solver = exact.ArraySolver(spec, exact.cell_model(spec), g, exact.NewtonOptions(**options))
    return solver.currents(v), solver


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("netlist, extra", [(ONE_S_ONE_R, {"v_read_max_v": 1.0, "v_read_min_v": -1.0}),
                                            (ONE_T_ONE_R, {"v_gate_v": 1.8, "v_read_max_v": 0.5})])
def test_warm_internal_nodes_reach_the_cold_solution(netlist, extra):
    """One local Newton step per sweep from the last sweep's internal node converges to the answer of the
    internal node solved to convergence at every evaluation (same fixed point, different path)."""
    spec = _spec(netlist, 12, **extra)
    g, v = _inputs(spec, 3, 10, 1)
    cold, _ = _solve(spec, g, v, warm_internal=False, compile_min_cells=None)
    warm, solver = _solve(spec, g, v, compile_min_cells=None)
    assert solver._warm
    assert _rel(warm, cold) <= 1e-9
    assert torch.all(warm[0, 1] == 0.0)
    # a solve stopped after one sweep is far from it: the comparison can fail
    with pytest.raises(exact.ArrayConvergenceError):
        _solve(spec, g, v, max_iter=1, retry_max_iter=1, source_steps=1, compile_min_cells=None)


@pytest.mark.spice
def test_warm_sweeps_match_ngspice_per_vector():
    """The fast path against ngspice on the selector cell, 16x16 at reads to 1 V: within 1e-6 of each
    vector's own largest current (low reads included)."""
    spec = _spec(ONE_S_ONE_R, 16, v_read_max_v=1.0)
    g, v = _inputs(spec, 1, 12, 2)
    v[0, 3] *= 0.25  # selector (mostly) off
    got, _ = _solve(spec, g, v)
    i_spice, failed = ngspice.solve(spec, g[0].numpy(), v[0].numpy())
    assert not failed.any()
    on = v[0].abs().amax(1).numpy() > 0  # the all-zero vector: ngspice leaves ~gmin currents
    per_vector = np.abs(got[0].numpy() - i_spice).max(1)[on] / np.abs(i_spice).max(1)[on]
    assert per_vector.max() <= 1e-6, per_vector


@pytest.mark.slow
def test_compiled_sweeps_equal_eager_sweeps():
    """torch.compile fuses the warm sweep; the answer is the eager one up to round-off."""
    spec = _spec(ONE_S_ONE_R, 8, v_read_max_v=1.0)
    g, v = _inputs(spec, 2, 6, 3)
    eager, _ = _solve(spec, g, v, compile_min_cells=None)
    compiled, _ = _solve(spec, g, v, compile_min_cells=0)
    if exact._compiled_warm_sweep() is None:
        pytest.skip("torch.compile is not available here")
    assert _rel(compiled, eager) <= 1e-12
