"""Writes never follow a link, and reads never unpack without a limit.

Hostile files placed beside an output or in its place: a symbolic link at a predictable temporary
name, a symbolic link at the destination, a name already taken. Hostile tile banks: an ``.npy``
header that claims far more than the zip holds, a member that inflates past the limit, an object
dtype. Every case checks that the unrelated file is untouched and the error names the file.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from spice.circuit import CircuitError
from spice.io import atomic_h5
from spice.tilebank import MAX_BYTES_ENV, TILE_BANK_MAX_BYTES, load_tile_bank, save_tile_bank
from tests.conftest import CIRCUITS
from xbarchar import files
from xbarchar.files import (
    OutputError,
    atomic_write_bytes,
    atomic_write_text,
    open_temporary,
    reserve_temporary,
)

REPO = Path(__file__).resolve().parents[1]
VICTIM_TEXT = b"unrelated file, must stay as it is\n"


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(VICTIM_TEXT)
    return path


# ----------------------------------------------------------------------------- atomic writes
def test_temporary_names_are_unpredictable_and_keep_the_suffix(tmp_path):
    target = tmp_path / "plot.png"
    names = set()
    for _ in range(5):
        fd, tmp = open_temporary(target)
        os.close(fd)
        names.add(tmp.name)
        assert tmp.parent == tmp_path and tmp.name.startswith(".plot.") and tmp.suffix == ".png"
        assert str(os.getpid()) not in tmp.name.split(".")[2]  # a random part, not the process id
    assert len(names) == 5


def test_link_at_a_guessed_temporary_name_is_never_followed(tmp_path, victim, monkeypatch):
    """The first random name is forced to one where a link already waits: the writer must not open
    it (O_EXCL | O_NOFOLLOW), pick another name, and leave the link's target untouched."""
    target = tmp_path / "out.json"
    tokens = iter(["0" * 16, "1" * 16])
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(tokens))
    trap = tmp_path / f".out.{'0' * 16}.tmp.json"
    trap.symlink_to(victim)
    atomic_write_text(target, "{}\n")
    assert victim.read_bytes() == VICTIM_TEXT
    assert target.read_text() == "{}\n" and not target.is_symlink()
    assert trap.is_symlink()  # left alone, not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["elsewhere", "out.json", trap.name])


def test_every_name_taken_fails_cleanly(tmp_path, victim, monkeypatch):
    target = tmp_path / "out.bin"
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: "a" * 16)
    (tmp_path / f".out.{'a' * 16}.tmp.bin").symlink_to(victim)
    with pytest.raises(OutputError, match=r"out\.bin: cannot write .*nothing was written there"):
        atomic_write_bytes(target, b"data")
    assert victim.read_bytes() == VICTIM_TEXT and not target.exists()


def test_link_at_the_destination_is_replaced_not_written_through(tmp_path, victim):
    target = tmp_path / "result.json"
    target.symlink_to(victim)
    atomic_write_bytes(target, b"new result\n")
    assert victim.read_bytes() == VICTIM_TEXT
    assert not target.is_symlink() and target.read_bytes() == b"new result\n"


def test_hdf5_outputs_go_through_the_same_writer(tmp_path, victim, monkeypatch):
    """spice/io.py's atomic_h5 (used by SPICE datasets and surrogates) writes through atomic_write_bytes."""
    target = tmp_path / "data.h5"
    target.symlink_to(victim)
    used = []
    real_open = files.open_temporary
    monkeypatch.setattr(files, "open_temporary", lambda p: used.append(p) or real_open(p))
    with atomic_h5(target) as f:
        f["x"] = np.arange(3.0)
    assert used == [target]
    assert victim.read_bytes() == VICTIM_TEXT and not target.is_symlink()
    with h5py.File(target, "r") as f:
        assert f["x"][2] == 2.0


