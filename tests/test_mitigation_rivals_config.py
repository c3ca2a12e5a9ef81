"""Config mistakes of the mitigation rivals, each caught by `snakemake -n` in one line naming the key, and
the shipped study config accepted."""

from __future__ import annotations

import copy

import pytest
import yaml

from dnn.adapters import model_layer_shapes
from dnn.datasets import load_dataset
from dnn.settings import DATASET_INPUTS, TRAIN_SPLIT_SIZES
from tests.conftest import REPO
from tests.test_trust_config_workflow import TEST_CONFIG, assert_refused, dry_run


def _with_evaluation(tmp_path, **evaluation):
    config = copy.deepcopy(TEST_CONFIG)
    config["evaluation"] = {**config["evaluation"], **evaluation}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.e2e
@pytest.mark.parametrize("evaluation, needles", [
    ({"methods": ["none", "loraa"]}, ["evaluation.methods.1", "'loraa' is not one of"]),
    ({"methods": ["lora"], "lora": {"ranks": [0]}}, ["evaluation.lora.ranks.0", "0 is less than the minimum of 1"]),
    # the test config's bn_cnn: first conv 1 -> 32 channels, 3x3: d_in 9, so LoRA ranks stop at 9
    ({"methods": ["lora"], "lora": {"ranks": [10]}},
     ["evaluation.lora.ranks: lora rank 10: expected an integer in [1, 9]", "layer features.0: 9 x 32",
      "models.digits_cnn"]),
    ({"methods": ["vera"], "vera": {"ranks": [289], "param_budget_x_bn": []}},
     ["evaluation.vera.ranks: vera rank 289: expected an integer in [1, 288]"]),
    ({"calibration_sizes": [10, 2000]},
     ["evaluation.calibration_sizes = 2000: expected at most 1437 images", "models.digits_cnn, digits"]),
    ({"calibration_samples": 1500}, ["evaluation.calibration_samples = 1500: expected at most 1437 images"]),
    ({"safeguard": {"holdout_fraction": 0.9}}, ["evaluation.safeguard.holdout_fraction"]),
], ids=["unknown-method", "rank-0", "lora-rank-above-layer", "vera-rank-above-layer", "sweep-above-data",
        "calibration-above-data", "holdout-too-large"])
def test_a_rivals_config_mistake_is_one_line_at_dry_run(tmp_path, evaluation, needles):
    assert_refused(dry_run(_with_evaluation(tmp_path, **evaluation), "--replace-workflow-config"), *needles)


@pytest.mark.e2e
def test_the_shipped_rivals_config_passes_a_dry_run():
    result = dry_run(REPO / "config" / "rivals.yaml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]


def test_the_static_dataset_facts_match_the_loaded_data():
    for name in ("digits", "mnist_subset"):  # offline; cifar10's 50,000 / 3x32x32 is its format
        data = load_dataset(name)
        assert len(data.train) == TRAIN_SPLIT_SIZES[name]
        assert (data.in_channels, data.image_size, data.num_classes) == DATASET_INPUTS[name]
    assert model_layer_shapes("bn_cnn", "digits", 1.0, "conv")[0].d_in == 9
