"""The software model's stopping rule (dnn/train.py): early stopping on a seeded validation split that
keeps the best epoch, the fixed schedule kept as it was, and its config keys checked before any job."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import TensorDataset

from dnn.cli import main
from dnn.datasets import load_dataset
from dnn.models import build_model
from dnn.settings import TrainSettings
from dnn.train import (
    best_epoch,
    fit,
    make_loader,
    split_validation,
    train_model,
    train_software_model,
    validation_scores,
)
from pipeline.config import ConfigError, check_schema, validate_config
from tests.conftest import REPO, assert_cli_error
from tests.test_trust_config_workflow import assert_refused, dry_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEST_CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
DIGITS = {"in_channels": 1, "num_classes": 10, "image_size": 8}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _linear() -> nn.Module:
    """No BN: with lr 0 the network, and so its validation score, never changes."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_split_validation_is_seeded_disjoint_and_complete(digits):
    fit_part, val = split_validation(digits.train, 0.1, seed=5)
    n = len(digits.train)
    assert len(val) == round(0.1 * n) and len(fit_part) + len(val) == n
    assert sorted(fit_part.indices + val.indices) == list(range(n))
    again, other = split_validation(digits.train, 0.1, seed=5)[1], split_validation(digits.train, 0.1, seed=6)[1]
    assert again.indices == val.indices and other.indices != val.indices
    assert len(split_validation(TensorDataset(torch.zeros(3, 1)), 0.01, 0)[1]) == 1  # at least one held out
    assert len(split_validation(TensorDataset(torch.zeros(2, 1)), 0.5, 0)[0]) == 1   # at least one to train on
    with pytest.raises(ValueError, match="at least 2 training items"):
        split_validation(TensorDataset(torch.zeros(1, 1)), 0.5, 0)


