"""Integrity: impossible simulator output is never a valid sample, files carry checksums, no command
replaces its inputs, and every CLI answers bad input with one line and exit code 2.

Real ngspice, real HDF5 files; the passive bound is checked against hand calculations.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dnn.cli import main as dnn_main
from spice import ngspice
from spice.circuit import CircuitError, spec_from_config
from spice.cli import main as spice_main
from spice.io import DatasetFileError, read_dataset, summary, write_dataset
from spice.sampling import SamplingConfig
from spice.simulate import simulate_shard
from surrogate.cli import main as surrogate_main
from surrogate.io import SurrogateFileError, load_surrogate
from tests.conftest import CIRCUITS, REPO, assert_cli_error

pytestmark = pytest.mark.spice

CIRCUIT = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 4, "cols": 3, "r_driver_ohm": 100.0,
           "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 100.0}
EXPLODING_CELL = """* I = g/40 (exp(400 V) - 1): 7e28 A at 0.2 V, the cell of the report
.subckt cell row col params: g=1e-5
B1 row col I={g/40*(exp(400*V(row,col))-1)}
.ends cell
"""


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    before = torch.get_num_threads()  # the surrogate CLI sets --threads process-wide
    yield
    torch.set_num_threads(before)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def simulate(out: Path, circuit=CIRCUIT, n_conductance=6, n_vectors=16, seed=1, shards=1, shard=0) -> Path:
    rc = spice_main(["simulate", "--circuit-name", "r", "--circuit", json.dumps(circuit), "--sampling",
                     json.dumps({"n_conductance": n_conductance, "n_vectors": n_vectors, "seed": seed,
                                 "n_shards": shards}), "--shard", str(shard), "--out", str(out), "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return simulate(tmp_path_factory.mktemp("integrity") / "r.h5")


@pytest.fixture(scope="module")
def surrogate_file(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sur") / "s.h5"
    assert surrogate_main(["train", "--data", str(dataset), "--out", str(out), "--epochs", "4", "--quiet"]) == 0
    return out


# ------------------------------------------------------------------ physical plausibility
def test_passive_bound_is_the_cell_envelope_times_rows(make_spec):
    """A resistor passes at most g_on * span; a sinh cell g/b sinh(b span) (hand calculation)."""
    spec = make_spec(rows=4, cols=3)
    check = ngspice.check_circuit(spec)
    assert check.cell_current_max_a == pytest.approx(spec.g_on_s * spec.v_read_max_v, rel=1e-6)
    assert check.column_current_bound_a == pytest.approx(4 * 1.01 * spec.g_on_s * spec.v_read_max_v, rel=1e-6)
    sinh = make_spec(rows=4, cols=3, netlist=str(CIRCUITS / "memristor_sinh.cir"), v_read_max_v=0.5,
                     v_read_min_v=-0.5)
    # terminal voltages span [-0.5, 0.5] V: up to 1 V across the cell
    expected = sinh.g_on_s / 5 * math.sinh(5 * 1.0)
    assert ngspice.check_circuit(sinh).cell_current_max_a == pytest.approx(expected, rel=1e-6)


def test_a_runaway_cell_is_refused_before_any_sample(tmp_path, capsys):
    """The report's case: an exponential cell that ngspice 'solved' to 4e96 A. Nothing is written."""
    path = tmp_path / "exp.cir"
    path.write_text(EXPLODING_CELL)
    circuit = {"netlist": str(path), "rows": 8, "cols": 8, "r_driver_ohm": 0, "r_wire_row_ohm": 0,
               "r_wire_col_ohm": 0, "r_sense_ohm": 0}
    line = assert_cli_error(capsys, spice_main, ["simulate", "--circuit", json.dumps(circuit), "--out",
                                                 str(tmp_path / "d.h5"), "--quiet"],
                            "not a physically possible crossbar cell")
    assert str(path) in line
    assert list(tmp_path.iterdir()) == [path]


