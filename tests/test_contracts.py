"""Contracts between the packages: one home for every default, every config mistake caught when the
workflow is parsed (before any job), one way to read JSON arguments, a versioned evaluation result."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import yaml

from dnn.report import ReportSettings
from dnn.results import EvaluationResult, ResultFileError
from dnn.settings import DATASET_NAMES, METHOD_NAMES, MODEL_NAMES, EvaluationSettings, TrainSettings
from pipeline.config import ConfigError, Limits, validate_config
from spice.sampling import SamplingConfig
from surrogate.params import DESIGNS
from tests.conftest import REPO
from xbarchar.cli import ArgumentError, load_json_object

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
TEST_CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())


def schema_defaults(node: dict) -> dict:
    """{key: default} of the properties of a schema object that declare one."""
    return {k: v["default"] for k, v in node.get("properties", {}).items() if "default" in v and v["default"] != {}}


def dataclass_defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def plain(x):
    return [plain(v) for v in x] if isinstance(x, (list, tuple)) else x


@pytest.mark.parametrize("node, cls", [
    (SCHEMA["$defs"]["model"], TrainSettings),
    (SCHEMA["properties"]["evaluation"], EvaluationSettings),
    (SCHEMA["properties"]["evaluation"]["properties"]["bn_adapt"], "BnAdaptSettings"),
    (SCHEMA["properties"]["evaluation"]["properties"]["bn_finetune"], "BnFinetuneSettings"),
    (SCHEMA["properties"]["evaluation"]["properties"]["retrain"], "RetrainSettings"),
    (SCHEMA["$defs"]["circuit"]["properties"]["sampling"], SamplingConfig),
    (SCHEMA["properties"]["report"], ReportSettings),
    (SCHEMA["properties"]["limits"], Limits),
], ids=["model", "evaluation", "bn_adapt", "bn_finetune", "retrain", "sampling", "report", "limits"])
def test_every_schema_default_is_the_settings_default(node, cls):
    import dnn.settings

    if isinstance(cls, str):
        cls = getattr(dnn.settings, cls)
    defaults = dataclass_defaults(cls)
    declared = schema_defaults(node)
    assert declared, "the schema declares defaults here"
    for key, value in declared.items():
        assert key in defaults, f"schema default for unknown key {key}"
        assert plain(defaults[key]) == value, f"{cls.__name__}.{key}: schema {value!r} != dataclass {defaults[key]!r}"


def test_torch_free_name_lists_match_the_registries():
    from dnn.datasets import DATASETS
    from dnn.mitigation import METHODS
    from dnn.models import MODELS
    from surrogate.models import DESIGN_CLASSES  # the designs build_model builds

    assert set(MODEL_NAMES) == set(MODELS) and set(DATASET_NAMES) == set(DATASETS)
    assert tuple(METHOD_NAMES) == tuple(METHODS) and set(DESIGNS) == set(DESIGN_CLASSES)


def test_the_schema_names_every_surrogate_design():
    """The surrogate slice is checked by TrainParams (no defaults in the schema: a config's training
    settings are exactly what it writes); the schema's description lists every design and auto."""
    from surrogate.params import AUTO

    text = SCHEMA["$defs"]["circuit"]["properties"]["surrogate"]["description"]
    assert all(name in text for name in DESIGNS + (AUTO, "candidates"))
    config = broken("circuits.tiny.surrogate", {"design": "auto", "candidates": ["ridge", "transfer"], "epochs": 3})
    validate_config(config)


