"""HDF5 files as untrusted input: the integrity record covers attributes and provenance as well as data,
and a file whose content hash matches is still checked for meaning (units, indices, shapes).

Real ngspice, the real writers, then tampering with h5py or raw bytes; the real CLIs answer with one
line and exit code 2 and write nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from spice import ngspice
from spice.circuit import spec_from_config
from spice.io import DatasetFileError, merge_shards, read_dataset, summary, write_dataset
from spice.netlist import ACCURACY_OPTIONS
from spice.sampling import SamplingConfig
from spice.simulate import simulate_shard
from surrogate.contract import file_problems
from surrogate.data import load_splits, split_by_matrices
from surrogate.io import SurrogateFileError, describe, load_surrogate, save_surrogate
from surrogate.train import TrainParams, train
from tests.conftest import CIRCUITS, REPO
from xbarchar.integrity import HASH_ATTR, content_sha256, seal

pytestmark = pytest.mark.spice

CIRCUIT = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 4, "cols": 3, "r_driver_ohm": 100.0,
           "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 100.0}
SAMPLING = {"n_conductance": 6, "n_vectors": 8, "seed": 3, "n_shards": 2}


def write_shard(path: Path, shard: int = 0, circuit: dict | None = None, sampling: dict | None = None,
                **attr_overrides) -> Path:
    """One shard through the real simulator and writer, with the attributes ``python -m spice simulate``
    records (some replaced by ``attr_overrides``, as another machine or version would have written them)."""
    spec = spec_from_config("trust", circuit or CIRCUIT)
    cfg = SamplingConfig.from_dict(sampling or SAMPLING)
    check = ngspice.check_circuit(spec)
    ng = ngspice.info()
    result = simulate_shard(spec, cfg, shard, progress=False, check=check)
    attrs = {"ngspice_version": ng.version, "ngspice_klu": ng.has_klu, "pyspice_version": ng.pyspice_version,
             "ngspice_options": ACCURACY_OPTIONS, "seed": cfg.seed, "sampling": cfg.to_json(), "shard": shard,
             "cell_current_max_a": check.cell_current_max_a,
             "column_current_bound_a": check.column_current_bound_a, **attr_overrides}
    write_dataset(path, spec, result.arrays(), attrs)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A dataset (all matrices in one file), a shard pair, and a surrogate trained on the dataset."""
    base = tmp_path_factory.mktemp("trust")
    whole = write_shard(base / "d.h5", sampling={**SAMPLING, "n_shards": 1})
    splits = load_splits(whole, val_fraction=0.2, test_fraction=0.2)
    result = train(splits, TrainParams(design="mlp", hidden=8, epochs=2, seed=1), progress=False)
    sur = base / "s.h5"
    save_surrogate(sur, result.model, splits.spec, train_params={"epochs": 2}, history=result.history,
                   data_sha256=splits.sha256, data_path=str(whole), split=splits.split_json())
    return {"data": whole, "shard0": write_shard(base / "a.h5", 0), "shard1": write_shard(base / "b.h5", 1),
            "surrogate": sur}


def copy(src: Path, tmp_path: Path, name: str = "bad.h5") -> Path:
    out = tmp_path / name
    shutil.copy(src, out)
    return out