def test_implausible_samples_are_failed_with_their_reason(make_spec, tmp_path):
    spec = make_spec(rows=4, cols=3)
    real = ngspice.check_circuit(spec)
    cfg = SamplingConfig.from_dict({"n_conductance": 2, "n_vectors": 5, "seed": 2})
    honest = simulate_shard(spec, cfg, 0, progress=False, check=real)
    assert not honest.failed.any() and set(honest.failure_reason.tolist()) == {b""}
    # a bound below the real currents: every sample must be refused, with the number in the reason
    strict = ngspice.CircuitCheck(cell_current_max_a=real.cell_current_max_a, column_current_bound_a=1e-9)
    result = simulate_shard(spec, cfg, 0, progress=False, check=strict)
    assert result.failed.all() and np.isnan(result.i_a).all()
    assert all(r.startswith(b"implausible: |I| ") and b"exceeds the passive bound 1.000e-09 A" in r
               for r in result.failure_reason)
    arrays = {k: getattr(result, k) for k in ("g_s", "g_id", "solver", "transfer_a_per_v", "g_index", "v_v",
                                              "i_a", "i_ideal_a", "p_w", "p_parts_w", "failed", "failure_reason")}
    write_dataset(tmp_path / "bad.h5", spec, arrays, {"seed": 2})
    ds = read_dataset(tmp_path / "bad.h5")
    np.testing.assert_array_equal(ds.failure_reason, result.failure_reason)
    assert "failed: 10 (10 implausible)" in summary(tmp_path / "bad.h5")
    # and the surrogate stage has nothing to learn from: one line, exit 2, no file
    rc = surrogate_main(["train", "--data", str(tmp_path / "bad.h5"), "--out", str(tmp_path / "s.h5"), "--quiet"])
    assert rc == 2 and not (tmp_path / "s.h5").exists()


def test_non_finite_and_oversized_currents_are_named():
    check = ngspice.CircuitCheck(cell_current_max_a=1e-5, column_current_bound_a=1e-4)
    reasons = ngspice.implausible_samples(np.array([[1e-5, 2e-5], [np.nan, 0.0], [np.inf, 1.0], [2e-4, 0.0]]),
                                          check)
    assert reasons[0] == "" and reasons[1] == reasons[2] == "non-finite column current"
    assert reasons[3].startswith("implausible: |I| 2.000e-04 A exceeds")


def test_training_that_diverges_writes_nothing(dataset, tmp_path, capsys):
    """Finite but absurd currents (not marked failed) make the loss overflow: exit 2, no surrogate."""
    bad = tmp_path / "huge.h5"
    shutil.copy(dataset, bad)
    ds = read_dataset(dataset)
    arrays = {k: getattr(ds, k) for k in ("g_s", "g_id", "solver", "transfer_a_per_v", "g_index", "v_v",
                                          "i_ideal_a", "p_w", "p_parts_w", "failed", "failure_reason")}
    write_dataset(bad, ds.spec, {**arrays, "i_a": ds.i_a * 1e305}, {"seed": 1})
    out = tmp_path / "s.h5"
    assert_cli_error(capsys, surrogate_main, ["train", "--data", str(bad), "--out", str(out), "--design", "mlp",
                                              "--epochs", "3", "--quiet"], "(became|is) (nan|inf).*no surrogate written")
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


@pytest.mark.parametrize("design", [["--design", "mlp"], ["--design", "auto", "--candidates", "mlp"]])
def test_training_whose_validation_error_never_falls_writes_nothing(dataset, tmp_path, capsys, design):
    """A learning rate too small to move the weights: the kept weights would be the untrained ones, a
    surrogate that only looks trained. Exit 2, one line saying what to change, no file. (The transfer design's
    physics prior is already within 1e-6 of full scale on this linear array: nothing to learn, no error.)"""
    out = tmp_path / "s.h5"
    assert_cli_error(capsys, surrogate_main, ["train", "--data", str(dataset), "--out", str(out), *design,
                                              "--epochs", "2", "--lr", "1e-12", "--quiet"],
                     r"validation error never fell below its initial .*: the training error did not fall either "
                     r".*: raise surrogate.epochs or change surrogate.lr; no surrogate written")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unmarked_non_finite_samples_are_an_inconsistent_file(dataset, tmp_path, capsys):
    ds = read_dataset(dataset)
    arrays = {k: getattr(ds, k) for k in ("g_s", "g_id", "solver", "transfer_a_per_v", "g_index", "v_v",
                                          "i_ideal_a", "p_w", "p_parts_w", "failed", "failure_reason")}
    i_a = ds.i_a.copy()
    i_a[3, 1] = np.nan  # but /failed says the sample is fine
    write_dataset(tmp_path / "nan.h5", ds.spec, {**arrays, "i_a": i_a}, {"seed": 1})
    assert_cli_error(capsys, surrogate_main, ["train", "--data", str(tmp_path / "nan.h5"), "--out",
                                              str(tmp_path / "s.h5"), "--quiet"],
                     "1 samples hold non-finite numbers without being marked in /failed")


