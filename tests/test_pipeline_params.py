"""pipeline.params: each rule's config slice, fed config dicts directly (the workflow's validated config)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from snakemake.utils import validate

from pipeline import interpreter, params
from tests.conftest import REPO


@pytest.fixture
def config() -> dict:
    """config/test.yaml with the schema's defaults filled, as the Snakefile hands it to the rules."""
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    cfg["results_dir"] = "out"
    return cfg


def test_circuit_json_holds_the_circuit_keys_only(config):
    got = json.loads(params.circuit_json(config, "tiny"))
    assert got["rows"] == 16 and got["netlist"] == "data/circuits/resistive.cir"
    assert not {"sampling", "surrogate", "surrogate_file"} & set(got)
    assert list(got) == sorted(got)  # canonical text: the same settings never re-run a job


def test_sampling_with_a_source_model_reads_that_models_tile_bank(config):
    assert json.loads(params.sampling_json(config, "tiny"))["sampler"] == "mixed"
    assert params.spice_shard_inputs(config, "tiny") == []
    assert params.source_model_path(config, "tiny") == "out/models/digits_cnn.pt"  # the first model
    config["models"]["other"] = copy.deepcopy(config["models"]["digits_cnn"])
    config["circuits"]["tiny"]["sampling"]["source_model"] = "other"
    got = json.loads(params.sampling_json(config, "tiny"))
    assert got["sampler"] == "from_file" and got["source_file"] == "out/spice/tiny.tiles.npz"
    assert "source_model" not in got
    assert params.spice_shard_inputs(config, "tiny") == ["out/spice/tiny.tiles.npz"]
    assert params.source_model_path(config, "tiny") == "out/models/other.pt"


def test_dnn_samples_use_a_seed_apart_from_the_training_draws(config):
    got = json.loads(params.dnn_sampling_json(config, "tiny"))
    assert got["seed"] == config["circuits"]["tiny"]["sampling"]["seed"] + params.DNN_SEED_OFFSET
    assert got["source_file"] == params.tile_bank_path("out", "tiny")


def test_one_shard_file_per_shard(config):
    assert params.spice_shards(config, "tiny") == ["out/spice/tiny/shard0.h5", "out/spice/tiny/shard1.h5"]


def test_a_scenario_overrides_the_shared_crossbar_defaults_and_names_its_circuits(config):
    config["circuits"]["other"] = copy.deepcopy(config["circuits"]["tiny"])
    config["scenarios"]["noise_0.1"].update(circuits=["other"], device_preset="pcm", adc_bits=6)
    got = json.loads(params.scenario_json(config, "noise_0.1"))
    assert got["read_noise_sigma"] == 0.1 and got["adc_bits"] == 6 and got["weight_bits"] == 8
    assert "circuits" not in got and "device_preset" not in got
    assert params.device_preset_flag(config, "noise_0.1") == "--device-preset pcm"
    assert params.device_preset_flag(config, "parasitics") == ""
    assert params.eval_results(config) == [
        "out/eval/tiny/digits_cnn/parasitics.json", "out/eval/other/digits_cnn/parasitics.json",
        "out/eval/other/digits_cnn/noise_0.1.json"]


def test_shared_slices_and_report_files(config):
    assert json.loads(params.crossbar_json(config)) == config["crossbar"]
    unused = {"retrain", "drift_compensation", "lora", "vera"}  # config/test.yaml: none, bn_adapt, bn_finetune
    assert json.loads(params.evaluation_json(config)) == {k: v for k, v in config["evaluation"].items()
                                                          if k not in unused}
    assert json.loads(params.model_json(config, "digits_cnn"))["epochs"] == 2
    config["circuits"]["tiny"]["surrogate"] = {"epochs": 20, "design": "transfer"}
    assert params.surrogate_params_json(config, "tiny") == '{"design": "transfer", "epochs": 20}'
    del config["circuits"]["tiny"]["surrogate"]
    assert params.surrogate_params_json(config, "tiny") == "{}"
    assert set(params.report_plots("out")) == set(params.REPORT_PLOT_KINDS)
    assert params.report_plots("out")["accuracy"] == "out/report/accuracy.png"


def test_wildcard_alternatives_match_exactly_the_names():
    import re

    pattern = re.compile(f"(?:{params.alternatives(['noise_0.1', 'a+b'])})")
    assert pattern.fullmatch("noise_0.1") and pattern.fullmatch("a+b")
    assert not pattern.fullmatch("noise_041") and not pattern.fullmatch("aab")


def test_shard_runtime_grows_with_the_array_and_the_vectors(config):
    small = params.spice_shard_runtime_min(config, "tiny")
    assert small == 5  # 16x16: seconds, the 5-minute floor
    entry = config["circuits"]["tiny"]
    entry.update(rows=128, cols=128)
    entry["sampling"].update(n_conductance=8, n_shards=2, n_vectors=256)
    # 4 matrices x 256 vectors x 0.845 s, x3 margin, + 5 minutes
    assert params.spice_shard_runtime_min(config, "tiny") == int(5 + 3 * 4 * 256 * params.SPICE_S_PER_VECTOR_128 / 60)
    del entry["rows"], entry["cols"]
    entry["preset"] = "paper1_128"
    assert params.spice_shard_runtime_min(config, "tiny") == int(5 + 3 * 4 * 256 * params.SPICE_S_PER_VECTOR_128 / 60)


def test_the_running_interpreter_comes_first_on_path_once(tmp_path):
    python = str(tmp_path / "venv" / "bin" / "python")
    folder = str(tmp_path / "venv" / "bin")
    assert interpreter.path_with_interpreter(python, f"/usr/bin:{folder}:/bin") == f"{folder}:/usr/bin:/bin"
    environ = {"PATH": "/usr/bin"}
    interpreter.use_running_interpreter(environ, python)
    assert environ["PATH"] == f"{folder}:/usr/bin"
    environ = {}
    interpreter.use_running_interpreter(environ, python)
    assert environ["PATH"] == folder


def test_per_read_noise_evaluations_are_scheduled_first():
    config = {"crossbar": {"read_noise_mode": "per_read"},
              "scenarios": {"parasitics": {}, "noise": {"read_noise_sigma": 0.2},
                            "shared": {"read_noise_sigma": 0.2, "read_noise_mode": "per_forward"}}}
    assert params.evaluation_priority(config, "noise") > params.evaluation_priority(config, "parasitics")
    assert params.evaluation_priority(config, "shared") == params.evaluation_priority(config, "parasitics")


def test_a_block_no_listed_method_reads_changes_no_evaluation(config):
    """The schema fills every method's block; one that no listed method reads must not be a job parameter,
    or editing it (or its default) would rerun every evaluation."""
    before = params.evaluation_json(config)
    config["evaluation"]["lora"]["epochs"] = 9
    config["evaluation"]["retrain"]["epochs"] = 9
    assert params.evaluation_json(config) == before
    config["evaluation"]["safeguard"]["holdout_fraction"] = 0.5  # read by bn_finetune
    assert params.evaluation_json(config) != before
    config["evaluation"]["methods"] = ["none", "lora"]
    got = json.loads(params.evaluation_json(config))
    assert got["lora"]["epochs"] == 9 and {"bn_adapt", "safeguard"} <= set(got)
    assert not {"bn_finetune", "retrain", "vera", "drift_compensation"} & set(got)
