"""design: auto — the candidates trained (closed form first), the lowest selection score kept, every trained
candidate reported; on every shipped circuit the kept surrogate is never worse than the ridge baseline on held-out
matrices."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from spice.cli import main as spice_main
from surrogate import fidelity
from surrogate import train as train_mod
from surrogate.cli import main as surrogate_main
from surrogate.data import load_splits
from surrogate.io import describe, load_surrogate, read_metadata
from surrogate.models import DESIGN_CLASSES, build_model
from surrogate.params import DESIGNS, TrainParams, TrainParamsError
from surrogate.physics import TileSpec
from surrogate.train import SELECTION_RULE, TrainResult, train
from tests.conftest import CIRCUITS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARRAY_8X8 = {"rows": 8, "cols": 8, "r_driver_ohm": 1000.0, "r_sense_ohm": 1000.0, "r_wire_row_ohm": 5.0,
             "r_wire_col_ohm": 5.0}
SHIPPED = {  # every circuit in data/circuits, at an operating point where its cell matters
    "resistive": {"netlist": "resistive.cir"},
    "memristor_sinh_0v5": {"netlist": "memristor_sinh.cir", "v_read_max_v": 0.5},
    "one_t_one_r": {"netlist": "one_t_one_r.cir", "v_gate_v": 1.8},
    "tia_sense": {"netlist": "tia_sense.cir"},
    "one_s_one_r_1v": {"netlist": "one_s_one_r.cir", "v_read_max_v": 1.0},
}
MUST_WIN = {"resistive": "transfer", "one_s_one_r_1v": "cell_iv"}
"""Where one design is far ahead (measured at 8x8: ~20x and ~6.5x lower validation error than the next)."""
AUTO = TrainParams(design="auto", epochs=60, hidden=64, seed=1)


def simulate(directory, name: str, entry: dict, seed: int, n_conductance: int = 10, n_vectors: int = 48):
    circuit = {**ARRAY_8X8, **entry, "netlist": str(CIRCUITS / entry["netlist"])}
    out = directory / f"{name}.h5"
    rc = spice_main(["simulate", "--circuit-name", name, "--circuit", json.dumps(circuit), "--sampling",
                     json.dumps({"n_conductance": n_conductance, "n_vectors": n_vectors, "seed": seed}), "--out",
                     str(out), "--quiet"])
    assert rc == 0
    return out


def test_the_designs_and_their_settings():
    assert set(DESIGNS) == set(DESIGN_CLASSES) == {"cell_iv", "mlp", "ridge", "transfer"}
    assert TrainParams().candidates == ("transfer", "ridge", "cell_iv")  # mlp: by request only
    assert TrainParams().design == "auto"  # the design is chosen per circuit
    p = TrainParams.from_dict({"design": "auto", "candidates": ["ridge", "transfer"]})
    assert p.candidates == ("ridge", "transfer") and p.to_dict()["candidates"] == ["ridge", "transfer"]
    assert p.for_design("ridge").design == "ridge" and p.for_design("ridge").candidates == p.candidates
    for bad in ([], ["transfer", "cnn"], ["ridge", "ridge"], "ridge", ["auto"], [1]):
        with pytest.raises(TrainParamsError, match=r"candidates=.*expected a non-empty list of distinct designs"):
            TrainParams(design="auto", candidates=bad)
    with pytest.raises(TrainParamsError, match=r"design='automatic'"):
        TrainParams(design="automatic")


def _fake_candidates(monkeypatch, score: dict[str, float]):
    """Every candidate 'trained' instantly, with the given selection score; records the training order."""
    trained: list[str] = []
    tile = TileSpec(rows=4, cols=3, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=0.0, v_read_max_v=0.2,
                    r_driver_ohm=100.0, r_sense_ohm=100.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)

    def fake(splits, params, progress=True):
        trained.append(params.design)
        return TrainResult(model=build_model(params.design, tile), history={"best_val_rms_fs": score[params.design]})

    def fake_score(model, splits):
        s = score[model.design]
        return {"score": s, "val_rms_fs": s, "val_ideal_rms_fs": 1.0, "val_x_better_than_ideal": 1 / s,
                "dnn_like_rms_fs": s, "dnn_like_ideal_rms_fs": 1.0, "dnn_like_x_better_than_ideal": 1 / s,
                "n_val_samples": 8, "n_dnn_like_samples": 4, "n_dnn_like_matrices": 1}

    monkeypatch.setattr(train_mod, "_train_gradient", fake)
    monkeypatch.setattr(train_mod, "_fit_closed_form", lambda splits, params: fake(splits, params))
    monkeypatch.setattr(train_mod, "selection_score", fake_score)
    return trained


def test_the_lowest_score_wins_and_the_first_listed_on_a_tie(monkeypatch):
    trained = _fake_candidates(monkeypatch, {"transfer": 3e-3, "ridge": 1e-2, "mlp": 2e-3})
    result = train(None, TrainParams(design="auto", candidates=("transfer", "ridge", "mlp")), progress=False)
    assert trained == ["ridge", "transfer", "mlp"] and result.model.design == "mlp"  # closed form first
    selection = result.history["selection"]
    assert selection["chosen"] == "mlp" and selection["rule"] == SELECTION_RULE
    assert selection["candidates"] == ["transfer", "ridge", "mlp"]  # reported in the order of candidates
    assert {d: s["score"] for d, s in selection["scores"].items()} == {"transfer": 3e-3, "ridge": 1e-2, "mlp": 2e-3}
    assert selection["reason"].startswith("mlp has the lowest score, 500x better than ideal on validation and 500x "
                                          "on 1 DNN-like matrices (the worse of the two for the others: transfer "
                                          "333x, ridge 100x)")
    assert set(result.selection.results) == {"transfer", "ridge", "mlp"}
    _fake_candidates(monkeypatch, {"transfer": 1e-2, "ridge": 1e-2, "mlp": float("nan")})
    assert train(None, TrainParams(design="auto", candidates=("mlp", "ridge", "transfer"))).model.design == "ridge"
    assert train(None, TrainParams(design="auto", candidates=("transfer", "ridge"))).model.design == "transfer"


@pytest.fixture(scope="module")
def selector8(tmp_path_factory):
    path = simulate(tmp_path_factory.mktemp("auto"), "s1r8", SHIPPED["one_s_one_r_1v"], seed=3)
    return path, load_splits(path, seed=1)


@pytest.mark.spice
def test_the_choice_never_sees_the_test_split(selector8):
    _, splits = selector8
    params = dataclasses.replace(AUTO, epochs=10, candidates=("ridge", "mlp"))
    seen = train(splits, params, progress=False).history["selection"]
    test = splits.test
    blind = dataclasses.replace(splits, test=dataclasses.replace(test, i_a=np.full_like(test.i_a, np.nan),
                                                                 v_v=np.full_like(test.v_v, np.nan)))
    unseen = train(blind, params, progress=False).history["selection"]
    assert unseen["chosen"] == seen["chosen"] and unseen["val_rms_fs"] == seen["val_rms_fs"]


@pytest.mark.spice
def test_cli_auto_reports_every_candidate_and_saves_the_chosen_one(selector8, tmp_path, capsys):
    data, splits = selector8
    surr, fj = tmp_path / "auto.h5", tmp_path / "auto.json"
    rc = surrogate_main(["train", "--data", str(data), "--out", str(surr), "--design", "auto", "--epochs", "20",
                         "--hidden", "32", "--seed", "1", "--candidates", "transfer", "ridge", "mlp", "cell_iv",
                         "--closed-form-target-x", "1e9", "--fidelity-json", str(fj), "--quiet"])
    assert rc == 0
    report = json.loads(fj.read_text())
    selection = report["selection"]
    assert selection["candidates"] == ["transfer", "ridge", "mlp", "cell_iv"]  # no closed form meets 1e9x
    assert selection["metrics"].keys() == {"transfer", "ridge", "mlp", "cell_iv"} and selection["not_trained"] == {}
    for c in selection["metrics"].values():
        assert c["val"]["rel_rms_fs"] > 0 and c["test"]["rel_rms_fs"] > 0 and c["macs_per_vector"] > 0
    val = {d: c["val"]["rel_rms_fs"] for d, c in selection["metrics"].items()}
    assert selection["chosen"] == min(val, key=val.get) == report["design"]  # uniform sampler: no DNN-like rows
    chosen = selection["metrics"][selection["chosen"]]
    assert chosen["test"] == report["models"]["surrogate"]
    assert val[selection["chosen"]] == pytest.approx(selection["val_rms_fs"][selection["chosen"]], rel=1e-5)
    meta = read_metadata(surr)
    assert meta["design"] == meta["architecture"]["design"] == selection["chosen"]
    assert meta["train_params"]["design"] == "auto" and meta["history"]["selection"]["chosen"] == selection["chosen"]
    model = load_surrogate(surr, expect_spec=splits.spec)
    assert model.design == selection["chosen"]
    text = describe(surr)
    assert f"design auto: {selection['reason']}" in text and "candidate     ridge: val rms" in text
    capsys.readouterr()
    assert surrogate_main(["inspect", str(surr)]) == 0
    assert "candidate  transfer: val rms" in capsys.readouterr().out


@pytest.mark.spice
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_auto_is_never_worse_than_the_ridge_baseline(name, tmp_path):
    """Product guarantee, on real ngspice data of every shipped circuit at 8x8 (10 matrices, 2 held out)."""
    shipped = sorted(p.name for p in CIRCUITS.glob("*.cir"))
    assert sorted(entry["netlist"] for entry in SHIPPED.values()) == shipped  # a new circuit gets a row here
    splits = load_splits(simulate(tmp_path, name, SHIPPED[name], seed=sorted(SHIPPED).index(name) + 1), seed=1)
    result = train(splits, AUTO, progress=False)
    report, _ = fidelity.evaluate(result.model, splits, selection=result.selection)
    selection = report["selection"]
    val = selection["val_rms_fs"]
    assert selection["candidates"] == list(val) and selection["chosen"] == min(val, key=val.get)
    assert sorted(selection["candidates"] + list(selection["left_out"]) + list(selection["not_trained"])) == sorted(
        AUTO.candidates)
    assert "ridge" in selection["candidates"]  # closed form: never left out
    if name in MUST_WIN:
        assert selection["chosen"] == MUST_WIN[name]
    surrogate, ridge = report["models"]["surrogate"]["rel_rms_fs"], report["models"]["ridge"]["rel_rms_fs"]
    assert surrogate <= ridge * (1 + 1e-9), selection["reason"]
    assert surrogate < report["models"]["ideal"]["rel_rms_fs"] / 10
    torch.testing.assert_close(torch.tensor(report["selection"]["metrics"]["ridge"]["test"]["rel_rms_fs"]),
                               torch.tensor(ridge), rtol=1e-9, atol=0.0)


@pytest.mark.spice
def test_a_transfer_surrogate_that_never_improves_keeps_its_physics_prior_and_says_so(selector8, caplog):
    """The same stalled training (lr 1e-12): the transfer design keeps the physics prior it started from
    (a model of the array, measured like any other) with a warning; the MLP, from random weights, is refused."""
    _, splits = selector8
    stalled = dataclasses.replace(AUTO, epochs=2, lr=1e-12)
    result = train(splits, dataclasses.replace(stalled, design="transfer"), progress=False)
    assert result.history["best_epoch"] == 0 and result.history["improved_on_start"] is False
    assert "validation error never fell" in caplog.text and "kept the physics prior it started from" in caplog.text
    with pytest.raises(train_mod.TooLittleDataError, match="mlp surrogate's validation error never fell.*no surrogate"):
        train(splits, dataclasses.replace(stalled, design="mlp"), progress=False)
    trained = train(splits, dataclasses.replace(AUTO, design="transfer", epochs=10), progress=False)
    assert trained.history["improved_on_start"] is True
