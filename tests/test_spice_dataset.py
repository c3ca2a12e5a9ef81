"""Sampling, sharding and the HDF5 dataset files (real ngspice, real files)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spice import nodal
from spice.cli import main as spice_main
from spice.io import DatasetFileError, merge_shards, read_dataset, summary
from spice.sampling import SamplingConfig, draw
from tests.conftest import CIRCUITS

pytestmark = pytest.mark.spice


def simulate(tmp_path, name, circuit, sampling, shard=0):
    out = tmp_path / f"{name}.h5"
    rc = spice_main(["simulate", "--name", "c", "--circuit", json.dumps(circuit), "--sampling",
                     json.dumps(sampling), "--shard", str(shard), "--out", str(out), "--quiet"])
    assert rc == 0
    return out


CIRCUIT = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 6, "cols": 5, "r_driver_ohm": 200.0,
           "r_wire_row_ohm": 4.0, "r_wire_col_ohm": 4.0, "r_sense_ohm": 200.0}


def test_dataset_file_has_provenance_units_and_exact_physics(tmp_path):
    path = simulate(tmp_path, "d", CIRCUIT, {"n_conductance": 3, "n_vectors": 7, "seed": 5})
    ds = read_dataset(path)
    assert ds.g_s.shape == (3, 6, 5) and ds.v_v.shape == (21, 6) and ds.i_a.shape == (21, 5)
    assert not ds.failed.any()
    for k in range(3):
        rows = ds.g_index == k
        np.testing.assert_allclose(ds.i_a[rows], nodal.column_currents(ds.spec, ds.g_s[k], ds.v_v[rows]), rtol=1e-6)
        np.testing.assert_allclose(ds.i_ideal_a[rows], ds.v_v[rows] @ ds.g_s[k], rtol=1e-12)
    with h5py.File(path) as f:
        assert f.attrs["format_version"] == 1
        assert f.attrs["ngspice_version"] and f.attrs["pyspice_version"] and f.attrs["netlist_sha256"]
        assert f.attrs["seed"] == 5
        for name, ds_ in f.items():
            assert "units" in ds_.attrs, f"/{name} has no units"
        assert f["i_a"].attrs["units"] == "A" and f["g_s"].attrs["units"] == "S"
    text = summary(path)
    assert "ngspice_version" in text and "samples: 21" in text


def test_sharding_does_not_change_the_numbers(tmp_path):
    whole = read_dataset(simulate(tmp_path, "whole", CIRCUIT, {"n_conductance": 4, "n_vectors": 5, "seed": 9}))
    sampling = {"n_conductance": 4, "n_vectors": 5, "seed": 9, "n_shards": 3}
    shards = [simulate(tmp_path, f"s{k}", CIRCUIT, sampling, shard=k) for k in range(3)]
    merged = merge_shards(shards, tmp_path / "merged.h5")
    np.testing.assert_array_equal(merged.g_s, whole.g_s)
    np.testing.assert_array_equal(merged.v_v, whole.v_v)
    np.testing.assert_array_equal(merged.g_index, whole.g_index)
    np.testing.assert_allclose(merged.i_a, whole.i_a, rtol=1e-12)


def test_same_seed_same_samples_other_seed_other_samples(make_spec):
    spec = make_spec()
    a = draw(spec, SamplingConfig(seed=1), 0)
    b = draw(spec, SamplingConfig(seed=1), 0)
    c = draw(spec, SamplingConfig(seed=2), 0)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    g, v = draw(spec, SamplingConfig(seed=1, g_levels=4, v_zero_fraction=0.5, n_vectors=400), 3)
    assert len(np.unique(np.round(g / spec.g_off_s, 6))) <= 4
    assert 0.4 < np.mean(v == 0) < 0.6


def test_from_file_sampler_draws_given_tiles(tmp_path, make_spec):
    spec = make_spec(rows=4, cols=3)
    g_bank = np.stack([np.full((4, 3), 1e-5), np.full((4, 3), 3e-5)])
    v_bank = np.array([[0.1, 0.0, 0.05, 0.2]])
    np.savez(tmp_path / "bank.npz", g_s=g_bank, v_v=v_bank)
    g, v = draw(spec, SamplingConfig(sampler="from_file", source_file=str(tmp_path / "bank.npz"), n_vectors=3), 0)
    assert any(np.array_equal(g, gb) for gb in g_bank)
    np.testing.assert_array_equal(v, np.repeat(v_bank, 3, axis=0))


def test_nonlinear_circuit_uses_the_sweep_and_records_it(tmp_path):
    circuit = dict(CIRCUIT, netlist=str(CIRCUITS / "memristor_sinh.cir"))
    ds = read_dataset(simulate(tmp_path, "nl", circuit, {"n_conductance": 2, "n_vectors": 4}))
    assert set(ds.solver.tolist()) == {b"sweep"}
    assert np.isnan(ds.transfer_a_per_v).all()


def test_corrupt_missing_and_foreign_files_get_clear_errors(tmp_path):
    with pytest.raises(DatasetFileError, match="does not exist"):
        read_dataset(tmp_path / "missing.h5")
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(DatasetFileError, match="not a readable HDF5 file"):
        read_dataset(bad)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["kind"] = "something.else"
    with pytest.raises(DatasetFileError, match="expected an HDF5 file of kind 'xbarchar.spice'"):
        read_dataset(other)
    good = simulate(tmp_path, "v", CIRCUIT, {"n_conductance": 1, "n_vectors": 2})
    with h5py.File(good, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(DatasetFileError, match="format_version 99 is not supported"):
        read_dataset(good)


def test_failed_run_leaves_no_file(tmp_path, monkeypatch):
    """An interrupted write leaves neither the output nor a temporary file behind."""
    import spice.simulate

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(spice.simulate, "superposition", boom)
    with pytest.raises(KeyboardInterrupt):
        simulate(tmp_path, "x", CIRCUIT, {"n_conductance": 1, "n_vectors": 2})
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_bad_circuit_with_exit_code_2(tmp_path, capsys):
    rc = spice_main(["simulate", "--circuit", json.dumps({"netlist": str(tmp_path / "none.cir"), "rows": 2,
                                                           "cols": 2}), "--out", str(tmp_path / "o.h5")])
    assert rc == 2
    assert "none.cir does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()
