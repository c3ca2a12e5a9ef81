"""Long work says what it is doing and the time left: a bar on a terminal, log lines in a log file."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import TensorDataset

from dnn.config import CrossbarConfig
from dnn.datasets import DatasetSplit
from dnn.evaluate import evaluate_methods
from dnn.models import build_model
from dnn.mvm import IdealTileMVM
from dnn.settings import BnFinetuneSettings, EvaluationSettings
from dnn.train import fit, make_loader
from xbarchar.progress import Progress, format_duration

STAGE = "scenario noise_0.2, seed 2/4, bn_finetune epoch 3/5"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_at_the_interval_and_at_close(capsys, caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="xbarchar.progress"):
        with Progress(10, STAGE, "batch", log_every_s=20.0, clock=clock) as bar:
            clock.now += 5
            bar.advance(2)
            assert caplog.messages == []  # 5 s: before the interval
            clock.now += 15
            bar.advance(2, "loss 0.1234")
            assert caplog.messages == [f"{STAGE}: 4/10 batch (40%), 5.0 s/batch over 20 s, ~30 s left; loss 0.1234"]
            clock.now += 10
            bar.advance(1)  # 10 s after the last line: none
            assert len(caplog.messages) == 1
            clock.now += 90
        assert caplog.messages[-1] == (f"{STAGE}: 5/10 batch (50%), 24.0 s/batch over 2 min 00 s, ~2 min 00 s left; "
                                       "loss 0.1234")
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: no bar


def test_unknown_total_gives_count_and_rate_only(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="xbarchar.progress"):
        bar = Progress(None, "ngspice shard 0", "G", log_every_s=0.0, clock=clock).start()
        clock.now += 2
        bar.advance(50)
        bar.close()
        bar.close()  # once only
    assert caplog.messages == ["ngspice shard 0: 50 G, 25 G/s over 2 s"] * 2


def test_disabled_shows_nothing(capsys, caplog):
    clock = FakeClock()
    with caplog.at_level(logging.DEBUG):
        with Progress(4, STAGE, enabled=False, log_every_s=0.0, clock=clock) as bar:
            for _ in range(4):
                clock.now += 30
                bar.advance()
        assert bar.done == 4
    assert caplog.messages == [] and capsys.readouterr().err == ""


def test_a_terminal_gets_a_bar_and_no_log_lines(capsys, caplog):
    with caplog.at_level(logging.INFO, logger="xbarchar.progress"):
        with Progress(3, "calibration", "vec", log_every_s=0.0, is_terminal=lambda: True) as bar:
            bar.advance(3)
    err = capsys.readouterr().err
    assert "calibration" in err and "3/3" in err and "\r" in err
    assert caplog.messages == []


def test_inner_lines_name_the_outer_stage(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="xbarchar.progress"):
        with Progress(2, "scenario noise_0.2, seed 1/2", "run", clock=clock):
            with Progress(1, "retrain epoch 1/1", "batch", clock=clock) as inner:
                inner.advance()
        with Progress(1, "alone", clock=clock):
            pass
    assert caplog.messages[0].startswith("scenario noise_0.2, seed 1/2 > retrain epoch 1/1: 1/1 batch (100%)")
    assert caplog.messages[1].startswith("scenario noise_0.2, seed 1/2: 0/2 run (0%)")
    assert caplog.messages[2].startswith("alone: 0/1 it")  # the closed ones no longer prefix it


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (59.6, "1 min 00 s"), (200, "3 min 20 s"),
                                               (7500, "2 h 05 min")])
def test_durations_read_as_people_say_them(seconds, text):
    assert format_duration(seconds) == text


# ----------------------------------------------------------------------------- in the DNN stage
def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("bn_cnn", 1, 10, 8, width=0.25)


def test_fit_logs_its_epochs_and_writes_no_carriage_returns(capsys, caplog):
    model = _model()
    with caplog.at_level(logging.INFO, logger="dnn.train"):
        history = fit(model, make_loader(_data(64, 0), 32, shuffle=True), model.parameters(), epochs=2, lr=1e-3)
    assert len(history) == 2
    assert any(m.startswith("train epoch 1/2: loss") for m in caplog.messages)
    assert any(m.startswith("train epoch 2/2: 4/4 batch (100%)") and "; loss " in m for m in caplog.messages)
    assert "\r" not in capsys.readouterr().err


def test_evaluation_progress_names_scenario_seed_and_method(capsys, caplog):
    split = DatasetSplit("random", _data(64, 1), _data(32, 2), 10, 1, 8, (0.0,), (1.0,))
    settings = EvaluationSettings(methods=("none", "bn_finetune"), seeds=(0, 3), calibration_samples=32,
                                  eval_draws=2, bn_finetune=BnFinetuneSettings(epochs=1, reestimate_stats=False))
    with caplog.at_level(logging.INFO, logger="dnn"):
        evaluate_methods(_model(), split, IdealTileMVM(32, 16, 5e-6, 50e-6, 0.2), CrossbarConfig(), settings,
                         torch.device("cpu"), batch_size=32, max_batches=1, scenario="noise_0.2")
    lines = caplog.messages
    assert any(m.startswith("scenario noise_0.2, seed 1/2 (0), bn_finetune > bn_finetune epoch 1/1: 1/1 batch")
               for m in lines)
    assert any(m.startswith("scenario noise_0.2, seed 2/2 (3), bn_finetune > bn_finetune epoch 1/1") for m in lines)
    assert lines[-1].startswith("scenario noise_0.2, seed 2/2 (3), bn_finetune: 8/8 test pass (100%)")
    assert "bn_finetune test pass 2/2: accuracy" in lines[-1]
    assert "\r" not in capsys.readouterr().err