# ------------------------------------------------------------------ ngspice's own errors
def test_ngspice_error_names_the_users_line_and_keeps_its_reason(tmp_path):
    path = tmp_path / "typo.cir"
    path.write_text("* a typo in the cell's parameter\n*\n.subckt cell row col params: g=1e-5\n\n"
                    "R1 row col {1/gg}\n.ends cell\n")
    spec = spec_from_config("t", {"netlist": str(path), "rows": 2, "cols": 2})
    with pytest.raises(CircuitError) as info:
        ngspice.check_circuit(spec)
    assert str(info.value).startswith(f"circuit file {path}, line 5: ngspice: ")
    assert "Undefined parameter [gg]" in str(info.value)


def test_a_fatal_ngspice_error_leaves_this_process_able_to_simulate(tmp_path, make_spec):
    """ngspice says it 'cannot recover' after such errors; the check runs in a child, so the library
    of this process is untouched."""
    path = tmp_path / "bad.cir"
    path.write_text(".subckt cell row col params: g=1e-5\nR1 row col {1/g} badparam=3\nQ1 row col\n.ends cell\n")
    with pytest.raises(CircuitError, match="circuit file .*bad.cir"):
        ngspice.check_circuit(spec_from_config("b", {"netlist": str(path), "rows": 2, "cols": 2}))
    spec = make_spec(rows=2, cols=2, r_driver_ohm=0.0, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0, r_sense_ohm=0.0)
    g = np.full((2, 2), 1e-5)
    i_a, failed = ngspice.solve(spec, g, np.array([[0.1, 0.2]]))
    np.testing.assert_allclose(i_a, [[3e-6, 3e-6]], rtol=1e-9)


# ------------------------------------------------------------------ checksums
def flip_byte(path: Path, dataset_name: str) -> None:
    with h5py.File(path, "r") as f:
        info = f[dataset_name].id.get_chunk_info(0)
        offset = info.byte_offset + info.size // 2
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x10]))


