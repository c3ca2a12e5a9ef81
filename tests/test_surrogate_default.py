"""The default surrogate setting: design auto chooses by the circuit, on held-out and DNN-like validation
matrices, closed-form candidates first; the selection record is stored in the surrogate file; the shipped
configs need no surrogate design; the schema states TrainParams' defaults."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
import yaml

from spice.cli import main as spice_main
from spice.sampling import SamplingConfig, matrix_sampler
from surrogate import train as train_mod
from surrogate.cli import main as surrogate_main
from surrogate.data import Split, SplitDataset, load_splits
from surrogate.io import describe, read_metadata
from surrogate.params import AUTO, TrainParams, TrainParamsError
from surrogate.physics import TileSpec
from surrogate.train import (
    CLOSED_FORM,
    LINEAR_SKIPS_CELL_IV,
    SELECTION_RULE,
    TrainResult,
    selection_score,
    train,
)
from tests.conftest import CIRCUITS, REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TILE = TileSpec(rows=4, cols=3, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=0.0, v_read_max_v=0.2,
                r_driver_ohm=100.0, r_sense_ohm=100.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)
FS = TILE.full_scale_a


I_A = np.where((np.repeat([0, 1], 4) == 0)[:, None], 0.2, 0.02) * FS * (1 + np.random.default_rng(0).random((8, 3)))
"""ngspice currents of the validation split below: the uniform matrix's are 10x the sparse DNN-like one's."""
IDEAL_ERROR = 0.1
"""The ideal model errs 10% of every current."""


def _val_split() -> SplitDataset:
    """A validation split of two matrices (file rows 3 and 5; row 5 DNN-like), 4 samples each."""
    g_index = np.repeat([0, 1], 4)
    val = Split(g_s=np.full((2, TILE.rows, TILE.cols), 1e-5), g_rows=np.array([3, 5]), g_index=g_index,
                v_v=np.zeros((8, TILE.rows)), i_a=I_A, i_ideal_a=(1 + IDEAL_ERROR) * I_A)
    empty = Split(**{k: None if v is None else v[:0] for k, v in vars(val).items()})
    return SplitDataset(spec=None, train=empty, val=val, test=empty, path="", sha256="", n_failed_dropped=0,
                        all_linear=False, seed=0, val_fraction=0.15, test_fraction=0.15, dnn_like_g_rows=(5,))


class _Stub:
    """A 'model' whose validation predictions are the ngspice currents times (1 + relative error), with its
    own relative error on the uniform and on the DNN-like matrix."""

    full_scale_a = FS

    def __init__(self, design: str, uniform_error: float, dnn_error: float) -> None:
        self.design, self.errors = design, np.array([uniform_error, dnn_error])

    def predict_a(self, g_index: np.ndarray) -> np.ndarray:
        return I_A * (1 + self.errors[g_index][:, None])


@pytest.fixture
def stub_models(monkeypatch):
    """Training replaced by stubs (``errors``: design -> (uniform, DNN-like) relative error); the real
    selection score measures them. Returns the designs trained, in order, and ``errors``."""
    trained: list[str] = []
    errors: dict[str, tuple[float, float]] = {}

    def fake(splits, params, progress=True):
        trained.append(params.design)
        return TrainResult(model=_Stub(params.design, *errors[params.design]), history={"best_val_rms_fs": 0.0})

    monkeypatch.setattr(train_mod, "_train_gradient", fake)
    monkeypatch.setattr(train_mod, "_fit_closed_form", lambda splits, params: fake(splits, params))
    monkeypatch.setattr("surrogate.models.predict_a", lambda model, g_s, g_index, v_v: model.predict_a(g_index))
    return trained, errors


def test_the_score_is_the_worse_of_the_two_ratios_to_the_ideal_model(stub_models):
    splits, i_a = _val_split(), I_A
    score = selection_score(_Stub("x", 0.001, 0.05), splits)
    uniform, dnn = i_a[:4], i_a[4:]
    val_rms = math.sqrt(np.mean(np.concatenate([0.001 * uniform, 0.05 * dnn]) ** 2)) / FS
    assert score["val_rms_fs"] == pytest.approx(val_rms, rel=1e-12)
    assert score["val_ideal_rms_fs"] == pytest.approx(math.sqrt(np.mean((0.1 * i_a) ** 2)) / FS, rel=1e-12)
    assert score["dnn_like_rms_fs"] == pytest.approx(math.sqrt(np.mean((0.05 * dnn) ** 2)) / FS, rel=1e-12)
    assert score["dnn_like_x_better_than_ideal"] == pytest.approx(2.0, rel=1e-12)  # 10% / 5%
    assert score["score"] == pytest.approx(0.5, rel=1e-12)  # the DNN-like ratio is the worse one
    assert score["n_dnn_like_samples"] == 4 and score["n_dnn_like_matrices"] == 1 and score["n_val_samples"] == 8
    no_dnn = selection_score(_Stub("x", 0.001, 0.05), SplitDataset(**{**vars(splits), "dnn_like_g_rows": ()}))
    assert no_dnn["score"] == pytest.approx(val_rms / score["val_ideal_rms_fs"], rel=1e-12)
    assert no_dnn["n_dnn_like_samples"] == 0 and math.isnan(no_dnn["dnn_like_rms_fs"])


def test_a_candidate_good_on_validation_but_bad_on_dnn_like_matrices_is_not_chosen(stub_models):
    trained, errors = stub_models
    splits = _val_split()
    errors.update(transfer=(1e-4, 0.05), ridge=(0.01, 0.005), cell_iv=(0.02, 0.02), mlp=(0.03, 0.03))
    result = train(splits, TrainParams(), progress=False)
    selection = result.history["selection"]
    scores = selection["scores"]
    # the old rule (lowest validation RMS error) would keep transfer: its error on the dense matrix is tiny
    assert scores["transfer"]["val_rms_fs"] < min(s["val_rms_fs"] for d, s in scores.items() if d != "transfer")
    assert result.model.design == selection["chosen"] == "ridge"
    assert scores["ridge"]["score"] < scores["transfer"]["score"]
    assert selection["rule"] == SELECTION_RULE and "DNN-like" in selection["rule"]
    assert "ridge has the lowest score" in selection["reason"] and "transfer 2x" in selection["reason"]
    # the same candidate is kept when it is good on both sets
    trained.clear()
    errors["transfer"] = (1e-4, 1e-4)
    assert train(splits, TrainParams(), progress=False).model.design == "transfer"


def test_closed_form_candidates_first_and_the_others_only_when_they_miss_the_target(stub_models):
    trained, errors = stub_models
    splits = _val_split()
    target = TrainParams().closed_form_target_x
    meets, misses = IDEAL_ERROR / (2 * target), IDEAL_ERROR / (target / 2)  # 2x target, half the target
    every = TrainParams(candidates=("transfer", "ridge", "mlp", "cell_iv"))
    errors.update(transfer=(1e-9, 1e-9), ridge=(0.01, 0.01), cell_iv=(meets, meets), mlp=(0.03, 0.03))
    result = train(splits, every, progress=False)
    assert trained == ["ridge", "cell_iv"] and set(trained) == set(CLOSED_FORM)
    selection = result.history["selection"]
    assert result.model.design == selection["chosen"] == "cell_iv"
    assert selection["candidates"] == ["ridge", "cell_iv"] and set(selection["not_trained"]) == {"transfer", "mlp"}
    assert selection["not_trained"]["transfer"] == (f"cell_iv is {2 * target:.0f}x better than ideal on both sets "
                                                    f"(closed_form_target_x {target:g})")
    assert "; transfer not trained: cell_iv is" in selection["reason"]
    # misses the target on the DNN-like matrix only: the others are trained, and the better one wins
    trained.clear()
    errors["cell_iv"] = (meets, misses)
    result = train(splits, every, progress=False)
    assert trained == ["ridge", "cell_iv", "transfer", "mlp"] and result.model.design == "transfer"
    assert result.history["selection"]["not_trained"] == {}
    # the default candidates: mlp only by request
    trained.clear()
    train(splits, TrainParams(), progress=False)
    assert trained == ["ridge", "cell_iv", "transfer"]
    # the target is a setting: four times as high, the first case trains everything too
    trained.clear()
    errors["cell_iv"] = (meets, meets)
    train(splits, dataclasses.replace(every, closed_form_target_x=4 * target), progress=False)
    assert trained == ["ridge", "cell_iv", "transfer", "mlp"]
    # a linear array: cell_iv (no better than ridge there) is not fitted; ridge misses, transfer is trained
    trained.clear()
    linear = SplitDataset(**{**vars(splits), "all_linear": True})
    selection = train(linear, TrainParams(), progress=False).history["selection"]
    assert trained == ["ridge", "transfer"] and selection["not_trained"] == {"cell_iv": LINEAR_SKIPS_CELL_IV}
    with pytest.raises(TrainParamsError, match="closed_form_target_x"):
        TrainParams(closed_form_target_x=0.5)


def _mixed_1s1r(tmp_path):
    circuit = {"netlist": str(CIRCUITS / "one_s_one_r.cir"), "rows": 8, "cols": 8, "v_read_max_v": 1.0,
               "r_driver_ohm": 100.0, "r_sense_ohm": 100.0, "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0}
    sampling = {"sampler": "mixed", "mix_fraction": 0.5, "n_conductance": 14, "n_vectors": 32, "seed": 5}
    out = tmp_path / "s1r.h5"
    assert spice_main(["simulate", "--circuit-name", "s1r", "--circuit", json.dumps(circuit), "--sampling",
                       json.dumps(sampling), "--out", str(out), "--quiet", "--no-progress"]) == 0
    return out, SamplingConfig.from_dict(sampling)


@pytest.mark.spice
def test_the_dnn_like_matrices_of_a_mixed_dataset_are_the_ones_the_sampler_drew(tmp_path):
    data, cfg = _mixed_1s1r(tmp_path)
    splits = load_splits(data)
    rows = set(splits.dnn_like_g_rows)
    all_rows = np.concatenate([splits.split(n).g_rows for n in ("train", "val", "test")])
    g = np.concatenate([splits.split(n).g_s for n in ("train", "val", "test")])
    step = (splits.spec.g_on_s - splits.spec.g_off_s) / 15
    on_levels = [bool(np.allclose((gk - splits.spec.g_off_s) / step, np.round((gk - splits.spec.g_off_s) / step),
                                  atol=1e-6)) for gk in g]
    # independent of the sampler's choice stream: DNN-like tiles sit on the 16 levels of a 4-bit cell
    assert [int(r) in rows for r in all_rows] == on_levels
    assert 0 < len(rows) < len(all_rows)
    assert all((matrix_sampler(cfg, int(r)) == "dnn_like") == (int(r) in rows) for r in all_rows)  # g_id == row here


@pytest.mark.spice
def test_the_default_stores_its_selection_record_in_the_surrogate_file(tmp_path, capsys):
    data, _ = _mixed_1s1r(tmp_path)
    surr, fj = tmp_path / "s.h5", tmp_path / "f.json"
    assert surrogate_main(["train", "--data", str(data), "--out", str(surr), "--epochs", "10", "--hidden", "16",
                           "--seed", "1", "--fidelity-json", str(fj), "--quiet"]) == 0
    meta = read_metadata(surr)
    assert meta["train_params"]["design"] == AUTO
    assert meta["train_params"]["closed_form_target_x"] == TrainParams().closed_form_target_x
    record = meta["history"]["selection"]
    assert record["rule"] == SELECTION_RULE and record["closed_form_target_x"] == TrainParams().closed_form_target_x
    assert record["chosen"] == meta["design"] == meta["architecture"]["design"]
    assert set(record["candidates"]) | set(record["not_trained"]) | set(record["left_out"]) == set(TrainParams().candidates)
    assert {"ridge", "cell_iv"} <= set(record["candidates"])
    for design in record["candidates"]:
        s = record["scores"][design]
        assert s["n_dnn_like_samples"] > 0 and 0 < s["dnn_like_rms_fs"] and 0 < s["val_rms_fs"]
        assert s["score"] == pytest.approx(max(s["val_rms_fs"] / s["val_ideal_rms_fs"],
                                               s["dnn_like_rms_fs"] / s["dnn_like_ideal_rms_fs"]), rel=1e-12)
        assert record["train_seconds"][design] > 0
    assert record["chosen"] == min(record["candidates"], key=lambda d: record["scores"][d]["score"])
    report = json.loads(fj.read_text())
    assert report["selection"]["scores"] == record["scores"] and report["design"] == record["chosen"]
    assert f"design auto: {record['reason']}" in describe(surr)


def test_schema_states_the_defaults_of_train_params_and_shipped_configs_set_no_design():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    text = " ".join(schema["$defs"]["circuit"]["properties"]["surrogate"]["description"].split())
    defaults = TrainParams()
    assert f"design (default {defaults.design}" in text
    assert f"candidates (default [{', '.join(defaults.candidates)}]" in text
    stated = re.search(r"closed_form_target_x \(default ([0-9.e+]+)\)", text)
    assert stated and float(stated.group(1)) == defaults.closed_form_target_x
    for name in ("config.yaml", "circuits.yaml", "nonlinear_gap.yaml", "test.yaml"):
        config = yaml.safe_load((REPO / "config" / name).read_text()) or {}
        for circuit, entry in (config.get("circuits") or {}).items():
            surrogate = (entry or {}).get("surrogate") or {}
            assert "design" not in surrogate, f"{name}: {circuit} repeats the default design"
