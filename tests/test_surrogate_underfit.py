"""A dataset too small for a design: the validation error never falls during training. For a design started
from random weights no surrogate is written, and the message says how much more data the design needs (or
which setting, when the training error did not fall either); design auto leaves such a candidate out of its
choice. The transfer design keeps the physics prior it started from, with the same message as a warning."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from surrogate import train as train_mod
from surrogate.models import build_model
from surrogate.params import TrainParams
from surrogate.physics import TileSpec
from surrogate.train import NOTHING_TO_LEARN_FS, TooLittleDataError, TrainResult, train, underfit_message

TILE = TileSpec(rows=4, cols=3, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=0.0, v_read_max_v=0.2,
                r_driver_ohm=100.0, r_sense_ohm=100.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)


def _history(best_epoch=0, start=2e-3, first=3e-3, last=1e-3, n_val=64, epochs=200):
    return {"best_epoch": best_epoch, "initial_val_rms_fs": start, "initial_train_rms_fs": first,
            "final_train_rms_fs": last, "n_val_samples": n_val, "epochs_run": epochs}


def test_a_training_error_that_falls_while_validation_does_not_asks_for_twice_the_matrices():
    text = underfit_message("transfer", _history(), n_matrices=10, n_train_matrices=7, where="d.h5")
    assert text == ("d.h5: the transfer surrogate's validation error never fell below its initial 2.000e-03 of "
                    "full scale in 200 epochs: the training error fell (3.000e-03 -> "
                    "1.000e-03), so 7 training matrices are too few for this design: simulate at least 10 more "
                    "(sampling.n_conductance >= 20) or choose surrogate.design ridge")


def test_a_training_error_that_does_not_fall_names_the_settings():
    text = underfit_message("mlp", _history(first=3e-3, last=2.9e-3), n_matrices=10, n_train_matrices=7, where="d")
    assert text.endswith("the training error did not fall either (3.000e-03 -> 2.900e-03): raise surrogate.epochs "
                         "or change surrogate.lr")


@pytest.mark.parametrize("change", [{"best_epoch": 3}, {"n_val": 0}, {"start": NOTHING_TO_LEARN_FS / 2},
                                    {"start": math.nan}])
def test_no_underfit_when_training_improved_or_there_was_nothing_to_judge_or_learn(change):
    assert underfit_message("transfer", _history(**change), 10, 7, "d") is None


def test_auto_leaves_out_a_candidate_whose_validation_error_never_fell(monkeypatch):
    def fake(splits, params, progress=True):
        if params.design == "mlp":
            raise TooLittleDataError("d: the mlp surrogate's validation error never fell")
        return TrainResult(model=build_model(params.design, TILE), history={"best_val_rms_fs": 2e-3})

    monkeypatch.setattr(train_mod, "_train_gradient", fake)
    monkeypatch.setattr(train_mod, "_fit_closed_form", lambda splits, params: fake(splits, params))
    monkeypatch.setattr(train_mod, "selection_score", lambda model, splits: {  # every candidate 500x: all trained
        "score": 2e-3, "val_x_better_than_ideal": 500.0, "dnn_like_x_better_than_ideal": 500.0,
        "n_dnn_like_samples": 4, "n_dnn_like_matrices": 1})
    every = TrainParams(design="auto", candidates=("transfer", "ridge", "mlp", "cell_iv"))
    result = train(SimpleNamespace(all_linear=False), every, progress=False)
    selection = result.history["selection"]
    assert result.model.design == "transfer" and selection["candidates"] == ["transfer", "ridge", "cell_iv"]
    assert selection["left_out"] == {"mlp": "d: the mlp surrogate's validation error never fell"}
    assert selection["reason"].endswith("; mlp left out: its validation error never fell")
    with pytest.raises(TooLittleDataError, match="no candidate's validation error fell; d: the mlp"):
        train(None, TrainParams(design="auto", candidates=("mlp",)), progress=False)
