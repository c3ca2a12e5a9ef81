"""Training on real ngspice datasets: held-out fidelity, determinism, non-linear cells, parameter checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spice.cli import main as spice_main
from surrogate import fidelity
from surrogate.data import load_splits
from surrogate.models import GeniexMLP, TransferNet, predict_a
from surrogate.physics import TileSpec
from surrogate.train import TrainParams, TrainParamsError, train
from tests.conftest import CIRCUITS

pytestmark = pytest.mark.spice

RESISTIVE = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 16, "cols": 16, "r_driver_ohm": 1000.0,
             "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 1000.0}
SINH = {"netlist": str(CIRCUITS / "memristor_sinh.cir"), "rows": 8, "cols": 8, "r_driver_ohm": 300.0,
        "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 300.0, "v_read_max_v": 0.4}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def simulate(directory, name, circuit, sampling):
    out = directory / f"{name}.h5"
    rc = spice_main(["simulate", "--circuit-name", name, "--circuit", json.dumps(circuit), "--sampling",
                     json.dumps(sampling), "--out", str(out), "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def r16(tmp_path_factory):
    path = simulate(tmp_path_factory.mktemp("train"), "r16", RESISTIVE,
                    {"n_conductance": 10, "n_vectors": 48, "seed": 3, "v_zero_fraction": 0.2})
    return load_splits(path, seed=0)


@pytest.fixture(scope="module")
def sinh8(tmp_path_factory):
    path = simulate(tmp_path_factory.mktemp("train"), "sinh8", SINH, {"n_conductance": 10, "n_vectors": 64, "seed": 5})
    return load_splits(path, seed=0)


def test_transfer_design_beats_the_ideal_model_on_held_out_matrices(r16):
    result = train(r16, TrainParams(design="transfer", epochs=60, seed=1), progress=False)
    report, _ = fidelity.evaluate(result.model, r16, ridge=False)
    sur, ideal = report["models"]["surrogate"], report["models"]["ideal"]
    assert ideal["rel_rms_fs"] > 0.05  # the array is far from ideal
    assert sur["rel_rms_fs"] < ideal["rel_rms_fs"] / 100
    assert sur["rel_rms_fs"] < 1e-3 and sur["worst_abs_fs"] < 5e-3
    assert report["models"]["analytic"]["rel_rms_fs"] > 3 * sur["rel_rms_fs"]
    assert report["target"]["met"]
    # learning improved on the physics prior it starts from
    assert result.history["best_val_rms_fs"] < 0.9 * result.history["initial_val_rms_fs"]


def test_geniex_mlp_beats_the_ideal_model_on_held_out_matrices(r16):
    result = train(r16, TrainParams(design="mlp", hidden=64, epochs=40, seed=1), progress=False)
    assert isinstance(result.model, GeniexMLP)
    report, _ = fidelity.evaluate(result.model, r16, ridge=True)
    sur, ideal = report["models"]["surrogate"], report["models"]["ideal"]
    assert sur["rel_rms_fs"] < ideal["rel_rms_fs"] / 10
    assert report["models"]["ridge"]["rel_rms_fs"] < ideal["rel_rms_fs"] / 10
    assert len(sur["per_column_rel_rms_fs"]) == 16


def test_same_seed_same_weights_other_seed_other_weights(r16):
    params = TrainParams(design="mlp", hidden=16, epochs=3, seed=7)
    a = train(r16, params, progress=False).model.state_dict()
    b = train(r16, params, progress=False).model.state_dict()
    c = train(r16, TrainParams(design="mlp", hidden=16, epochs=3, seed=8), progress=False).model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["first.weight"], c["first.weight"])


def test_non_linear_cells_get_the_cubic_input_terms(sinh8):
    assert not sinh8.all_linear
    auto = train(sinh8, TrainParams(design="transfer", epochs=100, seed=0), progress=False).model
    linear = train(sinh8, TrainParams(design="transfer", epochs=100, seed=0, v_order=1), progress=False).model
    assert isinstance(auto, TransferNet) and auto.v_order == 3 and linear.v_order == 1
    err = {}
    for name, model in (("cubic", auto), ("linear", linear)):
        report, _ = fidelity.evaluate(model, sinh8, ridge=False)
        err[name] = report["models"]["surrogate"]["rel_rms_fs"]
        ideal = report["models"]["ideal"]["rel_rms_fs"]
    # strongly non-linear (b*V up to ~2 across a cell): a linear T_eff cannot follow, the cubic terms can
    assert err["cubic"] < ideal / 20
    assert err["cubic"] < 0.1 * err["linear"]


def test_a_virtual_ground_sense_amplifier_is_found_by_the_prior(tmp_path):
    """tia_sense.cir: 'r' is the TIA's feedback resistor, the column sees a virtual ground (~0 ohm)."""
    tia = {**RESISTIVE, "netlist": str(CIRCUITS / "tia_sense.cir"), "rows": 8, "cols": 8}
    splits = load_splits(simulate(tmp_path, "tia8", tia, {"n_conductance": 5, "n_vectors": 32, "seed": 1}))
    spec_prior = TransferNet(TileSpec.from_circuit(splits.spec))
    calibrated = TransferNet(TileSpec.from_circuit(splits.spec))
    calibrated.init_from_data(splits.train)
    r_sense = 1.0 / (float(calibrated.log_g_sense_n.detach().exp()) * splits.spec.g_on_s)
    assert r_sense < 1.0  # ohm, vs the 1000 ohm the spec names
    errors = {}
    for name, model in (("spec", spec_prior), ("calibrated", calibrated)):
        pred = predict_a(model, splits.test.g_s, splits.test.g_index, splits.test.v_v)
        errors[name] = np.sqrt(np.mean((pred - splits.test.i_a) ** 2)) / splits.spec.g_on_s / 0.2 / 8
    assert errors["calibrated"] < 1e-3 < errors["spec"]


def test_training_parameters_are_checked():
    with pytest.raises(TrainParamsError, match=r"surrogate: unknown key\(s\) \['hiden'\]"):
        TrainParams.from_dict({"hiden": 500})
    with pytest.raises(TrainParamsError, match="design='cnn'"):
        TrainParams(design="cnn")
    with pytest.raises(TrainParamsError, match="epochs=0"):
        TrainParams(epochs=0)
    with pytest.raises(TrainParamsError, match="v_order=2"):
        TrainParams(v_order=2)
    p = TrainParams.from_dict({"design": "mlp", "lr": None})
    assert p.learning_rate() == 1e-3 and p.l2 == 1e-3
    assert TrainParams().learning_rate(1) == 1e-2 and TrainParams().learning_rate(3) == 3e-3
    assert np.isclose(TrainParams(design="transfer").l2, 0.0)