def test_settings_modules_and_the_config_check_do_not_import_torch():
    code = ("import sys, dnn.config, dnn.settings, dnn.results, surrogate.params, surrogate.contract, pipeline.config;"
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ every mistake before any job
def broken(path: str, value) -> dict:
    """The test config with ``value`` at the dotted ``path`` (None deletes the key)."""
    config = copy.deepcopy(TEST_CONFIG)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return config


@pytest.mark.parametrize("path, value, message", [
    ("circuits.tiny.surrogate.epoch", 3, r"circuits\.tiny\.surrogate: unknown key\(s\) \['epoch'\]"),
    ("circuits.tiny.surrogate.design", "transfr", r"circuits\.tiny\.surrogate.*design='transfr'"),
    ("circuits.tiny.surrogate.candidates", ["ridge", "cnn"], r"circuits\.tiny\.surrogate.*candidates=\('ridge', 'cnn'\)"),
    ("models.digits_cnn.model", "bn_cn", r"models\.digits_cnn\.model = 'bn_cn': expected one of"),
    ("models.digits_cnn.seed", -1, r"models\.digits_cnn\.seed = -1"),
    ("circuits.tiny.g_off_s", 1e-3, r"circuits\.tiny.*g_off_s .* must be smaller than g_on_s"),
    ("circuits.tiny.netlist", "data/circuits/missing.cir", r"circuits\.tiny: circuit file .*missing\.cir does not exist"),
    ("circuits.tiny.sampling.seed", -2, r"circuits\.tiny\.sampling\.seed: expected an integer in \[0, 4294967295\]"),
    ("circuits.tiny.sampling.source_model", "nope", r"circuits\.tiny\.sampling\.source_model: unknown model 'nope'"),
    ("evaluation.bn_adapt.ndraws", 2, r"evaluation\.bn_adapt: unknown key\(s\) \['ndraws'\]"),
    ("evaluation.seeds", [0, -1], r"evaluation\.seeds"),
    ("evaluation.methods", ["none", "magic"], r"evaluation\.methods"),
    ("scenarios.bad", {"adc_bit": 4}, r"scenarios\.bad .*unknown CrossbarConfig key\(s\) \['adc_bit'\]"),
    ("scenarios.bad", {"circuits": ["other"]}, r"scenarios\.bad\.circuits: unknown circuit"),
    ("report.fail_drop_points", -1, r"report"),
    ("circuits.tiny.v_gate_v", "1.8V", r"circuits\.tiny.*v_gate_v must be a number in \[-20, 20\] V, got '1\.8V'"),
])
def test_config_mistakes_are_named_before_any_job(path, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(broken(path, value))


def test_a_hostile_circuit_file_fails_the_config_check(tmp_path):
    path = tmp_path / "evil.cir"
    path.write_text(".subckt cell row col params: g=1e-5\nR1 row col {1/g}\n.ends cell\n.include /etc/passwd\n")
    with pytest.raises(ConfigError, match=r"circuits\.tiny: circuit file .*evil\.cir, line 4: dot command"):
        validate_config(broken("circuits.tiny.netlist", str(path)))


def test_an_incompatible_surrogate_file_fails_the_config_check(tmp_path):
    import h5py

    from xbarchar.integrity import seal

    path = tmp_path / "s.h5"
    tile = {"rows": 8, "cols": 8, "g_off_s": 5e-6, "g_on_s": 5e-5, "v_read_min_v": 0.0, "v_read_max_v": 0.2}
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "xbarchar.surrogate"
        f.attrs["format_version"] = 2
        f.attrs["architecture"] = json.dumps({"design": "transfer", "tile": tile, "hyperparameters": {}})
        seal(f)
    with pytest.raises(ConfigError, match=r"circuits\.tiny\.surrogate_file: .*s\.h5: surrogate does not fit circuit "
                                          r"'tiny' \(16x16\): rows 8 in the file != 16"):
        validate_config(broken("circuits.tiny.surrogate_file", str(path)))
    with pytest.raises(ConfigError, match=r"circuits\.tiny\.surrogate_file: .*missing\.h5: file does not exist"):
        validate_config(broken("circuits.tiny.surrogate_file", str(tmp_path / "missing.h5")))


def test_a_cell_with_a_gate_needs_its_gate_voltage_in_the_config():
    config = broken("circuits.tiny.netlist", "data/circuits/one_t_one_r.cir")
    with pytest.raises(ConfigError, match=r"circuits\.tiny\.v_gate_v: the cell of data/circuits/one_t_one_r\.cir "
                                          r"has a gate pin; set the gate-line voltage in V"):
        validate_config(config)
    config["circuits"]["tiny"]["v_gate_v"] = 0.0  # explicitly off is a choice, not a mistake
    validate_config(config)


def merged(base: dict, overlay: dict) -> dict:
    """``overlay`` merged into ``base`` key by key, as snakemake merges a --configfile into the default."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*.yaml") if p.name != "schema.yaml"))
def test_the_shipped_configs_pass(name):
    validate_config(TEST_CONFIG)
    text = (REPO / "config" / name).read_text()
    config = yaml.safe_load(text)
    if name != "config.yaml" and "--replace-workflow-config" not in text:  # an overlay on the default
        config = merged(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), config)
    validate_config(config)


@pytest.mark.e2e
@pytest.mark.parametrize("path, value, message", [
    ("circuits.tiny.surrogate.epoch", 3, "circuits.tiny.surrogate: unknown key(s) ['epoch']"),
    ("models.digits_cnn.model", "bn_cn", "models.digits_cnn.model = 'bn_cn'"),
])
def test_snakemake_dry_run_fails_naming_the_key(tmp_path, path, value, message):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(broken(path, value)))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(config),
                             "--replace-workflow-config"], capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


# ------------------------------------------------------------------ JSON arguments
def test_json_arguments_inline_long_at_file_or_path(tmp_path):
    long = {"methods": ["none"], "note": "x" * 400}  # longer than any file name may be
    assert load_json_object(json.dumps(long), "--evaluation-json") == long
    path = tmp_path / "ev.json"
    path.write_text(json.dumps({"seeds": [3]}))
    assert load_json_object(str(path), "--x") == load_json_object(f"@{path}", "--x") == {"seeds": [3]}
    assert load_json_object("", "--x") == {} and load_json_object(None, "--x") == {}
    with pytest.raises(ArgumentError, match="--x: 'missing.json' is neither a JSON object nor an existing file"):
        load_json_object("missing.json", "--x")
    with pytest.raises(ArgumentError, match="--x: not a JSON object"):
        load_json_object("{not json", "--x")
    with pytest.raises(ArgumentError, match="--x: expected a JSON object, got list"):
        path.write_text("[1, 2]")
        load_json_object(str(path), "--x")


# ------------------------------------------------------------------ the evaluation result
def test_evaluation_result_round_trip_and_refusals(tmp_path):
    from dnn.results import MethodResult

    result = EvaluationResult(circuit="c", model="m", scenario="s", architecture="bn_cnn", model_path="m.pt",
                              software_accuracy=0.9, methods={"none": MethodResult(
                                  accuracy_mean=0.5, accuracy_std=0.1, accuracies=[0.4, 0.6],
                                  accuracy_per_seed=[0.5], trainable_params=0, wall_s=1.0, peak_mem_mb=2.0,
                                  memory_kind="rss", pc2_mean=0.25)})
    result.write(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["kind"] == "xbarchar.evaluation" and data["format_version"] == 1
    assert EvaluationResult.read(tmp_path / "r.json") == result
    with pytest.raises(ResultFileError, match="format_version 7 is not supported"):
        EvaluationResult.from_dict({**data, "format_version": 7}, "r.json")
    with pytest.raises(ResultFileError, match=r"methods\.none\.accuracy_mean: expected a number"):
        EvaluationResult.from_dict({**data, "methods": {"none": {"accuracy_mean": "high", "accuracy_std": 0}}})
    with pytest.raises(ResultFileError, match="kind: expected 'xbarchar.evaluation'"):
        EvaluationResult.from_dict({**data, "kind": "xbarchar.spice"})


def test_evaluation_settings_precedence_defaults_json_flags():
    from dnn.cli import _evaluation_settings, build_parser

    ns = build_parser().parse_args(["evaluate", "--model", "m.pt", "--out", "e.json", "--evaluation-json",
                                    '{"seeds": [1, 2], "bn_adapt": {"n_draws": 2}}', "--adapt-batches", "3"])
    s = _evaluation_settings(ns)
    assert s.seeds == (1, 2) and s.bn_adapt.n_draws == 2 and s.bn_adapt.n_batches == 3
    assert s.retrain.epochs == EvaluationSettings().retrain.epochs == 2  # the one default
    ns = build_parser().parse_args(["evaluate", "--model", "m.pt", "--out", "e.json", "--evaluation-json",
                                    '{"seeds": [1, 2]}', "--seed", "7"])
    assert _evaluation_settings(ns).seeds == (7,)  # an explicit flag wins over the JSON


# ------------------------------------------------------------------ the signed-input guard, on real files
def tiny_surrogate(tmp_path, name: str, v_read_min_v: float):
    from spice.cli import main as spice_main
    from surrogate.cli import main as surrogate_main
    from tests.conftest import CIRCUITS

    circuit = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 4, "cols": 3, "r_driver_ohm": 100.0,
               "r_sense_ohm": 100.0, "v_read_min_v": v_read_min_v}
    data, out = tmp_path / f"{name}.h5", tmp_path / f"{name}.sur.h5"
    assert spice_main(["simulate", "--circuit", json.dumps(circuit), "--sampling",
                       '{"n_conductance": 6, "n_vectors": 8}', "--out", str(data), "--quiet"]) == 0
    assert surrogate_main(["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--quiet"]) == 0
    return out


@pytest.mark.spice
def test_signed_inputs_are_refused_by_a_surrogate_trained_on_positive_voltages(tmp_path):
    import torch
    from torch import nn

    from dnn.config import CrossbarConfig
    from dnn.layers import CrossbarLinear
    from surrogate.io import load_surrogate

    threads = torch.get_num_threads()
    try:
        unipolar = load_surrogate(tiny_surrogate(tmp_path, "uni", 0.0))
        bipolar = load_surrogate(tiny_surrogate(tmp_path, "bi", -0.2))
    finally:
        torch.set_num_threads(threads)
    assert unipolar.v_read_min_v == 0.0 and bipolar.v_read_min_v == -0.2
    signed = CrossbarConfig(input_polarity="signed")
    with pytest.raises(ValueError, match=r"covers row voltages \[0.0, 0.2\] V only; signed inputs need"):
        CrossbarLinear.from_float(nn.Linear(8, 3), signed, unipolar)
    CrossbarLinear.from_float(nn.Linear(8, 3), signed, bipolar)  # covers both signs: accepted
    CrossbarLinear.from_float(nn.Linear(8, 3), CrossbarConfig(input_polarity="two_phase"), unipolar)


def test_tile_bank_is_versioned_with_units(tmp_path):
    import numpy as np

    from spice.circuit import CircuitError
    from spice.tilebank import load_tile_bank, save_tile_bank

    g, v = np.full((2, 4, 3), 1e-5), np.full((5, 4), 0.1)
    save_tile_bank(tmp_path / "b.npz", g, v)
    with np.load(tmp_path / "b.npz") as data:
        assert str(data["kind"]) == "xbarchar.tilebank" and str(data["units_g_s"]) == "S"
    g2, v2 = load_tile_bank(tmp_path / "b.npz", 4, 3)
    assert np.array_equal(g2, g) and np.array_equal(v2, v)
    np.savez(tmp_path / "legacy.npz", g_s=g, v_v=v)  # files from before the header: still read
    assert load_tile_bank(tmp_path / "legacy.npz", 4, 3)[0].shape == (2, 4, 3)
    np.savez(tmp_path / "mv.npz", g_s=g, v_v=v, kind=np.array("xbarchar.tilebank"), format_version=np.array("1"),
             units_g_s=np.array("uS"), units_v_v=np.array("V"))
    with pytest.raises(CircuitError, match=r"g_s is in 'uS', expected 'S'"):
        load_tile_bank(tmp_path / "mv.npz", 4, 3)
    with pytest.raises(CircuitError, match=r"do not fit a 8x3 array"):
        load_tile_bank(tmp_path / "b.npz", 8, 3)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CircuitError, match="not a readable .npz tile bank"):
        load_tile_bank(tmp_path / "junk.npz", 4, 3)