def test_every_dataset_carries_a_checksum_and_inspect_verifies_it(dataset, surrogate_file, capsys):
    with h5py.File(dataset) as f:
        assert all(f[k].fletcher32 for k in f)
    assert spice_main(["inspect", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "checksums: fletcher32 on 12 of 12 datasets, all verified" in out
    assert "integrity: content hash verified" in out
    with h5py.File(surrogate_file) as f:
        weights = list(f["weights"].values())
        assert weights and all(ds.fletcher32 for ds in weights)
    assert surrogate_main(["inspect", str(surrogate_file)]) == 0
    out = capsys.readouterr().out
    assert f"fletcher32 on {len(weights)} of {len(weights)} datasets, all verified" in out
    assert "integrity: content hash verified" in out


def test_a_flipped_byte_is_an_error_not_a_number(dataset, surrogate_file, tmp_path, capsys):
    bad = tmp_path / "flipped.h5"
    shutil.copy(dataset, bad)
    flip_byte(bad, "i_a")
    with pytest.raises(DatasetFileError, match="dataset /i_a is corrupt"):
        read_dataset(bad)
    assert_cli_error(capsys, spice_main, ["inspect", str(bad)], "flipped.h5: dataset /i_a is corrupt")
    assert_cli_error(capsys, surrogate_main, ["train", "--data", str(bad), "--out", str(tmp_path / "s.h5"),
                                              "--quiet"], "dataset /i_a is corrupt")
    assert not (tmp_path / "s.h5").exists()
    sur = tmp_path / "sur.h5"
    shutil.copy(surrogate_file, sur)
    with h5py.File(sur) as f:
        name = max(f["weights"], key=lambda k: f["weights"][k].size)
    flip_byte(sur, f"weights/{name}")
    with pytest.raises(SurrogateFileError, match=f"dataset /weights/{name} is corrupt"):
        load_surrogate(sur)


# ------------------------------------------------------------------ outputs never replace inputs
def test_an_output_equal_to_an_input_is_refused_and_the_input_kept(dataset, surrogate_file, tmp_path, capsys):
    before = sha256(dataset)
    assert_cli_error(capsys, surrogate_main, ["train", "--data", str(dataset), "--out", str(dataset)],
                     "--out .* is the same file as the input --data")
    link = tmp_path / "link.h5"
    link.symlink_to(dataset)
    assert_cli_error(capsys, surrogate_main, ["fidelity", "--surrogate", str(surrogate_file), "--data",
                                              str(dataset), "--json", str(link)], "same file as the input --data")
    assert_cli_error(capsys, spice_main, ["merge", str(dataset), "--out", str(dataset)],
                     "same file as the input shard")
    assert_cli_error(capsys, dnn_main, ["report", str(dataset), "--md", str(dataset), "--csv", "x.csv",
                                        "--plot", "x.png"], "--md .* is the same file as the input")
    assert sha256(dataset) == before


def test_merge_refuses_a_shard_twice_and_overlapping_shards(tmp_path, capsys):
    a = simulate(tmp_path / "a.h5", shards=2, shard=0)
    b = simulate(tmp_path / "b.h5", shards=2, shard=1)
    again = simulate(tmp_path / "again.h5", shards=2, shard=0)  # the same matrices under another name
    out = tmp_path / "m.h5"
    assert_cli_error(capsys, spice_main, ["merge", str(a), str(a), "--out", str(out)], "given twice")
    assert_cli_error(capsys, spice_main, ["merge", str(a), str(b), str(again), "--out", str(out)],
                     "g_id 0 is also in .*a.h5; shards must not overlap")
    other = simulate(tmp_path / "other.h5", seed=9, shards=2, shard=1)
    assert_cli_error(capsys, spice_main, ["merge", str(a), str(other), "--out", str(out)],
                     "provenance differs from .*a.h5: .*sampling")
    assert not out.exists()
    assert spice_main(["merge", str(a), str(b), "--out", str(out)]) == 0
    assert sorted(read_dataset(out).g_id.tolist()) == list(range(6))


# ------------------------------------------------------------------ one CLI convention
@pytest.mark.parametrize("module, argv", [
    ("spice", ["inspect", "missing.h5"]),
    ("surrogate", ["inspect", "missing.h5"]),
    ("dnn", ["evaluate", "--model", "missing.pt", "--out", "e.json"]),
])
def test_every_cli_answers_bad_input_with_one_line_and_exit_2(module, argv, tmp_path):
    def run(*extra):  # common options follow the subcommand
        return subprocess.run([sys.executable, "-m", module, *argv[:1], *extra, *argv[1:]], capture_output=True,
                              text=True,
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)

    plain = run()
    assert plain.returncode == 2, plain.stderr
    lines = [line for line in plain.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing." in lines[0], plain.stderr
    debug = run("--debug")
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr


# ------------------------------------------------------------------ a full disk
@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root only); skipped with a message where mounting is not allowed."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_gives_one_line_and_keeps_earlier_results(tiny_disk, dataset):
    earlier = tiny_disk / "earlier.h5"
    shutil.copy(dataset, earlier)
    before = sha256(earlier)
    (tiny_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 2 * earlier.stat().st_size - 64 * 1024))
    out = tiny_disk / "big.h5"
    big = {**CIRCUIT, "rows": 16, "cols": 16}
    result = subprocess.run(
        [sys.executable, "-m", "spice", "simulate", "--circuit", json.dumps(big), "--sampling",
         json.dumps({"n_conductance": 8, "n_vectors": 256, "seed": 0}), "--out", str(out), "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert lines == [f"error: {out}: cannot write (No space left on device); nothing was written there"]
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["earlier.h5", "filler"]  # no temporary file
    assert sha256(earlier) == before


def test_a_loss_that_blows_up_during_training_writes_nothing(dataset, tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert_cli_error(capsys, surrogate_main, ["train", "--data", str(dataset), "--out", str(out), "--design", "mlp",
                                              "--lr", "1e30", "--epochs", "6", "--quiet"],
                     r"became (nan|inf) at epoch \d+; no surrogate written")
    assert not out.exists()
