"""Each default has one home: the settings dataclasses. The public functions that take the same
setting as a keyword default to exactly the value the settings (and so the CLI and the schema) use."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from dnn import mitigation
from dnn.settings import BnAdaptSettings, BnFinetuneSettings, RetrainSettings, TrainSettings
from surrogate.params import TrainParams

# public function -> (settings class, the keywords it must take from it)
SIGNATURES = {
    mitigation.bn_adapt: (BnAdaptSettings, {"n_batches", "n_draws"}),
    mitigation.bn_finetune: (BnFinetuneSettings, {"epochs", "lr", "lr_step_epochs", "lr_gamma", "optimizer"}),
    mitigation.retrain: (RetrainSettings, {"epochs", "lr"}),
}


def _other_public_functions():
    from dnn.train import train_model
    from surrogate.data import load_splits, split_dataset

    return {train_model: (TrainSettings, {"epochs", "lr", "optimizer", "weight_decay", "seed", "patience", "monitor"}),
            load_splits: (TrainParams, {"val_fraction", "test_fraction", "seed"}),
            split_dataset: (TrainParams, {"val_fraction", "test_fraction", "seed"})}


def _check(func, settings, keys):
    defaults = {f.name: f.default for f in dataclasses.fields(settings)}
    params = inspect.signature(func).parameters
    shared = {name for name, p in params.items() if p.default is not inspect.Parameter.empty and name in defaults}
    assert shared == keys, f"{func.__qualname__}: shares {sorted(shared)} with {settings.__name__}"
    for name in shared:
        assert params[name].default == defaults[name], (
            f"{func.__qualname__}({name}={params[name].default!r}) but {settings.__name__}.{name} = {defaults[name]!r}")


def test_every_public_procedure_of_dnn_mitigation_is_checked():
    public = {f for name, f in inspect.getmembers(mitigation, inspect.isfunction)
              if not name.startswith("_") and f.__module__ == mitigation.__name__}
    with_setting_defaults = {f for f in public
                             if any(p.default is not inspect.Parameter.empty and p.name in {
                                 fl.name for s in (BnAdaptSettings, BnFinetuneSettings, RetrainSettings)
                                 for fl in dataclasses.fields(s)} for p in inspect.signature(f).parameters.values())}
    assert with_setting_defaults == set(SIGNATURES)


@pytest.mark.parametrize("func", list(SIGNATURES), ids=lambda f: f.__name__)
def test_mitigation_defaults_are_the_settings_defaults(func):
    _check(func, *SIGNATURES[func])


def test_training_and_split_defaults_are_the_settings_defaults():
    for func, (settings, keys) in _other_public_functions().items():
        _check(func, settings, keys)
