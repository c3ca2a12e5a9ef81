"""Which ``evaluation`` blocks each method reads: ``dnn.settings.METHOD_SETTINGS`` (what the workflow keeps
in a job's parameters) must be exactly the blocks whose values reach the method's arguments
(``dnn.evaluate.method_kwargs``), and ``starting_method`` names the state a method starts from."""

from __future__ import annotations

import dataclasses

import pytest

from dnn.evaluate import method_kwargs, start_of
from dnn.settings import METHOD_NAMES, METHOD_SETTINGS, EvaluationSettings, starting_method, used_evaluation

CHANGES = {  # one non-default value per block
    "bn_adapt": {"n_draws": 7}, "bn_finetune": {"epochs": 9}, "retrain": {"epochs": 9},
    "safeguard": {"holdout_fraction": 0.5}, "drift_compensation": {"per_column": True},
    "lora": {"epochs": 9}, "vera": {"epochs": 9},
}


def _kwargs(settings: EvaluationSettings, method: str) -> dict:
    return method_kwargs(settings, method, max_batches=None, progress=False, rank=2)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_the_blocks_a_method_reads_are_the_ones_listed(method):
    base = EvaluationSettings()
    read = set()
    for block, change in CHANGES.items():
        changed = dataclasses.replace(base, **{block: dataclasses.replace(getattr(base, block), **change)})
        if _kwargs(changed, method) != _kwargs(base, method):
            read.add(block)
    assert read == set(METHOD_SETTINGS[method])


def test_every_method_and_block_is_listed():
    assert set(METHOD_SETTINGS) == set(METHOD_NAMES)
    blocks = {f.name for f in dataclasses.fields(EvaluationSettings)
              if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)}
    assert set(CHANGES) == {b for names in METHOD_SETTINGS.values() for b in names} == blocks - {"energy"}


def test_used_evaluation_keeps_shared_keys_and_the_listed_methods_blocks():
    evaluation = {"methods": ["none", "drift_compensation"], "seeds": [0], "energy": {"enabled": False},
                  **{b: {} for b in CHANGES}}
    assert used_evaluation(evaluation) == {"methods": ["none", "drift_compensation"], "seeds": [0],
                                           "energy": {"enabled": False}, "drift_compensation": {}}
    bad = {"methods": "lora", "lora": {}}  # not a list: left whole for the settings check to name
    assert used_evaluation(bad) == bad


def test_starting_methods():
    assert {m: starting_method(m) for m in METHOD_NAMES} == {
        "none": "", "bn_adapt": "", "drift_compensation": "", "bn_finetune": "bn_adapt", "adapt_finetune": "bn_adapt",
        "retrain": "bn_adapt", "lora": "bn_adapt", "vera": "bn_adapt"}
    assert [starting_method(m, reestimate_stats=False) for m in ("bn_finetune", "lora", "vera", "adapt_finetune")] \
        == ["none", "none", "none", "bn_adapt"]
    base = EvaluationSettings()
    lora = dataclasses.replace(base, lora=dataclasses.replace(base.lora, reestimate_stats=False))
    assert (start_of(lora, "lora"), start_of(lora, "vera"), start_of(lora, "bn_finetune")) == ("none", "bn_adapt", "bn_adapt")
    no_re = dataclasses.replace(base, bn_finetune=dataclasses.replace(base.bn_finetune, reestimate_stats=False))
    assert (start_of(no_re, "adapt_finetune"), start_of(no_re, "bn_finetune")) == ("bn_adapt", "none")