def test_stops_when_validation_stalls_and_keeps_the_first_best(digits):
    """lr 0: every epoch scores exactly as the first, which is never beaten: with patience 3 training stops
    after 1 + 3 epochs of the 50 allowed and keeps epoch 1."""
    fit_part, val = split_validation(digits.train, 0.1, seed=0)
    model = _linear()
    history = fit(model, make_loader(fit_part, 64, shuffle=True), model.parameters(), 50, 0.0,
                  val_loader=make_loader(val, 256), patience=3, progress=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert len({r["val_loss"] for r in history}) == 1 and best_epoch(history) == 1


def test_keeps_the_best_state_not_the_last(digits):
    """A small training set and a large learning rate overfit: the validation loss stops improving, training
    stops early, and the model left behind is the best epoch's (BN running statistics included), scored
    exactly as that epoch was, and not the last epoch's."""
    fit_part, val = split_validation(digits.train, 0.5, seed=1)
    small = torch.utils.data.Subset(fit_part, list(range(120)))
    val_loader = make_loader(val, 256)
    torch.manual_seed(0)
    model = build_model("bn_cnn", **DIGITS)
    history = train_model(model, make_loader(small, 32, shuffle=True, seed=1), epochs=60, lr=0.02, seed=1,
                          progress=False, val_loader=val_loader, patience=4)
    kept = best_epoch(history)
    assert len(history) < 60 and len(history) == kept + 4  # stopped 4 epochs after the best
    assert min(r["val_loss"] for r in history) == history[kept - 1]["val_loss"] < history[-1]["val_loss"]
    loss, accuracy = validation_scores(model, val_loader, torch.device("cpu"))
    assert (loss, accuracy) == (history[kept - 1]["val_loss"], history[kept - 1]["val_accuracy"])
    # the same run cut at the kept epoch (no early stopping, no restore) ends in the same state, bit for bit
    torch.manual_seed(0)
    cut = build_model("bn_cnn", **DIGITS)
    train_model(cut, make_loader(small, 32, shuffle=True, seed=1), epochs=kept, lr=0.02, seed=1, progress=False)
    assert _states_equal(model, cut)


def test_val_accuracy_monitor_keeps_the_most_accurate_epoch():
    history = [{"epoch": 1, "val_loss": 0.5, "val_accuracy": 0.8}, {"epoch": 2, "val_loss": 0.4, "val_accuracy": 0.9},
               {"epoch": 3, "val_loss": 0.3, "val_accuracy": 0.9}, {"epoch": 4, "val_loss": 0.6, "val_accuracy": 0.7}]
    assert best_epoch(history, "val_accuracy") == 2 and best_epoch(history, "val_loss") == 3
    with pytest.raises(ValueError, match="unknown monitor 'acc'"):
        best_epoch(history, "acc")


def test_same_seed_same_model_bit_for_bit(digits):
    settings = TrainSettings(dataset="digits", model="bn_cnn", epochs=40, patience=3, lr=0.01, seed=4, width=0.5)
    runs = []
    for _ in range(2):
        torch.manual_seed(4)
        model = build_model("bn_cnn", **DIGITS, width=0.5)
        history, stopping = train_software_model(model, digits.train, settings, "cpu", progress=False)
        runs.append((model, history, stopping))
    (a, ha, sa), (b, hb, sb) = runs
    assert _states_equal(a, b) and ha == hb and sa == sb
    assert sa["rule"] == "early_stopping" and sa["epochs_run"] == len(ha) and sa["n_validation"] == 144
    assert sa["epoch_kept"] == best_epoch(ha) and sa["stopped_early"] == (len(ha) < 40)


def test_without_patience_the_fixed_schedule_is_unchanged(digits):
    """patience null (the default): exactly `epochs` epochs on the whole training split, the same model as
    training it directly with the shuffled loader, and no validation split."""
    settings = TrainSettings(dataset="digits", model="bn_cnn", epochs=2, lr=0.003, seed=3, width=0.25)
    assert settings.patience is None
    torch.manual_seed(3)
    model = build_model("bn_cnn", **DIGITS, width=0.25)
    history, stopping = train_software_model(model, digits.train, settings, "cpu", progress=False)
    torch.manual_seed(3)
    direct = build_model("bn_cnn", **DIGITS, width=0.25)
    direct_history = train_model(direct, make_loader(digits.train, 64, shuffle=True, seed=3), 2, 0.003, seed=3,
                                 progress=False)
    assert _states_equal(model, direct) and history == direct_history
    assert stopping == {"rule": "fixed_epochs", "epochs_run": 2, "epoch_kept": 2, "n_fit": 1437, "n_validation": 0}
    assert "val_loss" not in history[0]


def test_fit_needs_a_validation_loader_for_patience(digits):
    model = _linear()
    with pytest.raises(ValueError, match="early stopping \\(patience\\) needs a val_loader"):
        fit(model, make_loader(digits.train, 64), model.parameters(), 2, 0.01, patience=2, progress=False)


def test_cli_train_records_the_stopping_rule(tmp_path):
    out, metrics = tmp_path / "m.pt", tmp_path / "m.json"
    params = {"dataset": "digits", "model": "bn_cnn", "width": 0.25, "epochs": 30, "patience": 2, "val_fraction": 0.2,
              "monitor": "val_accuracy", "seed": 1, "lr": 0.01}
    assert main(["train", "-q", "--params-json", json.dumps(params), "--no-progress", "--out", str(out),
                 "--metrics", str(metrics)]) == 0
    m = json.loads(metrics.read_text())
    stopping = m["stopping"]
    assert stopping["monitor"] == "val_accuracy" and stopping["n_validation"] == round(0.2 * 1437)
    assert stopping["epochs_run"] == len(m["history"]) and stopping["epoch_kept"] == best_epoch(m["history"],
                                                                                                "val_accuracy")
    assert m["params"]["patience"] == 2


def test_cli_refuses_bad_stopping_settings(tmp_path, capsys):
    base = ["train", "--dataset", "digits", "--model", "bn_cnn", "--out", str(tmp_path / "m.pt")]
    assert_cli_error(capsys, main, [*base, "--val-fraction", "0.7"],
                     r"model\.val_fraction = 0\.7: expected a number in \(0, 0\.5\]")
    assert_cli_error(capsys, main, [*base, "--params-json", '{"monitor": "acc"}'],
                     r"model\.monitor = 'acc': expected one of \['val_loss', 'val_accuracy'\]")
    for flag, value, message in (("--monitor", "acc", "invalid choice: 'acc'"),
                                 ("--patience", "0", "argument --patience: expected an integer >= 1, got '0'")):
        with pytest.raises(SystemExit) as exc:
            main([*base, flag, value])
        assert exc.value.code == 2 and message in capsys.readouterr().err


# ----------------------------------------------------------------------------- config, before any job
def _with_model(**keys) -> dict:
    config = copy.deepcopy(TEST_CONFIG)
    config["models"]["digits_cnn"].update(keys)
    return config


@pytest.mark.parametrize("keys, message", [
    ({"patience": 0}, "models.digits_cnn.patience: 0 is less than the minimum of 1"),
    ({"patience": 2.5}, "models.digits_cnn.patience: 2.5 is not of type 'integer', 'null'"),
    ({"val_fraction": 0.6}, "models.digits_cnn.val_fraction: 0.6 is greater than the maximum of 0.5"),
    ({"val_fraction": 0}, "models.digits_cnn.val_fraction: 0 is less than or equal to the minimum of 0"),
    ({"monitor": "acc"}, "models.digits_cnn.monitor: 'acc' is not one of ['val_loss', 'val_accuracy']"),
])
def test_schema_names_the_bad_stopping_key(keys, message):
    with pytest.raises(ConfigError, match="^" + message.replace("[", "\\[").replace("(", "\\(").replace(".", "\\.")):
        check_schema(_with_model(**keys), REPO / "config" / "schema.yaml")


@pytest.mark.parametrize("keys, message", [
    ({"patience": 0}, r"models\.digits_cnn\.patience = 0: expected null \(a fixed number of epochs\) or an integer"),
    ({"patience": True}, r"models\.digits_cnn\.patience = True"),
    ({"val_fraction": 0.75}, r"models\.digits_cnn\.val_fraction = 0\.75: expected a number in \(0, 0\.5\]"),
    ({"monitor": "loss"}, r"models\.digits_cnn\.monitor = 'loss': expected one of \['val_loss', 'val_accuracy'\]"),
])
def test_settings_name_the_bad_stopping_key(keys, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_with_model(**keys))


def test_shipped_configs_train_to_convergence_and_validate():
    for name in ("config.yaml", "mnist.yaml"):
        config = yaml.safe_load((REPO / "config" / name).read_text())
        for entry in config["models"].values():
            assert entry["patience"] >= 1 and entry["epochs"] >= 10 * entry["patience"], name
        validate_config(config)


@pytest.mark.e2e
def test_snakemake_dry_run_refuses_a_bad_patience(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with_model(patience=-1)))
    assert_refused(dry_run(path, "--replace-workflow-config"), "models.digits_cnn.patience: -1 is less than the minimum")
