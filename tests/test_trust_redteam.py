"""Hostile inputs in spellings, positions and combinations the other trust tests do not try.

One group per class of docs/security.md: circuit files, configs, command-line arguments, links at
output names, HDF5 integrity and meaning, merge provenance, CIFAR-10 batches, tile banks and model
files. Each case asserts the documented answer: refused with one line naming the file or key (exit
code 2 through the real command line), nothing written, no payload run, memory bounded.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from dnn.datasets import DatasetFileError as CifarFileError
from dnn.datasets import read_cifar_batch
from pipeline.config import ConfigError, validate_config
from spice.circuit import CircuitError, spec_from_config
from spice.io import DatasetFileError, merge_shards, read_dataset
from spice.tilebank import load_tile_bank
from tests.conftest import REPO
from xbarchar.integrity import seal
from xbarchar.yamlsafe import ConfigTreeError, load_config_file

TEST_CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
HEAD = ".subckt cell row col params: g=1e-5\n"
CELL = HEAD + "R1 row col {1/g}\n.ends cell\n"
ENTRY = {"rows": 2, "cols": 2, "r_driver_ohm": 100.0, "r_sense_ohm": 100.0}
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def run(*argv: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd, env=ENV,
                          timeout=timeout)


def one_line_exit_2(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ================================================================== circuit files
def circuit_refused(tmp_path: Path, text: str, line: int | None) -> str:
    path = tmp_path / "user.cir"
    path.write_bytes(text.encode())
    with pytest.raises(CircuitError) as info:
        spec_from_config("u", {"netlist": str(path), **ENTRY})
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    if line is not None:
        assert f", line {line}:" in message, message
    return message


@pytest.mark.parametrize("text, line", [
    pytest.param(".subckt cell row col\n+ params: g=1e-5\n+ Pwl=1\nR1 row col {1/g}\n.ends cell\n", 1,
                 id="reserved-on-second-params-continuation"),
    pytest.param(".param\tk=1,\t\tSqRt =2\n" + CELL, 1, id="tabs-comma-and-space-before-equals"),
    pytest.param(HEAD + "R1 row col {1/g}\n.param a={1}hertz=2\n.ends cell\n", 3, id="glued-after-brace"),
    pytest.param(".func\n+\n+ TEMPER\n+ (x) {x}\n" + CELL, 1, id="func-name-after-an-empty-continuation"),
])
def test_a_reserved_name_in_an_unusual_spelling_is_refused(tmp_path, text, line):
    assert "may not define" in circuit_refused(tmp_path, text, line)


@pytest.mark.parametrize("text, line", [
    pytest.param(".func p\u0440wl(a) {0}\n" + CELL, 1, id="cyrillic-er-in-pwl"),
    pytest.param("\ufeff" + CELL, 1, id="utf8-byte-order-mark"),
    pytest.param(CELL.replace("\n", "\r", 1), 1, id="bare-carriage-return"),
    pytest.param(HEAD + "R1 row col {1/g}\x0b\n.ends cell\n", 2, id="vertical-tab"),
])
def test_look_alike_letters_and_odd_line_ends_are_refused_without_echo(tmp_path, text, line):
    message = circuit_refused(tmp_path, text, line)
    assert "is not allowed" in message and "{1/g}" not in message and "wl(a)" not in message


@pytest.mark.parametrize("kind", ["dev-zero-link", "fifo", "directory"])
def test_a_circuit_file_that_is_no_regular_file_is_refused_by_the_cli(tmp_path, kind):
    path = tmp_path / "cell.cir"
    if kind == "dev-zero-link":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)  # no writer: opening it to read would block for ever
    else:
        path.mkdir()
    proc = run("-m", "spice", "check", "--circuit", json.dumps({"netlist": str(path), **ENTRY}), cwd=tmp_path,
               timeout=60)
    one_line_exit_2(proc, str(path))


# ================================================================== configs
def test_a_float_row_count_is_refused_by_the_dry_run(tmp_path):
    config = tmp_path / "bad.yaml"
    text = yaml.safe_dump({**TEST_CONFIG, "circuits": {"tiny": {**TEST_CONFIG["circuits"]["tiny"], "rows": 7}}})
    config.write_text(text.replace("rows: 7", "rows: 1.0e+3"))
    assert yaml.safe_load(config.read_text())["circuits"]["tiny"]["rows"] == 1000.0
    proc = run("-m", "snakemake", "-n", "--replace-workflow-config", "--configfile", str(config), cwd=REPO,
               timeout=240)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("config error: ")]
    assert len(lines) == 1 and "circuits.tiny" in lines[0] and "rows must be an integer" in lines[0], lines
    assert not (REPO / "results" / "marker").exists()


@pytest.mark.parametrize("key, value", [
    ("n_vectors", "12"), ("n_conductance", "0x10"), ("seed", 1.5), ("n_shards", [2]),
])
def test_a_sampling_count_of_another_type_is_refused_naming_the_key(key, value):
    config = json.loads(json.dumps(TEST_CONFIG))
    config["circuits"]["tiny"]["sampling"][key] = value
    with pytest.raises(ConfigError, match=rf"circuits\.tiny\.sampling\.{key}"):
        validate_config(config)


def test_one_mapping_anchor_reused_under_many_scenarios_is_refused(tmp_path):
    body = "{" + ", ".join(f"k{i}: {i}" for i in range(600)) + "}"
    text = f"base: &m {body}\nscenarios:\n" + "".join(f"  s{i}: *m\n" for i in range(200))
    path = tmp_path / "scen.yaml"
    path.write_text(text)
    with pytest.raises(ConfigTreeError, match=r"scen\.yaml: config(\.scenarios)? expands to more than 100000"):
        load_config_file(path)


@pytest.mark.parametrize("text", [
    "%TAG !p! tag:yaml.org,2002:python/\n---\nresults_dir: !p!object/apply:os.system ['touch {m}']\n",
    "results_dir: !<tag:yaml.org,2002:python/object/apply:os.system> ['touch {m}']\n",
    "results_dir: !!python/object/new:subprocess.Popen [['touch', '{m}']]\n",
], ids=["tag-directive", "verbatim-tag", "object-new"])
def test_python_tags_in_other_spellings_run_nothing(tmp_path, text):
    marker = tmp_path / "marker"
    path = tmp_path / "tag.yaml"
    path.write_text(text.replace("{m}", str(marker)))
    with pytest.raises(ConfigTreeError, match=r"tag\.yaml(, line \d+)?: not valid YAML"):
        load_config_file(path)
    assert not marker.exists()


# ================================================================== command-line arguments
@pytest.mark.parametrize("argv, fragment", [
    (["--lr", "1e999"], "--lr"),
    (["--lr", "-nan"], "--lr"),
    (["--params-json", '{"lr": NaN}'], "lr"),
    (["--params-json", '{"weight_decay": 1e400}'], "weight_decay"),
], ids=["lr-overflow", "lr-negative-nan", "json-nan-literal", "json-overflowing-count"])
def test_non_finite_numbers_in_other_spellings_are_refused(tmp_path, argv, fragment):
    out = tmp_path / "m.pt"
    proc = run("-m", "dnn", "train", "-q", "--dataset", "digits", "--model", "bn_cnn", "--epochs", "1", "--out", str(out), *argv,
               cwd=tmp_path, timeout=120)
    one_line_exit_2(proc, fragment)
    assert not out.exists()


def test_an_integer_beyond_every_word_size_is_refused(tmp_path):
    out = tmp_path / "m.pt"
    proc = run("-m", "dnn", "train", "-q", "--dataset", "digits", "--model", "bn_cnn", "--epochs", "1", "--n-train", "64",
               "--seed", str(10**30), "--out", str(out), cwd=tmp_path, timeout=120)
    one_line_exit_2(proc, str(10**30))
    assert not out.exists()


# ================================================================== links at output names
def test_a_dangling_link_at_the_destination_is_replaced_not_followed(tmp_path):
    from xbarchar.files import atomic_write_bytes

    aim = tmp_path / "elsewhere" / "created-through-link"
    aim.parent.mkdir()
    target = tmp_path / "out.json"
    target.symlink_to(aim)
    atomic_write_bytes(target, b"{}\n")
    assert not aim.exists() and not target.is_symlink() and target.read_bytes() == b"{}\n"


def test_a_hard_link_at_the_destination_leaves_the_other_name_intact(tmp_path):
    from xbarchar.files import atomic_write_text

    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    target = tmp_path / "out.txt"
    os.link(victim, target)
    atomic_write_text(target, "new\n")
    assert victim.read_text() == "keep\n" and target.read_text() == "new\n"


# ================================================================== HDF5 files and merge
@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    from tests.test_trust_hdf5 import write_shard

    base = tmp_path_factory.mktemp("redteam")
    return {"a": write_shard(base / "a.h5", 0), "b": write_shard(base / "b.h5", 1)}


def tampered(src: Path, tmp_path: Path, tamper, reseal: bool, name: str = "bad.h5") -> Path:
    out = tmp_path / name
    shutil.copy(src, out)
    with h5py.File(out, "a") as f:
        tamper(f)
        if reseal:
            seal(f)
    return out


def _seed_as_int32(f):
    f.attrs["seed"] = np.int32(int(f.attrs["seed"]))


def _units_as_bytes(f):
    f["i_a"].attrs["units"] = np.bytes_(b"A")


def _format_as_float(f):
    f.attrs["format_version"] = float(f.attrs["format_version"])


@pytest.mark.spice
@pytest.mark.parametrize("tamper", [_seed_as_int32, _units_as_bytes, _format_as_float],
                         ids=["seed-int32", "units-bytes", "format-version-float"])
def test_an_equal_looking_value_of_another_type_is_a_hash_mismatch(shards, tmp_path, tamper):
    bad = tampered(shards["a"], tmp_path, tamper, reseal=False)
    with pytest.raises(DatasetFileError, match=r"content hash mismatch|format_version") as info:
        read_dataset(bad)
    assert str(info.value).startswith(f"{bad}: ") and "\n" not in str(info.value)


def _g_index_float(f):
    data = f["g_index"][()].astype(np.float64)
    del f["g_index"]
    ds = f.create_dataset("g_index", data=data, fletcher32=True, chunks=True)
    ds.attrs["units"] = "1"


@pytest.mark.spice
@pytest.mark.parametrize("tamper, pattern", [(_g_index_float, "g_index")], ids=["g_index-as-float"])
def test_a_resealed_file_with_a_quietly_wrong_dataset_is_refused(shards, tmp_path, tamper, pattern):
    bad = tampered(shards["a"], tmp_path, tamper, reseal=True)
    with pytest.raises(DatasetFileError, match=pattern) as info:
        read_dataset(bad)
    assert str(info.value).startswith(f"{bad}: ")


@pytest.mark.spice
def test_inspect_of_a_link_to_a_device_is_one_line(tmp_path):
    link = tmp_path / "zero.h5"
    link.symlink_to("/dev/zero")
    one_line_exit_2(run("-m", "spice", "inspect", str(link), cwd=tmp_path, timeout=60), "zero.h5")


def _drop_pyspice(f):
    del f.attrs["pyspice_version"]


def _options_trailing_space(f):
    f.attrs["ngspice_options"] = str(f.attrs["ngspice_options"]) + " "


@pytest.mark.spice
@pytest.mark.parametrize("tamper, key", [(_drop_pyspice, "pyspice_version"),
                                         (_options_trailing_space, "ngspice_options")],
                         ids=["attribute-missing-in-one-shard", "whitespace-only-difference"])
def test_merge_refuses_a_resealed_provenance_difference(shards, tmp_path, tamper, key):
    other = tampered(shards["b"], tmp_path, tamper, reseal=True, name="other.h5")
    out = tmp_path / "m.h5"
    with pytest.raises(DatasetFileError, match=rf"provenance differs.*{key}"):
        merge_shards([shards["a"], other], out)
    assert not out.exists()


@pytest.mark.spice
def test_merge_refuses_one_shard_under_a_second_name(shards, tmp_path):
    alias = tmp_path / "alias.h5"
    alias.symlink_to(shards["a"])
    out = tmp_path / "m.h5"
    proc = run("-m", "spice", "merge", str(shards["a"]), str(alias), str(shards["b"]), "--out", str(out),
               cwd=tmp_path)
    one_line_exit_2(proc, "twice")
    assert not out.exists()


@pytest.mark.spice
def test_merge_output_through_a_link_leaves_its_target_alone(shards, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    out = tmp_path / "m.h5"
    out.symlink_to(victim)
    proc = run("-m", "spice", "merge", str(shards["a"]), str(shards["b"]), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "keep\n" and not out.is_symlink()
    assert read_dataset(out).g_s.shape[0] == 6


# ================================================================== CIFAR-10 batches
class Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _batch(data) -> dict:
    return {b"batch_label": b"x", b"labels": [1], b"data": data, b"filenames": [b"a.png"]}


def test_os_system_nested_in_a_dtype_never_runs(tmp_path):
    marker = tmp_path / "marker"
    proof = tmp_path / "proof"
    evil = Call(np.ndarray, (1, 3072), Call(np.dtype, Call(os.system, f"touch {proof}")))
    with pytest.raises(TypeError):  # plain pickle runs the nested call before numpy rejects its result
        pickle.loads(pickle.dumps(evil, protocol=2))
    assert proof.exists()
    evil = Call(np.ndarray, (1, 3072), Call(np.dtype, Call(os.system, f"touch {marker}")))
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(_batch(evil), protocol=2))
    with pytest.raises(CifarFileError, match="refused global") as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("raw", [
    b"\x80\x05\x97.",  # protocol 5: NEXT_BUFFER, an out-of-band buffer the loader never supplies
    b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b"\0" * 16 + b".",  # BYTEARRAY8 claiming 1 TiB
    b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"\0" * 16 + b".",  # BINBYTES8 claiming 1 TiB
    b"\x80\x02]q\x00(" + b"K\x01" * 10 + b"e" + b"h\x00" * 50_000 + b".",  # memo refs: many views of one list
], ids=["next-buffer", "bytearray8-1TiB", "binbytes8-1TiB", "memo-fanout"])
def test_protocol_tricks_are_refused_with_memory_bounded(tmp_path, raw):
    path = tmp_path / "batch"
    path.write_bytes(raw)
    tracemalloc.start()
    try:
        with pytest.raises(CifarFileError) as info:
            read_cifar_batch(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert peak < 80 * 2**20  # the 64 MiB read bound, never the size the opcode claims


def test_array_state_claiming_a_huge_shape_is_refused(tmp_path):
    """A pickled ndarray whose BUILD state names 10^12 bytes but carries 16."""
    good = pickle.dumps(_batch(np.zeros((1, 3072), np.uint8)), protocol=2)
    raw = good.replace(b"K\x01M\x00\x0c\x86", b"\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x86", 1)
    assert raw != good
    path = tmp_path / "batch"
    path.write_bytes(raw)
    tracemalloc.start()
    try:
        with pytest.raises(CifarFileError):
            read_cifar_batch(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80 * 2**20  # the 64 MiB read bound, never 10^12 bytes


def test_a_batch_that_links_to_a_device_is_refused(tmp_path):
    path = tmp_path / "batch"
    path.symlink_to("/dev/zero")
    with pytest.raises(CifarFileError, match="not a regular file"):
        read_cifar_batch(path)


# ================================================================== tile banks
def _npy(shape, descr, payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _bank(path: Path, g_s: bytes) -> Path:
    v = io.BytesIO()
    np.save(v, np.full((1, 2), 0.1))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("g_s.npy", g_s)
        z.writestr("v_v.npy", v.getvalue())
    return path


@pytest.mark.parametrize("g_s, fragment", [
    (_npy((4, 2, 2), "<f8", b"\0" * 8), "not a readable"),  # header claims 128 bytes, holds 8
    (_npy((1, 2, 2), [("a", [("b", "|O")])], b"\0" * 32), "object dtype"),  # object inside a nested field
    (_npy((-1, 2, 2), "<f8", b"\0" * 32), "sampling.source_file"),  # a negative dimension
    (_npy((2**40, 2**40, 0), "<f8", b""), "sampling.source_file"),  # a product of zero from huge factors
], ids=["shape-longer-than-data", "nested-object-field", "negative-dimension", "huge-factors-zero-size"])
def test_a_tile_bank_whose_header_lies_is_one_error_naming_it(tmp_path, g_s, fragment):
    bank = _bank(tmp_path / "bank.npz", g_s)
    tracemalloc.start()
    try:
        with pytest.raises(CircuitError) as info:
            load_tile_bank(bank, 2, 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert str(bank) in message and fragment in message and "\n" not in message
    assert peak < 16 * 2**20


def test_a_zip_entry_that_understates_its_size_never_inflates_past_it(tmp_path):
    """The central directory says 160 bytes; the deflated stream holds 8 MiB of zeros."""
    bank = _bank(tmp_path / "bank.npz", _npy((1, 2, 2), "<f8", b"\0" * (8 * 2**20)))
    raw = bytearray(bank.read_bytes())
    with zipfile.ZipFile(bank) as z:
        info = z.getinfo("g_s.npy")
    true_size = info.file_size.to_bytes(4, "little")
    assert raw.count(true_size) >= 2
    raw = raw.replace(true_size, (160).to_bytes(4, "little"))
    bank.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        try:
            g, _ = load_tile_bank(bank, 2, 2)
            assert g.shape == (1, 2, 2)
        except CircuitError as exc:
            assert str(bank) in str(exc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


# ================================================================== model files
def test_a_legacy_format_model_file_runs_nothing(tmp_path):
    import torch

    from dnn.train import MODEL_FORMAT_VERSION, load_model

    marker = tmp_path / "marker"
    evil = tmp_path / "legacy.pt"
    torch.save({"format_version": MODEL_FORMAT_VERSION, "x": Call(os.system, f"touch {marker}")}, evil,
               _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"legacy\.pt: not a model file"):
        load_model(evil)
    assert not marker.exists()


def test_a_model_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    proc = run("-m", "dnn", "evaluate", "--model", str(fifo), "--out", str(tmp_path / "e.json"), cwd=tmp_path,
               timeout=120)
    one_line_exit_2(proc, "model.pt")
    assert not (tmp_path / "e.json").exists()