def cli(module: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def assert_one_line_exit_2(result: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def rewrite(f: h5py.File, name: str, data, units: str) -> None:
    """Replace a dataset as a careful forger would: same layout, fresh Fletcher32, units set."""
    del f[name]
    ds = f.create_dataset(name, data=data, fletcher32=True, chunks=True)
    ds.attrs["units"] = units


# ------------------------------------------------------------------ the record is written and covers everything
def test_every_written_file_carries_a_content_hash_that_matches(files, tmp_path):
    for key in ("data", "shard0", "surrogate"):
        with h5py.File(files[key], "r") as f:
            stored = f.attrs[HASH_ATTR]
            assert len(stored) == 64 and stored == content_sha256(f)
    result = cli("spice", "inspect", str(files["data"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "integrity: content hash verified" in result.stdout
    assert "integrity: content hash verified" in describe(files["surrogate"])
    merged = merge_shards([files["shard0"], files["shard1"]], tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs[HASH_ATTR] == content_sha256(f)
    assert merged.attrs["n_shards_merged"] == 2


def flip_inside_attribute(path: Path, old: bytes, new: bytes) -> None:
    """Change bytes where the attribute's text lies in the file (no HDF5 library involved)."""
    raw = path.read_bytes()
    assert raw.count(old) == 1 and len(old) == len(new)
    path.write_bytes(raw.replace(old, new))


def test_a_changed_byte_in_the_circuit_description_is_refused_everywhere(files, tmp_path):
    """The tester's case: Fletcher32 does not cover attributes; the content hash does."""
    bad = copy(files["data"], tmp_path)
    flip_inside_attribute(bad, b'"r_wire_row_ohm": 5.0', b'"r_wire_row_ohm": 9.0')
    with h5py.File(bad, "r") as f:  # the change is real and the file still opens
        assert json.loads(f.attrs["circuit_spec"])["r_wire_row_ohm"] == 9.0
    with pytest.raises(DatasetFileError, match=r"bad.h5: content hash mismatch: the file was changed after it "
                                               r"was written"):
        read_dataset(bad)
    assert_one_line_exit_2(cli("spice", "inspect", str(bad), cwd=tmp_path), "bad.h5", "content hash mismatch")
    out = tmp_path / "s.h5"
    assert_one_line_exit_2(cli("surrogate", "train", "--data", str(bad), "--out", str(out), "--epochs", "1",
                               cwd=tmp_path), "content hash mismatch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]


def _set_attr(key, value):
    def tamper(f):
        f.attrs[key] = value
    return tamper


def _delete_attr(key):
    def tamper(f):
        del f.attrs[key]
    return tamper


def _rewrite(name, transform, units):
    def tamper(f):
        rewrite(f, name, transform(f[name][()]), units)
    return tamper


def _dataset_attr(name, key, value):
    def tamper(f):
        f[name].attrs[key] = value
    return tamper


TAMPERINGS = {
    "provenance attribute": _set_attr("ngspice_version", "45"),
    "solver options": _set_attr("ngspice_options", ".options reltol=1e-2"),
    "seed": _set_attr("seed", 4),
    "an added attribute": _set_attr("note", "harmless?"),
    "a removed attribute": _delete_attr("created"),
    "index rewritten with a fresh fletcher32": _rewrite("g_index", lambda a: np.where(a == 1, -1, a), "1"),
    "currents rewritten": _rewrite("i_a", lambda a: a * 1.001, "A"),
    "same values, other dtype": _rewrite("i_a", lambda a: a.astype(np.float32), "A"),
    "units": _dataset_attr("i_a", "units", "mA"),
    "a dataset attribute added": _dataset_attr("v_v", "scale", 2.0),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_any_change_after_writing_is_a_content_hash_mismatch(files, tmp_path, case):
    bad = copy(files["data"], tmp_path)
    with h5py.File(bad, "a") as f:
        TAMPERINGS[case](f)
    with pytest.raises(DatasetFileError) as info:
        read_dataset(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: content hash mismatch: the file was changed after it was written")
    assert "\n" not in message


def test_a_file_without_the_record_is_refused(files, tmp_path):
    bad = copy(files["data"], tmp_path)
    with h5py.File(bad, "a") as f:
        del f.attrs[HASH_ATTR]
    with pytest.raises(DatasetFileError, match=rf"bad.h5: no integrity record \(root attribute '{HASH_ATTR}'\)"):
        read_dataset(bad)


@pytest.mark.parametrize("kind_path, version, pattern", [
    ("data", 2, r"format_version 2 was written before files carried an integrity record \(content_sha256\); "
                r"this xbarchar reads 4: regenerate the file"),
    ("surrogate", 1, r"format_version 1 was written before files carried an integrity record"),
])
def test_files_from_before_the_record_are_refused_with_the_reason(files, tmp_path, kind_path, version, pattern):
    old = copy(files[kind_path], tmp_path, "old.h5")
    with h5py.File(old, "a") as f:
        f.attrs["format_version"] = version
        del f.attrs[HASH_ATTR]
    with pytest.raises(DatasetFileError, match="old.h5: " + pattern):
        read_dataset(old) if kind_path == "data" else load_surrogate(old)


# ------------------------------------------------------------------ meaning is checked even when the hash matches
def resealed(src: Path, tmp_path: Path, tamper) -> Path:
    """A changed file whose forger also recomputed the content hash: only the meaning can be checked."""
    bad = copy(src, tmp_path)
    with h5py.File(bad, "a") as f:
        tamper(f)
        seal(f)
    return bad


def _spec_rows(rows):
    def tamper(f):
        spec = json.loads(f.attrs["circuit_spec"])
        f.attrs["circuit_spec"] = json.dumps({**spec, "rows": rows}, sort_keys=True)
    return tamper


SEMANTIC = {
    "negative g_index": (_rewrite("g_index", lambda a: np.where(a == 1, -1, a), "1"),
                         r"/g_index holds -1\.\.5, expected rows of /g_s in 0\.\.5"),
    "g_index past the last matrix": (_rewrite("g_index", lambda a: np.where(a == 1, 6, a), "1"),
                                     r"/g_index holds 0\.\.6, expected rows of /g_s in 0\.\.5"),
    "units mA": (_dataset_attr("i_a", "units", "mA"), r"/i_a has units 'mA', expected 'A'"),
    "units on conductances": (_dataset_attr("g_s", "units", "uS"), r"/g_s has units 'uS', expected 'S'"),
    "units missing": (_dataset_attr("v_v", "units", ""), r"/v_v has units '', expected 'V'"),
    "spec rows disagree": (_spec_rows(5), r"the circuit description \(circuit_spec\) says 5x3, /g_s has shape "
                                          r"\(6, 4, 3\)"),
    "currents of another width": (_rewrite("i_a", lambda a: a[:, :2], "A"), r"/i_a has shape \(48, 2\)"),
    "a matrix twice": (_rewrite("g_id", lambda a: np.where(a == 1, 0, a), "1"), r"/g_id must hold distinct"),
    "unknown solver": (_rewrite("solver", lambda a: np.where(a == a[0], b"magic", a), ""), r"/solver holds"),
    "integer currents": (_rewrite("i_a", lambda a: (a * 1e9).astype(np.int64), "A"), r"/i_a has dtype int64"),
    "netlist digest": (_set_attr("netlist_sha256", "0" * 64), r"attribute netlist_sha256 does not match"),
}


@pytest.mark.parametrize("case", sorted(SEMANTIC))
def test_a_resealed_file_is_still_checked_for_meaning(files, tmp_path, case):
    tamper, pattern = SEMANTIC[case]
    bad = resealed(files["data"], tmp_path, tamper)
    with pytest.raises(DatasetFileError, match=pattern) as info:
        read_dataset(bad)
    assert str(info.value).startswith(f"{bad}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("case, command", [
    ("negative g_index", "train"), ("units mA", "inspect"), ("spec rows disagree", "train"),
])
def test_the_clis_refuse_meaningless_files_with_one_line_and_write_nothing(files, tmp_path, case, command):
    tamper, _ = SEMANTIC[case]
    bad = resealed(files["data"], tmp_path, tamper)
    if command == "inspect":
        result = cli("spice", "inspect", str(bad), cwd=tmp_path)
    else:
        result = cli("surrogate", "train", "--data", str(bad), "--out", str(tmp_path / "s.h5"), "--epochs", "1",
                     cwd=tmp_path)
    assert_one_line_exit_2(result, "bad.h5", "regenerate it" if case != "units mA" else "expected 'A'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]


def test_split_indices_must_be_rows_and_disjoint(files):
    ds = read_dataset(files["data"])
    with pytest.raises(DatasetFileError, match=r"matrix 2 is in both the train and the test split"):
        split_by_matrices(ds, np.array([0, 1, 2]), np.array([3]), np.array([2, 4]))
    with pytest.raises(DatasetFileError, match=r"train split names matrix -1, expected rows of /g_s in 0\.\.5"):
        split_by_matrices(ds, np.array([-1, 0]), np.array([3]), np.array([4]))
    with pytest.raises(DatasetFileError, match=r"val split names matrix 6"):
        split_by_matrices(ds, np.array([0]), np.array([6]), np.array([4]))
    ok = split_by_matrices(ds, np.array([0, 1, 2]), np.array([3]), np.array([4, 5]))
    assert ok.train.n_matrices == 3 and ok.test.n_matrices == 2


# ------------------------------------------------------------------ surrogate files
def _weights_units(f):
    name = sorted(f["weights"])[0]
    f["weights"][name].attrs["units"] = "mA"


def _split_overlap(f):
    split = json.loads(f.attrs["split"])
    split["test_g_rows"] = split["test_g_rows"] + split["train_g_rows"][:1]
    f.attrs["split"] = json.dumps(split, sort_keys=True)


def _split_negative(f):
    split = json.loads(f.attrs["split"])
    split["val_g_rows"] = [-1]
    f.attrs["split"] = json.dumps(split, sort_keys=True)


SURROGATE_SEMANTIC = {
    "weight units": (_weights_units, r"/weights/\S+ has units 'mA', expected '1'"),
    "tile vs circuit": (_spec_rows(5), r"the architecture's tile contradicts the stored circuit \(circuit_spec\): "
                                       r"rows 4 in the file != 5"),
    "overlapping split": (_split_overlap, r"split record puts row \d+ of /g_s in both train and test"),
    "negative split row": (_split_negative, r"split record val_g_rows must list non-negative rows"),
}


@pytest.mark.parametrize("case", sorted(SURROGATE_SEMANTIC))
def test_a_resealed_surrogate_is_still_checked_for_meaning(files, tmp_path, case):
    tamper, pattern = SURROGATE_SEMANTIC[case]
    bad = resealed(files["surrogate"], tmp_path, tamper)
    with pytest.raises(SurrogateFileError, match=pattern) as info:
        load_surrogate(bad)
    assert str(info.value).startswith(f"{bad}: ")


def test_a_changed_surrogate_is_refused_by_load_inspect_and_the_config_check(files, tmp_path):
    bad = copy(files["surrogate"], tmp_path)
    with h5py.File(bad, "a") as f:
        arch = json.loads(f.attrs["architecture"])
        arch["tile"]["r_wire_row_ohm"] = 50.0
        f.attrs["architecture"] = json.dumps(arch, sort_keys=True)
    with pytest.raises(SurrogateFileError, match=r"bad.h5: content hash mismatch"):
        load_surrogate(bad)
    spec = read_dataset(files["data"]).spec
    assert "bad.h5: content hash mismatch" in file_problems(bad, spec)
    assert file_problems(files["surrogate"], spec) == ""
    assert_one_line_exit_2(cli("surrogate", "inspect", str(bad), cwd=tmp_path), "bad.h5", "content hash mismatch")


# ------------------------------------------------------------------ merge refuses shards of different provenance
@pytest.mark.parametrize("key, value", [
    ("package_version", "0.0.1"),
    ("ngspice_version", "45"),
    ("pyspice_version", "1.4.0"),
    ("ngspice_klu", False),
    ("ngspice_options", ".options reltol=1e-3 abstol=1e-12"),
    ("column_current_bound_a", 1.0),
])
def test_merge_refuses_shards_whose_provenance_differs(files, tmp_path, key, value):
    other = write_shard(tmp_path / "other.h5", 1, **{key: value})
    out = tmp_path / "m.h5"
    with pytest.raises(DatasetFileError, match=rf"other.h5: provenance differs from .*a.h5: {key} "
                                               rf"{value!r} here, .* there; shards made with different settings"):
        merge_shards([files["shard0"], other], out)
    assert not out.exists()


@pytest.mark.parametrize("what, circuit, sampling", [
    ("circuit_spec", {**CIRCUIT, "r_wire_row_ohm": 6.0}, SAMPLING),
    ("sampling", CIRCUIT, {**SAMPLING, "v_zero_fraction": 0.25}),
    ("seed", CIRCUIT, {**SAMPLING, "seed": 4}),
])
def test_merge_refuses_shards_of_another_circuit_or_sampler(files, tmp_path, what, circuit, sampling):
    other = write_shard(tmp_path / "other.h5", 1, circuit=circuit, sampling=sampling)
    with pytest.raises(DatasetFileError, match=rf"provenance differs from .*a.h5: .*\b{what} "):
        merge_shards([files["shard0"], other], tmp_path / "m.h5")
    result = cli("spice", "merge", str(files["shard0"]), str(other), "--out", str(tmp_path / "m.h5"), cwd=tmp_path)
    assert_one_line_exit_2(result, "provenance differs", what)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.h5"]


def test_merge_records_the_shards_common_provenance(files, tmp_path):
    merged = merge_shards([files["shard0"], files["shard1"]], tmp_path / "m.h5")
    shard = read_dataset(files["shard0"])
    for key in ("package_version", "ngspice_version", "pyspice_version", "ngspice_options", "sampling", "seed"):
        assert merged.attrs[key] == shard.attrs[key], key
    assert "shard" not in merged.attrs
    whole = read_dataset(files["data"])
    np.testing.assert_array_equal(merged.g_s, whole.g_s)
    np.testing.assert_array_equal(merged.g_index, whole.g_index)
    assert "content hash verified" in summary(tmp_path / "m.h5")
