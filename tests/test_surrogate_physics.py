"""Closed-form physics of the surrogates and the dataset split (real ngspice datasets, real files)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from spice import nodal
from spice.cli import main as spice_main
from spice.io import read_dataset, write_dataset
from surrogate.data import load_splits, split_dataset
from surrogate.physics import TileSpec, analytic_transfer, lumped_currents, lumped_transfer, wire_drop
from tests.conftest import CIRCUITS

CIRCUIT = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 8, "cols": 8, "r_driver_ohm": 1000.0,
           "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 1000.0}


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("phys") / "r8.h5"
    rc = spice_main(["simulate", "--circuit-name", "r8", "--circuit", json.dumps(CIRCUIT), "--sampling",
                     json.dumps({"n_conductance": 7, "n_vectors": 16, "seed": 4}), "--out", str(out), "--quiet"])
    assert rc == 0
    return out


def test_lumped_transfer_is_the_exact_wire_free_circuit(make_spec):
    spec = make_spec(rows=6, cols=5, r_driver_ohm=700.0, r_sense_ohm=300.0, r_wire_row_ohm=0.0,
                     r_wire_col_ohm=0.0)
    g = np.random.default_rng(0).uniform(spec.g_off_s, spec.g_on_s, size=(6, 5))
    exact = nodal.transfer_matrix(spec, g)
    g_on = spec.g_on_s
    t_n = lumped_transfer(torch.as_tensor(g / g_on), 1.0 / (spec.r_driver_ohm * g_on),
                          1.0 / (spec.r_sense_ohm * g_on)).numpy()
    np.testing.assert_allclose(t_n * g_on, exact, rtol=1e-10)
    # the per-vector solve is the same circuit
    v = torch.as_tensor(np.random.default_rng(1).uniform(0, 0.2, size=(1, 4, 6)))
    i_direct = lumped_currents(torch.as_tensor(g / g_on)[None], v, 1.0 / (spec.r_driver_ohm * g_on),
                               1.0 / (spec.r_sense_ohm * g_on))
    np.testing.assert_allclose(i_direct[0].numpy() * g_on, v[0].numpy() @ exact, rtol=1e-10)


def test_wire_drop_counts_the_current_each_segment_carries():
    g = torch.ones(2, 3)
    rho, kappa = wire_drop(g, 1.0, 10.0)
    # row segments carry 3, 2, 1 cell currents: drops 3, 3+2, 3+2+1
    np.testing.assert_allclose(rho.numpy(), [[3, 5, 6], [3, 5, 6]])
    # column segments (sense below the last row) carry 1, 2 cells: row 1 sees 2, row 0 sees 1+2
    np.testing.assert_allclose(kappa.numpy(), 10.0 * np.array([[3, 3, 3], [2, 2, 2]]))


def test_analytic_model_is_ideal_without_parasitics(make_spec):
    spec = make_spec(rows=4, cols=3, r_driver_ohm=0.0, r_sense_ohm=0.0, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0)
    tile = TileSpec.from_circuit(spec)
    g_n = torch.rand(4, 3, dtype=torch.float64)
    torch.testing.assert_close(analytic_transfer(g_n, tile), g_n)
    lossy = TileSpec(**{**tile.to_dict(), "r_driver_ohm": 1000.0})
    assert torch.all(analytic_transfer(g_n, lossy) < g_n)


def test_split_never_shares_a_matrix_and_drops_failed_samples(dataset_path, tmp_path, caplog):
    ds = read_dataset(dataset_path)
    failed = ds.failed.copy()
    failed[[0, 5, 40]] = True
    i_a = ds.i_a.copy()
    i_a[failed] = np.nan
    arrays = {k: getattr(ds, k) for k in ("g_s", "g_id", "solver", "transfer_a_per_v", "g_index", "v_v",
                                          "i_ideal_a", "p_w", "p_parts_w")}
    path = tmp_path / "with_failed.h5"
    reasons = np.where(failed, b"did not converge", b"").astype("S")
    write_dataset(path, ds.spec, {**arrays, "i_a": i_a, "failed": failed, "failure_reason": reasons}, {"seed": 4})
    with caplog.at_level(logging.WARNING, logger="surrogate.data"):
        splits = load_splits(path, val_fraction=0.15, test_fraction=0.15, seed=3)
    assert "dropped 3 of 112 samples" in caplog.text
    assert splits.n_failed_dropped == 3
    rows = [set(splits.split(name).g_rows.tolist()) for name in ("train", "val", "test")]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    assert set().union(*rows) == set(range(7))
    assert sum(splits.split(n).n_samples for n in ("train", "val", "test")) == 112 - 3
    for name in ("train", "val", "test"):
        s = splits.split(name)
        assert np.all(np.isfinite(s.i_a))
        np.testing.assert_allclose(s.i_ideal_a, np.einsum("nr,nrc->nc", s.v_v, s.g_s[s.g_index]), rtol=1e-12)
    assert splits.all_linear
    again = load_splits(path, seed=3)
    np.testing.assert_array_equal(again.test.g_rows, splits.test.g_rows)
    other = load_splits(path, seed=4)
    assert not np.array_equal(other.train.g_rows, splits.train.g_rows)


def test_too_few_matrices_is_a_clear_error(dataset_path):
    ds = read_dataset(dataset_path)
    keep = ds.g_index < 2
    small = type(ds)(**{**ds.__dict__, "g_s": ds.g_s[:2], "g_id": ds.g_id[:2], "solver": ds.solver[:2],
                        "transfer_a_per_v": ds.transfer_a_per_v[:2], "g_index": ds.g_index[keep],
                        "v_v": ds.v_v[keep], "i_a": ds.i_a[keep], "i_ideal_a": ds.i_ideal_a[keep],
                        "p_w": ds.p_w[keep], "p_parts_w": ds.p_parts_w[keep], "failed": ds.failed[keep]})
    with pytest.raises(ValueError, match=r"2 usable conductance matrices cannot be split .*: the split needs at "
                                         r"least 3; simulate 1 more \(sampling.n_conductance >= 3\)"):
        split_dataset(small)