def test_written_files_follow_the_umask_and_leave_no_temporary(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_reserved_temporary_is_a_new_empty_regular_file(tmp_path):
    tmp = reserve_temporary(tmp_path / "sub" / "table.csv")
    assert tmp.parent == tmp_path / "sub" and tmp.suffix == ".csv"
    assert tmp.is_file() and not tmp.is_symlink() and tmp.stat().st_size == 0


# ----------------------------------------------------------------------------- tile banks
def _npz_with_members(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)


def _npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _small_v(rows: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.full((1, rows), 0.1))
    return buf.getvalue()


def test_header_claiming_a_gibibyte_is_refused_before_unpacking(tmp_path):
    bank = tmp_path / "bank.npz"
    _npz_with_members(bank, {"g_s": _npy_header((2**27, 1, 1)) + b"\0" * 64, "v_v": _small_v(1)})
    assert bank.stat().st_size < 4096
    tracemalloc.start()
    try:
        with pytest.raises(CircuitError) as e:
            load_tile_bank(bank, 1, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    assert "\n" not in msg and str(bank) in msg
    assert "array 'g_s' would unpack to 1.0 GiB, above the limit of 256.0 MiB (tile_bank_max_bytes" in msg
    assert MAX_BYTES_ENV in msg
    assert peak < 16 * 2**20  # nothing near the claimed size was allocated


def test_member_inflating_past_the_limit_is_refused(tmp_path, monkeypatch):
    """A member whose zip entry unpacks to more than the limit (here lowered to 1 MiB), whatever its header says."""
    bank = tmp_path / "bank.npz"
    _npz_with_members(bank, {"g_s": _npy_header((1, 1, 1)) + b"\0" * (2 * 2**20), "v_v": _small_v(1)})
    monkeypatch.setenv(MAX_BYTES_ENV, str(2**20))
    with pytest.raises(CircuitError, match=r"bank\.npz: array 'g_s' would unpack to 2\.0 MiB, above the limit "
                                           r"of 1\.0 MiB \(tile_bank_max_bytes"):
        load_tile_bank(bank, 1, 1)


def test_real_bank_over_the_limit_and_the_setting_that_raises_it(tmp_path, monkeypatch):
    bank = tmp_path / "bank.npz"
    save_tile_bank(bank, np.full((64, 32, 32), 1e-5), np.full((8, 32), 0.1))  # 512 KiB of g_s
    with pytest.raises(CircuitError, match="array 'g_s' would unpack to 512.1 KiB"):
        load_tile_bank(bank, 32, 32, max_bytes=256 * 2**10)
    monkeypatch.setenv(MAX_BYTES_ENV, str(300 * 2**10))
    with pytest.raises(CircuitError, match="above the limit of 300.0 KiB"):
        load_tile_bank(bank, 32, 32)
    monkeypatch.setenv(MAX_BYTES_ENV, str(2**20))
    g, v = load_tile_bank(bank, 32, 32)
    assert g.shape == (64, 32, 32) and v.shape == (8, 32)
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(CircuitError, match=f"{MAX_BYTES_ENV}='lots': expected a whole number of bytes"):
        load_tile_bank(bank, 32, 32)
    assert TILE_BANK_MAX_BYTES == 256 * 2**20  # the documented default


def test_arrays_together_over_the_limit(tmp_path):
    bank = tmp_path / "bank.npz"
    save_tile_bank(bank, np.full((16, 32, 32), 1e-5), np.full((512, 32), 0.1))  # 128 KiB each
    with pytest.raises(CircuitError, match="its arrays together would unpack to"):
        load_tile_bank(bank, 32, 32, max_bytes=200 * 2**10)


def test_object_dtype_is_refused_and_never_unpickled(tmp_path):
    bank = tmp_path / "bank.npz"
    np.savez(bank, g_s=np.array([[[1e-5]]], dtype=object), v_v=np.full((1, 1), 0.1))
    with pytest.raises(CircuitError, match=r"array 'g_s' has the object dtype"):
        load_tile_bank(bank, 1, 1)


def test_not_a_zip_is_one_clear_error(tmp_path):
    bank = tmp_path / "bank.npz"
    bank.write_bytes(b"not a zip at all")
    with pytest.raises(CircuitError, match=r"sampling.source_file .*bank\.npz: not a readable \.npz tile bank"):
        load_tile_bank(bank, 1, 1)


def test_cli_refuses_a_bank_that_would_unpack_too_far(tmp_path):
    """The real SPICE command line: exit 2, one line naming the file and the setting, no output."""
    bank = tmp_path / "bank.npz"
    _npz_with_members(bank, {"g_s": _npy_header((2**27, 3, 2)) + b"\0" * 64, "v_v": _small_v(3)})
    out = tmp_path / "out.h5"
    circuit = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 3, "cols": 2}
    sampling = {"sampler": "from_file", "source_file": str(bank), "n_conductance": 1, "n_vectors": 1}
    proc = subprocess.run([sys.executable, "-m", "spice", "simulate", "--quiet", "--circuit", json.dumps(circuit),
                           "--sampling", json.dumps(sampling), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bank) in lines[0] and "tile_bank_max_bytes" in lines[0]
    assert "would unpack to 6.0 GiB" in lines[0]
    assert not out.exists()



# ----------------------------------------------------------------------------- model files
def test_model_file_cannot_run_code_or_claim_a_huge_model(tmp_path):
    import torch

    from dnn.models import build_model
    from dnn.train import MODEL_FORMAT_VERSION, load_model, save_model

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'marker'}",)

    evil = tmp_path / "evil.pt"
    torch.save({"format_version": MODEL_FORMAT_VERSION, "x": Payload()}, evil)
    with pytest.raises(ValueError, match=r"evil\.pt: not a model file written by python -m dnn train"):
        load_model(evil)
    assert not (tmp_path / "marker").exists()

    kwargs = {"in_channels": 1, "num_classes": 10, "image_size": 8, "width": 0.25}
    good = tmp_path / "good.pt"
    save_model(good, build_model("bn_cnn", **kwargs), "bn_cnn", kwargs)
    payload = torch.load(good, weights_only=True)
    payload["model_kwargs"] = {**kwargs, "width": 4000.0}  # would be a model of tens of GiB
    huge = tmp_path / "huge.pt"
    torch.save(payload, huge)
    with pytest.raises(ValueError, match=r"huge\.pt: its weights do not fit bn_cnn .*mismatches"):
        load_model(huge)  # built on the meta device first: a real build would need ~600 GB
    model, meta = load_model(good)
    assert meta["model_kwargs"] == kwargs


def test_model_file_of_expanded_views_cannot_claim_a_huge_model(tmp_path):
    """Weights whose shapes fit a huge model but are stride-0 views of a few stored bytes are refused
    before the real model is built."""
    import torch

    from dnn.models import build_model
    from dnn.train import MODEL_FORMAT_VERSION, load_model

    kwargs = {"in_channels": 1, "num_classes": 10, "image_size": 8, "width": 8.0}
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in build_model("bn_cnn", **kwargs).state_dict().items()}
    state = {k: torch.zeros(1, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32).expand(*s)
             if len(s) else torch.zeros((), dtype=torch.int64) for k, s in shapes.items()}
    forged = tmp_path / "views.pt"
    torch.save({"format_version": MODEL_FORMAT_VERSION, "model_name": "bn_cnn", "model_kwargs": kwargs,
                "state_dict": state}, forged)
    assert forged.stat().st_size < 100_000 < sum(t.numel() * 4 for t in state.values())
    with pytest.raises(ValueError, match=r"views\.pt: weight .* fewer stored bytes than its shape needs"):
        load_model(forged)


def test_hard_link_to_an_input_is_the_same_file(tmp_path):
    from xbarchar.files import OutputPathError, refuse_overwriting_inputs

    data = tmp_path / "a.h5"
    data.write_bytes(b"x")
    (tmp_path / "hard.h5").hardlink_to(data)
    with pytest.raises(OutputPathError, match=r"--out .*hard\.h5: is the same file as the input --data"):
        refuse_overwriting_inputs({"--out": tmp_path / "hard.h5"}, {"--data": data})
    refuse_overwriting_inputs({"--out": tmp_path / "new.h5"}, {"--data": data})  # a new name is fine
