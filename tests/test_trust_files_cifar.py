"""Nothing in a data folder runs code: CIFAR-10 batches go through a restricted unpickler.

Each hostile batch carries a real payload (os.system, subprocess.run, builtins.eval/exec) that would
create a marker file; the test proves the payload works under plain ``pickle`` and that the loader
refuses it with one line naming the file, the marker never appearing.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dnn.datasets import (
    CIFAR10_BATCH_MAX_BYTES,
    CIFAR10_BATCH_MD5,
    CIFAR10_DIR,
    DatasetFileError,
    _download,
    load_cifar10,
    read_cifar_batch,
)
from tests.test_dnn_datasets import _write_cifar_batches

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Pickles as a call of ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, Payload]:
    return {
        "os.system": Payload(os.system, f"touch {marker}"),
        "subprocess.run": Payload(subprocess.run, ["touch", str(marker)]),
        "builtins.eval": Payload(builtins.eval, f"open({str(marker)!r}, 'w').write('x')"),
        "builtins.exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w').write('x')"),
    }


def _batch(n: int = 2, **overrides) -> dict:
    batch = {b"batch_label": b"x", b"labels": [1] * n, b"data": np.zeros((n, 3072), np.uint8),
             b"filenames": [b"a.png"] * n}
    return {**batch, **{k.encode(): v for k, v in overrides.items()}}


def _dump(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


@pytest.mark.parametrize("kind", ["os.system", "subprocess.run", "builtins.eval", "builtins.exec"])
@pytest.mark.parametrize("where", ["whole", "labels"])
def test_payload_in_a_batch_never_runs(tmp_path, kind, where):
    marker = tmp_path / "marker"
    payload = _payloads(marker)[kind]
    proof = tmp_path / "proof"
    proof.mkdir()
    # the payload is real: plain pickle runs it
    pickle.loads(pickle.dumps(_payloads(proof / "ran")[kind], protocol=2))
    assert (proof / "ran").exists()

    folder = tmp_path / CIFAR10_DIR
    _write_cifar_batches(folder)
    obj = payload if where == "whole" else _batch(labels=payload)
    _dump(folder / "data_batch_3", obj)
    with pytest.raises(DatasetFileError) as e:
        load_cifar10(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(folder / "data_batch_3") in msg and "refused global" in msg
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("numpy", "load"), ("numpy.testing._private.utils", "runstring"),
                                          ("builtins", "getattr"), ("copyreg", "_reconstructor")])
def test_any_other_global_is_refused(tmp_path, module, name):
    path = tmp_path / "batch"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R.")
    with pytest.raises(DatasetFileError, match=f"refused global {module}.{name}"):
        read_cifar_batch(path)


def test_array_reconstruction_is_limited_to_plain_empty_arrays(tmp_path):
    big = Payload(np._core.multiarray._reconstruct, np.ndarray, (10**6,), b"b")
    with pytest.raises(DatasetFileError, match="only allowed for an empty ndarray"):
        read_cifar_batch(_dump(tmp_path / "big", _batch(data=big)))
    objects = np.array([[1, 2]], dtype=object)
    with pytest.raises(DatasetFileError, match="dtype object is not part of a CIFAR-10 batch"):
        read_cifar_batch(_dump(tmp_path / "objects", _batch(data=objects)))
    with pytest.raises(DatasetFileError, match=r"expected b'data' as a uint8 array \[n, 3072\]"):
        read_cifar_batch(_dump(tmp_path / "floats", _batch(data=np.zeros((2, 3072)))))
    with pytest.raises(DatasetFileError, match=r"expected b'labels' as a list of 2 integers in \[0, 9\]"):
        read_cifar_batch(_dump(tmp_path / "labels", _batch(labels=[1, 10])))


def test_batch_in_the_python2_spelling_still_loads(tmp_path):
    """The official batches name numpy.core.multiarray (numpy 1); both spellings are the same stand-in."""
    raw = pickle.dumps(_batch(3, data=np.arange(3 * 3072).astype(np.uint8).reshape(3, 3072)), protocol=2)
    assert b"numpy._core.multiarray" in raw
    path = tmp_path / "batch"
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    x, y = read_cifar_batch(path)
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.uint8 and x[1, 0, 0, 0] == 3072 % 256
    assert y.tolist() == [1, 1, 1]


def test_oversized_and_odd_files_are_refused_before_reading(tmp_path):
    path = _dump(tmp_path / "batch", _batch())
    with pytest.raises(DatasetFileError, match=r"above the limit of 100 for a CIFAR-10 batch \(CIFAR10_BATCH_MAX_BYTES\)"):
        read_cifar_batch(path, max_bytes=100)
    assert CIFAR10_BATCH_MAX_BYTES >= 31 * 10**6  # an official batch fits
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer end, so opening it to read does not block
    try:
        with pytest.raises(DatasetFileError, match="not a regular file"):
            read_cifar_batch(fifo)
    finally:
        os.close(fd)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetFileError, match=r"truncated: not a CIFAR-10 python batch \(.*\); nothing in it was run"):
        read_cifar_batch(truncated)


def test_batch_checksums_when_asked(tmp_path):
    folder = tmp_path / CIFAR10_DIR
    names = _write_cifar_batches(folder)
    with pytest.raises(DatasetFileError, match=r"data_batch_1: md5 [0-9a-f]{32}, expected c99cafc1"):
        load_cifar10(tmp_path, batch_md5=CIFAR10_BATCH_MD5)
    own = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in names}
    assert len(load_cifar10(tmp_path, batch_md5=own).train) == 20


def test_download_goes_through_an_exclusive_temporary_and_is_bounded(tmp_path):
    source = tmp_path / "source.tar.gz"
    source.write_bytes(b"x" * 5000)
    root = tmp_path / "root"
    root.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (root / "cifar.tar.gz.part").symlink_to(victim)  # the old predictable name
    _download(source.as_uri(), root / "cifar.tar.gz")
    assert (root / "cifar.tar.gz").read_bytes() == b"x" * 5000 and victim.read_bytes() == b"keep"
    with pytest.raises(DatasetFileError, match="more than 1000 bytes"):
        _download(source.as_uri(), root / "again.tar.gz", max_bytes=1000)
    assert sorted(p.name for p in root.iterdir()) == ["cifar.tar.gz", "cifar.tar.gz.part"]


def test_cli_train_refuses_a_hostile_batch(tmp_path):
    """The real command line: exit 2, one line naming the batch, no marker, no model written."""
    marker = tmp_path / "marker"
    folder = tmp_path / "data" / CIFAR10_DIR
    _write_cifar_batches(folder)
    _dump(folder / "test_batch", _payloads(marker)["os.system"])
    out = tmp_path / "model.pt"
    proc = subprocess.run([sys.executable, "-m", "dnn", "train", "-q", "--dataset", "cifar10", "--data-root",
                           str(tmp_path / "data"), "--model", "bn_cnn", "--epochs", "1", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder / "test_batch") in lines[0] and "refused global posix.system" in lines[0]
    assert not marker.exists() and not out.exists()
