"""``python -m surrogate``: train + fidelity + inspect on a real ngspice dataset, and its error paths."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import pytest
import torch

from spice.cli import main as spice_main
from surrogate.cli import main
from surrogate.io import load_surrogate
from tests.conftest import CIRCUITS, REPO

pytestmark = pytest.mark.spice

CIRCUIT = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 8, "cols": 8, "r_driver_ohm": 1000.0,
           "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 1000.0}


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    before = torch.get_num_threads()  # the CLI sets --threads (default 1) process-wide
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "r8.h5"
    # 4 matrices, as in the workflow's tiny config: 2 train, 1 validation, 1 test
    rc = spice_main(["simulate", "--circuit-name", "r8", "--circuit", json.dumps(CIRCUIT), "--sampling",
                     json.dumps({"n_conductance": 4, "n_vectors": 64, "seed": 1}), "--out", str(out), "--quiet"])
    assert rc == 0
    return out


def test_train_then_fidelity_then_inspect(data, tmp_path, capsys):
    surr, fj, fp = tmp_path / "s.h5", tmp_path / "fid.json", tmp_path / "fid.png"
    rc = main(["train", "--data", str(data), "--out", str(surr), "--design", "transfer", "--epochs", "30",
               "--seed", "3", "--params-json", json.dumps({"cell_hidden": 8, "epochs": 5}),
               "--fidelity-json", str(fj), "--fidelity-png", str(fp), "--quiet"])
    assert rc == 0
    report = json.loads(fj.read_text())
    assert fp.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["n_test_matrices"] == 1 and report["n_test_samples"] == 64
    assert set(report["models"]) == {"surrogate", "ideal", "analytic", "ridge"}
    assert report["improvement_over_ideal"]["surrogate"] > 20 and report["target"]["met"]
    with h5py.File(surr) as f:
        params = json.loads(f.attrs["train_params"])
        # explicit flags override --params-json; json keys fill the rest
        assert params["epochs"] == 30 and params["cell_hidden"] == 8 and params["seed"] == 3
        assert params["v_order"] == 1  # resolved: every matrix passed the linearity check
        assert json.loads(f.attrs["fidelity"])["models"]["surrogate"] == report["models"]["surrogate"]
    model = load_surrogate(surr)
    assert model.cell_hidden == 8

    fj2 = tmp_path / "again.json"
    assert main(["fidelity", "--surrogate", str(surr), "--data", str(data), "--json", str(fj2)]) == 0
    again = json.loads(fj2.read_text())
    assert again["test_g_rows"] == report["test_g_rows"]  # the same held-out matrices
    assert again["models"]["surrogate"]["rel_rms_fs"] == pytest.approx(report["models"]["surrogate"]["rel_rms_fs"],
                                                                      rel=1e-6)

    capsys.readouterr()
    assert main(["inspect", str(surr)]) == 0
    out = capsys.readouterr().out
    assert "design: transfer" in out and "fidelity surrogate" in out


def test_unknown_params_json_key_is_rejected(data, tmp_path, capsys):
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "x.h5"), "--params-json",
               json.dumps({"design": "mlp", "hiddden": 12}), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--params-json: unknown key(s) ['hiddden']" in err and "hidden" in err
    assert not (tmp_path / "x.h5").exists()
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "x.h5"), "--params-json", "[1]"]) == 2


def test_fidelity_of_a_surrogate_for_another_array_size_fails_clearly(data, tmp_path, capsys):
    big = tmp_path / "r12.h5"
    assert spice_main(["simulate", "--circuit-name", "r12", "--circuit", json.dumps({**CIRCUIT, "rows": 12}), "--sampling",
                       json.dumps({"n_conductance": 3, "n_vectors": 8}), "--out", str(big), "--quiet"]) == 0
    surr = tmp_path / "mlp.h5"
    assert main(["train", "--data", str(data), "--out", str(surr), "--design", "mlp", "--hidden", "8",
                 "--epochs", "2", "--quiet"]) == 0
    rc = main(["fidelity", "--surrogate", str(surr), "--data", str(big), "--json", str(tmp_path / "f.json")])
    assert rc == 2
    assert "surrogate does not fit circuit 'r12'" in capsys.readouterr().err


def test_module_entry_point_trains_and_inspects(data, tmp_path):
    """`python -m surrogate` as the workflow runs it: a real training run in a subprocess, its file and
    fidelity json, then `inspect` of that file; a bad argument exits 2 and writes nothing."""
    surr, fj = tmp_path / "m.h5", tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "-m", "surrogate", "train", "--data", str(data), "--out", str(surr),
                           "--design", "transfer", "--epochs", "2", "--fidelity-json", str(fj), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(fj.read_text())
    assert report["circuit"] == "r8" and report["design"] == "transfer" and report["n_failed_samples"] == 0
    assert report["models"]["surrogate"]["rel_rms_fs"] < report["models"]["ideal"]["rel_rms_fs"]
    assert load_surrogate(surr).rows == 8
    proc = subprocess.run([sys.executable, "-m", "surrogate", "inspect", str(surr)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "design: transfer" in proc.stdout and "r8" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "surrogate", "train", "--data", str(tmp_path / "none.h5"),
                          "--out", str(tmp_path / "n.h5"), "--quiet"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "none.h5" in bad.stderr and not (tmp_path / "n.h5").exists()
