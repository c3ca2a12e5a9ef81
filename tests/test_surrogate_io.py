"""Surrogate HDF5 files: round trip, provenance, and one clear error for every way a file can be wrong."""

from __future__ import annotations

import dataclasses
import json
import shutil

import h5py
import pytest
import torch

from spice.cli import main as spice_main
from surrogate.data import load_splits
from surrogate.io import SurrogateFileError, describe, load_surrogate, save_surrogate
from surrogate.train import TrainParams, train
from tests.conftest import CIRCUITS
from xbarchar.files import file_sha256
from xbarchar.integrity import seal

pytestmark = pytest.mark.spice

CIRCUIT = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 8, "cols": 8, "r_driver_ohm": 500.0,
           "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 500.0}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A dataset, and one trained surrogate of each design saved from it."""
    base = tmp_path_factory.mktemp("io")
    data = base / "r8.h5"
    rc = spice_main(["simulate", "--circuit-name", "r8", "--circuit", json.dumps(CIRCUIT), "--sampling",
                     json.dumps({"n_conductance": 5, "n_vectors": 32, "seed": 2}), "--out", str(data), "--quiet"])
    assert rc == 0
    splits = load_splits(data)
    out = {"data": data, "splits": splits}
    for design in ("transfer", "mlp"):
        params = TrainParams(design=design, hidden=16, epochs=3, seed=1)
        result = train(splits, params, progress=False)
        path = base / f"{design}.h5"
        save_surrogate(path, result.model, splits.spec, train_params=params.to_dict(), history=result.history,
                       data_sha256=splits.sha256, data_path=str(data), split=splits.split_json(),
                       fidelity={"note": "test"})
        out[design] = (path, result.model)
    return out


def inputs(spec, n_tiles=4, batch=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    g = spec.g_off_s + (spec.g_on_s - spec.g_off_s) * torch.rand(n_tiles, spec.rows, spec.cols, generator=gen)
    v = spec.v_read_max_v * torch.rand(n_tiles, batch, spec.rows, generator=gen)
    return g, v


@pytest.mark.parametrize("design", ["transfer", "mlp"])
def test_round_trip_gives_identical_outputs(saved, design):
    path, trained = saved[design]
    spec = saved["splits"].spec
    loaded = load_surrogate(path, expect_spec=spec, device="cpu")
    assert type(loaded) is type(trained)
    assert (loaded.rows, loaded.cols, loaded.g_off_s, loaded.g_on_s, loaded.v_read_max_v) == (8, 8, spec.g_off_s,
                                                                                          spec.g_on_s, 0.2)
    g, v = inputs(spec)
    assert torch.equal(loaded.bind(g)(v), trained.bind(g)(v))
    assert all(not p.requires_grad for p in loaded.parameters())
    assert not loaded.training
    v.requires_grad_(True)
    loaded.bind(g)(v).sum().backward()  # frozen weights, but gradients still reach the inputs
    assert v.grad is not None and v.grad.abs().sum() > 0
    assert loaded.spec.physics_key() == spec.physics_key()


def test_file_is_self_describing(saved):
    path, model = saved["transfer"]
    with h5py.File(path) as f:
        assert f.attrs["format_version"] == 3 and f.attrs["kind"] == "xbarchar.surrogate"
        assert f.attrs["training_data_sha256"] == file_sha256(saved["data"])
        assert f.attrs["netlist_sha256"] == saved["splits"].spec.netlist_sha256
        assert json.loads(f.attrs["architecture"])["design"] == "transfer"
        assert "feature_mean" in json.loads(f.attrs["normalization"])
        assert json.loads(f.attrs["fidelity"]) == {"note": "test"}
        assert f.attrs["created"] and f.attrs["package_version"]
        assert set(f["weights"]) == set(model.state_dict())
        for name, ds in f["weights"].items():
            assert "units" in ds.attrs, name
        assert f["weights/log_g_driver_n"].attrs["units"] == "ln(S / g_on_s)"
    text = describe(path)
    assert "design: transfer" in text and "MACs per vector after bind: 64" in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rows": 16, "cols": 16}, r"rows 8 in the file != 16 for the circuit; cols 8 in the file != 16"),
        ({"g_on_s": 1e-4}, r"g_on_s 5e-05 in the file != 0.0001"),
        ({"g_off_s": 1e-6}, r"g_off_s 5e-06 in the file != 1e-06"),
        ({"v_read_max_v": 0.3}, r"v_read_max_v 0.2 in the file != 0.3"),
    ],
)
def test_loading_for_another_circuit_is_one_clear_error(saved, change, message):
    path, _ = saved["mlp"]
    other = dataclasses.replace(saved["splits"].spec, name="other", **change)
    with pytest.raises(SurrogateFileError, match=message) as info:
        load_surrogate(path, expect_spec=other)
    assert str(path) in str(info.value) and "circuit 'other'" in str(info.value)


def test_other_resistances_only_warn(saved, caplog):
    path, _ = saved["transfer"]
    other = dataclasses.replace(saved["splits"].spec, r_wire_row_ohm=10.0)
    load_surrogate(path, expect_spec=other)
    assert "r_wire_row_ohm" in caplog.text


def test_unknown_format_version_kind_and_corrupt_files(saved, tmp_path):
    path, _ = saved["transfer"]
    newer = tmp_path / "newer.h5"
    shutil.copy(path, newer)
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = 4
    with pytest.raises(SurrogateFileError, match=r"newer.h5: format_version 4 is not supported \(this xbarchar reads 2, 3\)"):
        load_surrogate(newer)

    with pytest.raises(SurrogateFileError, match=r"r8.h5: expected an HDF5 file of kind 'xbarchar.surrogate', "
                                                 r"found kind 'xbarchar.spice'"):
        load_surrogate(saved["data"])

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(SurrogateFileError, match="garbage.h5: not a readable HDF5 file"):
        load_surrogate(garbage)

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(SurrogateFileError, match="truncated.h5"):
        load_surrogate(truncated)

    missing_weight = tmp_path / "missing.h5"
    shutil.copy(path, missing_weight)
    with h5py.File(missing_weight, "a") as f:
        del f["weights/cell_net.0.weight"]
    with pytest.raises(SurrogateFileError, match=r"missing.h5: content hash mismatch"):
        load_surrogate(missing_weight)
    with h5py.File(missing_weight, "a") as f:  # a forger who also recomputes the record: still incomplete
        seal(f)
    with pytest.raises(SurrogateFileError, match=r"missing.h5: corrupt or incomplete surrogate file \(/weights is missing \[.cell_net.0.weight.\]"):
        load_surrogate(missing_weight)

    with pytest.raises(SurrogateFileError, match="nowhere.h5: file does not exist"):
        load_surrogate(tmp_path / "nowhere.h5")


def test_failed_write_leaves_no_file(saved, tmp_path):
    _, model = saved["transfer"]
    target = tmp_path / "out.h5"
    with pytest.raises(TypeError):
        save_surrogate(target, model, saved["splits"].spec, train_params={"bad": object()}, history={},
                       data_sha256="", data_path="", split={})
    assert not target.exists() and not list(tmp_path.glob(".out.h5*"))
