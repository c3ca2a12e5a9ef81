"""Sampling, sharding and the HDF5 dataset files (real ngspice, real files)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spice import nodal
from spice.circuit import CircuitError
from spice.cli import main as spice_main
from spice.io import DatasetFileError, merge_shards, read_dataset, summary
from spice.sampling import SamplingConfig, draw
from tests.conftest import CIRCUITS

pytestmark = pytest.mark.spice


def simulate(tmp_path, name, circuit, sampling, shard=0):
    out = tmp_path / f"{name}.h5"
    rc = spice_main(["simulate", "--circuit-name", "c", "--circuit", json.dumps(circuit), "--sampling",
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
        assert f.attrs["format_version"] == 4 and len(f.attrs["content_sha256"]) == 64
        assert f.attrs["ngspice_version"] and f.attrs["pyspice_version"] and f.attrs["netlist_sha256"]
        assert f.attrs["seed"] == 5 and "reltol" in f.attrs["ngspice_options"]
        for name, ds_ in f.items():
            assert "units" in ds_.attrs, f"/{name} has no units"
        assert f["i_a"].attrs["units"] == "A" and f["g_s"].attrs["units"] == "S"
    text = summary(path)
    assert "ngspice_version" in text and "samples: 21" in text and "content hash verified" in text


@pytest.mark.parametrize("sampler", ["uniform", "mixed"])
def test_sharding_does_not_change_the_numbers(tmp_path, sampler):
    base = {"sampler": sampler, "n_conductance": 4, "n_vectors": 5, "seed": 9}
    whole = read_dataset(simulate(tmp_path, "whole", CIRCUIT, base))
    sampling = {**base, "n_shards": 3}
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


def _levels(spec, g, bits_per_cell=4):
    return (g - spec.g_off_s) / ((spec.g_on_s - spec.g_off_s) / (2**bits_per_cell - 1))


def test_dnn_like_sampler_draws_weight_slice_levels_and_dac_inputs(make_spec):
    spec = make_spec(rows=32, cols=24, v_read_max_v=0.25)
    cfg = SamplingConfig(sampler="dnn_like", n_vectors=200, seed=3)
    draws = [draw(spec, cfg, k) for k in range(40)]
    g = np.stack([d[0] for d in draws])
    v = np.concatenate([d[1] for d in draws])
    level = _levels(spec, g)
    np.testing.assert_allclose(level, np.round(level), atol=1e-9)  # on the 16 device levels
    assert level.min() > -1e-9 and level.max() < 15 + 1e-9
    counts = np.bincount(np.round(level).astype(int).ravel(), minlength=16) / level.size
    assert counts[0] > 0.6 and counts[0] > 5 * counts[1:].max()  # skewed toward g_off
    assert counts[8:].sum() > 0.01  # yet the high levels occur
    per_matrix = level.reshape(len(level), -1).mean(1)
    assert per_matrix.min() < 0.1 and per_matrix.max() > 1.5  # sparse and dense tiles
    step = 0.25 / 127
    np.testing.assert_allclose(v / step, np.round(v / step), atol=1e-9)  # on the 8-bit DAC grid
    assert v.min() == 0.0 and v.max() <= 0.25
    zero = np.mean(v == 0, axis=1)
    assert 0.3 < zero.mean() < 0.7
    spread = [np.std(np.mean(v_k == 0, axis=1)) for _, v_k in draws]
    assert min(spread) > 0.15  # sparsity varies per vector, within every matrix


def test_dnn_like_sampler_follows_its_settings(make_spec):
    spec = make_spec(rows=64, cols=16)
    fixed = {"sampler": "dnn_like", "n_vectors": 400, "v_zero_range": [0.4, 0.4], "v_scale_range": [0.3, 0.3]}
    g, v = draw(spec, SamplingConfig.from_dict({**fixed, "input_bits": 0}), 0)
    assert abs(np.mean(v == 0) - 0.4) < 0.02
    assert len(np.unique(v)) > 0.55 * v.size  # continuous inputs (0.6 of them non-zero)
    sparse = np.stack([draw(spec, SamplingConfig(sampler="dnn_like", w_scale_range=(0.003, 0.003)), k)[0]
                       for k in range(10)])
    dense = np.stack([draw(spec, SamplingConfig(sampler="dnn_like", w_scale_range=(1.0, 1.0), pad_probability=0.0),
                           k)[0] for k in range(10)])
    assert np.mean(sparse == spec.g_off_s) > 0.95
    assert np.mean(_levels(spec, dense)) > 2.0
    g2, _ = draw(spec, SamplingConfig(sampler="dnn_like", bits_per_cell=2, weight_bits=4, w_scale_range=(1, 1)), 1)
    level = _levels(spec, g2, bits_per_cell=2)
    assert set(np.unique(np.round(level, 9))) <= {0.0, 1.0, 2.0, 3.0} and level.max() > 0
    for k in range(5):  # the largest weight fits one slice: |q| <= 3 whatever the scale
        g3, _ = draw(spec, SamplingConfig(sampler="dnn_like", weight_bits=3, w_scale_range=(2.0, 2.0)), k)
        assert np.round(_levels(spec, g3)).max() == 3.0
    padded = [draw(spec, SamplingConfig(sampler="dnn_like", pad_probability=1.0, w_scale_range=(1, 1)), k)[0]
              for k in range(6)]
    for g_k in padded:  # an edge tile: its last row or column holds no weights
        assert np.all(g_k[-1] == spec.g_off_s) or np.all(g_k[:, -1] == spec.g_off_s)


def test_dnn_like_and_mixed_are_deterministic_per_seed_and_matrix(make_spec):
    spec = make_spec(rows=8, cols=6)
    cfg = SamplingConfig(sampler="dnn_like", n_conductance=5, n_vectors=9, seed=4)
    a, b = draw(spec, cfg, 2), draw(spec, SamplingConfig(sampler="dnn_like", n_conductance=9, n_shards=3,
                                                         n_vectors=9, seed=4), 2)
    np.testing.assert_array_equal(a[0], b[0])  # the sample does not depend on how many or which shard
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], draw(spec, cfg, 3)[0])
    assert not np.array_equal(a[1], draw(spec, SamplingConfig(sampler="dnn_like", n_vectors=9, seed=5), 2)[1])
    # mixed: matrix k is exactly the dnn_like or the uniform draw k, chosen by its own stream
    mixed = SamplingConfig(sampler="mixed", mix_fraction=0.5, n_vectors=9, seed=4, v_zero_fraction=0.3)
    uniform = SamplingConfig(sampler="uniform", n_vectors=9, seed=4, v_zero_fraction=0.3)
    kinds = []
    for k in range(60):
        g, v = draw(spec, mixed, k)
        g_d, v_d = draw(spec, cfg, k)
        g_u, v_u = draw(spec, uniform, k)
        is_dnn = np.array_equal(g, g_d) and np.array_equal(v, v_d)
        assert is_dnn or (np.array_equal(g, g_u) and np.array_equal(v, v_u))
        kinds.append(is_dnn)
    assert 15 < sum(kinds) < 45
    assert all(np.array_equal(draw(spec, SamplingConfig(sampler="mixed", mix_fraction=1.0, n_vectors=9, seed=4), k)[0],
                              draw(spec, cfg, k)[0]) for k in range(5))
    assert all(np.array_equal(draw(spec, SamplingConfig(sampler="mixed", mix_fraction=0.0, n_vectors=9, seed=4,
                                                        v_zero_fraction=0.3), k)[1], draw(spec, uniform, k)[1])
               for k in range(5))


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("sampler", "dnn", "one of"),
    ("mix_fraction", 1.5, "a number in [0, 1]"),
    ("bits_per_cell", 0, "an integer in [1, 8]"),
    ("weight_bits", 1, "an integer in [2, 16]"),
    ("input_bits", 1, "0 (continuous) or an integer in [2, 16]"),
    ("pad_probability", -0.1, "a number in [0, 1]"),
    ("w_scale_range", [0.0, 0.5], "0 < lo <= hi"),
    ("w_scale_range", [0.5], "a pair [lo, hi]"),
    ("v_zero_range", [0.5, 0.2], "0 <= lo <= hi < 1"),
    ("v_zero_range", [0.0, 1.0], "0 <= lo <= hi < 1"),
    ("v_scale_range", "wide", "a pair [lo, hi]"),
])
def test_bad_sampling_keys_name_the_key(key, value, expected):
    with pytest.raises(CircuitError) as exc:
        SamplingConfig.from_dict({"sampler": "mixed", key: value})
    assert str(exc.value).startswith(f"sampling.{key}: expected ")
    assert expected in str(exc.value) and repr(value if not isinstance(value, list) else tuple(value)) in str(exc.value)


def test_cli_rejects_a_bad_sampling_key_with_exit_code_2(tmp_path, capsys):
    rc = spice_main(["simulate", "--circuit", json.dumps(CIRCUIT), "--sampling",
                     json.dumps({"sampler": "dnn_like", "v_zero_range": [0.9, 0.1]}), "--out", str(tmp_path / "o.h5")])
    assert rc == 2
    assert "sampling.v_zero_range: expected a pair [lo, hi] with 0 <= lo <= hi < 1, got (0.9, 0.1)" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()


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

    monkeypatch.setattr(spice.simulate, "superposition_probed", boom)
    rc = spice_main(["simulate", "--circuit", json.dumps(CIRCUIT), "--sampling", '{"n_conductance": 1}',
                     "--out", str(tmp_path / "x.h5"), "--quiet"])
    assert rc == 130
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_bad_circuit_with_exit_code_2(tmp_path, capsys):
    rc = spice_main(["simulate", "--circuit", json.dumps({"netlist": str(tmp_path / "none.cir"), "rows": 2,
                                                           "cols": 2}), "--out", str(tmp_path / "o.h5")])
    assert rc == 2
    assert "none.cir does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()
