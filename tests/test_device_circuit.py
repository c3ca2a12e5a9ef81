"""A stuck-ON device through the circuit: the surrogate of a real 8x8 array (trained on a real ngspice dataset)
against ngspice on the exact faulted matrix, and the ideal v.G that misses the fault's extra IR drop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dnn.device import apply_faults_and_range
from spice import ngspice
from spice.circuit import spec_from_config
from spice.cli import main as spice_main
from surrogate.cli import main as surrogate_main
from surrogate.io import load_surrogate
from tests.conftest import CIRCUITS

CIRCUIT = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 8, "cols": 8, "r_driver_ohm": 1000.0,
           "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 1000.0}
STUCK = (2, 5)  # (row, column) of the stuck-ON device


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    before = torch.get_num_threads()  # the CLIs set --threads (default 1) process-wide
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory):
    """A transfer surrogate of the array and its measured fidelity on held-out ngspice matrices."""
    tmp = tmp_path_factory.mktemp("stuck")
    data, surr, fid = tmp / "r8.h5", tmp / "s.h5", tmp / "fid.json"
    assert spice_main(["simulate", "--circuit-name", "r8", "--circuit", json.dumps(CIRCUIT), "--sampling",
                       json.dumps({"n_conductance": 8, "n_vectors": 32, "seed": 5}), "--out", str(data),
                       "--quiet"]) == 0
    assert surrogate_main(["train", "--data", str(data), "--out", str(surr), "--design", "transfer", "--epochs", "30",
                           "--seed", "3", "--fidelity-json", str(fid), "--quiet"]) == 0
    return load_surrogate(surr), json.loads(fid.read_text())["models"]


def test_a_stuck_on_device_goes_through_the_surrogate_as_ngspice_solves_it(surrogate):
    model, fidelity = surrogate
    spec = spec_from_config("r8", CIRCUIT)
    rng = np.random.default_rng(0)
    # a sparse, low-conductance tile (weights near zero): the stuck-ON device is the column's largest load
    g_target = spec.g_off_s + (spec.g_on_s - spec.g_off_s) * rng.uniform(0.0, 0.2, size=(8, 8))
    on = torch.zeros(8, 8, dtype=torch.bool)
    on[STUCK] = True
    g_fault = apply_faults_and_range(torch.from_numpy(g_target), spec.g_off_s, spec.g_on_s, on,
                                     torch.zeros_like(on)).numpy()
    assert g_fault[STUCK] == spec.g_on_s and np.array_equal(np.delete(g_fault.ravel(), 2 * 8 + 5),
                                                           np.delete(g_target.ravel(), 2 * 8 + 5))
    v = rng.uniform(0.0, spec.v_read_max_v, size=(16, 8))
    v[:, STUCK[0]] = spec.v_read_max_v  # the stuck row driven fully

    def spice(g):
        i_a, failed = ngspice.solve(spec, g, v)
        assert not failed.any()
        return i_a

    def surr(g):
        with torch.no_grad():
            bound = model.bind(torch.from_numpy(g)[None])
            return bound(torch.from_numpy(v)[None])[0].numpy()

    full_scale = spec.g_on_s * spec.v_read_max_v * spec.rows
    i_spice, i_surr = spice(g_fault), surr(g_fault)
    rms = float(np.sqrt(np.mean((i_surr - i_spice) ** 2))) / full_scale
    worst = float(np.abs(i_surr - i_spice).max()) / full_scale
    # within the surrogate's measured held-out fidelity (a factor 2 for one matrix against many)
    assert rms <= 2.0 * fidelity["surrogate"]["rel_rms_fs"] and worst <= 2.0 * fidelity["surrogate"]["worst_abs_fs"]

    # the fault's effect on its column: ngspice's and the surrogate's agree; the ideal v.G overstates it by
    # the IR drop the extra current causes in the driver, wires and sense, far beyond the surrogate's error
    c = STUCK[1]
    d_spice = spice(g_fault)[:, c] - spice(g_target)[:, c]
    d_surr = i_surr[:, c] - surr(g_target)[:, c]
    d_ideal = v @ (g_fault - g_target)[:, c]
    missed = d_ideal - d_spice
    assert (missed > 0).all()  # a larger current, a larger drop: the real increase is smaller
    assert float(np.abs(d_surr - d_spice).max()) < 0.05 * float(missed.min())
    assert float(missed.mean()) > 0.02 * float(d_spice.mean())  # the drop is a visible share of the effect
    # the other columns: the shared row wire's extra drop lowers them a little, which v.G misses entirely
    others = [k for k in range(8) if k != c]
    shift_spice = spice(g_target)[:, others] - i_spice[:, others]
    assert (shift_spice.mean(axis=0) > 0).all()
    np.testing.assert_allclose(surr(g_target)[:, others] - i_surr[:, others], shift_spice,
                               atol=4.0 * fidelity["surrogate"]["worst_abs_fs"] * full_scale)
