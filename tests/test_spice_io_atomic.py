"""spice/io.py writes atomically: a failure inside the writer itself leaves neither a partial output nor a
temporary file, and an earlier output stays as it was."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from spice.io import read_dataset, write_dataset


def _arrays(rows=3, cols=2):
    g = np.full((1, rows, cols), 1e-5)
    v = np.full((2, rows), 0.1)
    i = v @ g[0]
    return {"g_s": g, "g_id": np.array([0]), "solver": np.array([b"sweep"]),
            "transfer_a_per_v": np.full((1, rows, cols), np.nan), "g_index": np.array([0, 0]), "v_v": v,
            "i_a": i, "i_ideal_a": i, "p_w": (v ** 2) @ g[0].sum(1), "p_parts_w": np.zeros((2, 5)),
            "failed": np.zeros(2, dtype=bool), "failure_reason": np.array([b"", b""])}


def test_a_failure_inside_the_writer_leaves_no_partial_file(tmp_path, make_spec, monkeypatch):
    spec = make_spec(rows=3, cols=2)
    out = tmp_path / "d.h5"
    write_dataset(out, spec, _arrays(), {"seed": 1})
    before = out.read_bytes()
    real = h5py.Group.create_dataset
    calls = []

    def fail_on_the_third(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 3:  # some datasets are already in the temporary file
            raise OSError("No space left on device")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_the_third)
    with pytest.raises(OSError, match="No space left"):
        write_dataset(out, spec, _arrays(), {"seed": 2})
    assert len(calls) == 3  # the writer was reached and failed half-way
    monkeypatch.undo()
    assert out.read_bytes() == before  # the earlier output is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]  # no temporary file left behind
    assert read_dataset(out).attrs["seed"] == 1
    new = tmp_path / "new.h5"
    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_the_third)
    calls.clear()
    with pytest.raises(OSError):
        write_dataset(new, spec, _arrays(), {"seed": 3})
    assert not new.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]
