"""The periphery model (dnn/periphery.py): cited numbers, the survey's ADC envelope, every parameter
validated and named in the workflow config before any job runs."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import subprocess
import sys

import pytest
import yaml

from dnn.periphery import (
    PERIPHERY_KEYS,
    PERIPHERY_PRESETS,
    EnergySettings,
    get_periphery_preset,
)
from pipeline.config import ConfigError, check_schema, validate_config
from tests.conftest import REPO
from xbarchar.settings import from_dict

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
ENERGY_SCHEMA = SCHEMA["properties"]["evaluation"]["properties"]["energy"]
TEST_CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
ISAAC = PERIPHERY_PRESETS["isaac_32nm"]


def test_isaac_preset_reproduces_the_cited_component_figures():
    """hwcomponents-library isaac.py: ADC 16 mW / (8 ADCs x 1.2 GS/s) = 1.667 pJ at 8 bits; its scaled table
    (Saberi et al.) is not 2^bits, so only the 8-bit point is the source's; 1-bit DAC 0.41667 pJ; shift-add
    0.021 pJ; 1.2 GS/s conversions."""
    assert ISAAC.adc_energy_j(8) == pytest.approx(1.666666667e-12, rel=1e-9, abs=0)
    assert ISAAC.adc_energy_j(4) == pytest.approx(1.666666667e-12 / 16, rel=1e-9, abs=0)  # Walden: 2^bits
    assert ISAAC.dac_energy_j(1) == pytest.approx(0.41667e-12, abs=0) and ISAAC.dac_energy_j(7) == pytest.approx(64 * 0.41667e-12, abs=0)
    assert ISAAC.shift_add_energy_j == 0.021e-12 and ISAAC.adc_conversion_s == pytest.approx(1 / 1.2e9, abs=0)
    assert ISAAC.columns_per_adc == 128
    for preset in PERIPHERY_PRESETS.values():
        assert preset.source and "github.com" in preset.source


def test_schreier_envelope_matches_the_survey_formula():
    """FoM_S = SNDR + 10 log10(f_s / (2 P)) with the envelope FoM_S(f) = 186.72 - 10 log10(sqrt(1 + (f/f_c)^2)),
    f_c = 46.73 MHz (Murmann's survey, foms_plot.json): E = P / f_s."""
    p = PERIPHERY_PRESETS["survey_envelope"]
    fom = 186.72 - 10 * math.log10(math.sqrt(1 + (1.2e9 / 46.73e6) ** 2))
    power_w = 1.2e9 / 2 / 10 ** ((fom - (6.02 * 8 + 1.76)) / 10)  # fs / (2 P) = 10^((FoM - SNDR) / 10)
    assert p.adc_energy_j(8) == pytest.approx(power_w / 1.2e9, rel=1e-12, abs=0)
    slow = p.replace(adc_sample_rate_hz=1e3)
    assert slow.adc_energy_j(8) == pytest.approx(0.5 * 10 ** ((49.92 - 186.72) / 10), rel=1e-6, abs=0)  # below the corner
    assert slow.adc_energy_j(9) / slow.adc_energy_j(8) == pytest.approx(10 ** 0.602, rel=1e-9, abs=0)  # 4x per bit
    fast = [p.replace(adc_sample_rate_hz=f).adc_energy_j(8) for f in (1e10, 2e10)]
    assert fast[1] / fast[0] == pytest.approx(2.0, rel=1e-3, abs=0)  # far above the corner: energy grows with the rate


def test_latency_of_a_read_counts_the_shared_adc():
    assert ISAAC.read_time_s(10e-9, 64) == pytest.approx(10e-9 + 64 / 1.2e9, abs=0)
    assert ISAAC.read_time_s(10e-9, 256) == pytest.approx(10e-9 + 128 / 1.2e9, abs=0)
    assert ISAAC.replace(columns_per_adc=1).read_time_s(10e-9, 256) == pytest.approx(10e-9 + 1 / 1.2e9, abs=0)


@pytest.mark.parametrize("key", [k for k in PERIPHERY_KEYS if k != "adc_model"])
@pytest.mark.parametrize("value", [0, -1.0, "1e-12", True, float("nan"), None])
def test_every_parameter_refuses_a_bad_value_naming_its_key(key, value):
    with pytest.raises(ValueError, match=rf"^{key} = "):
        dataclasses.replace(ISAAC, **{key: value})


def test_settings_override_the_preset_and_name_the_key():
    s = from_dict(EnergySettings, {"periphery_preset": "survey_envelope", "columns_per_adc": 8, "sense_energy_j": 1e-13},
                  "evaluation.energy")
    model = s.periphery()
    assert (model.adc_model, model.columns_per_adc, model.sense_energy_j) == ("schreier", 8, 1e-13)
    assert "overridden: ['columns_per_adc', 'sense_energy_j']" in model.source
    assert EnergySettings().periphery() is ISAAC
    for bad, message in [({"adc_fom_walden_j": -1e-15}, "evaluation.energy.adc_fom_walden_j = -1e-15: expected a number > 0"),
                         ({"periphery_preset": "nope"}, "evaluation.energy.periphery_preset = 'nope'"),
                         ({"columns_per_adc": 2.5}, "evaluation.energy.columns_per_adc = 2.5"),
                         ({"adc_model": "flash"}, "evaluation.energy.adc_model = 'flash'"),
                         ({"n_images": 0}, "evaluation.energy.n_images = 0"),
                         ({"adc_bits": 8}, r"evaluation.energy: unknown key\(s\) \['adc_bits'\]")]:
        with pytest.raises(ValueError, match=message):
            from_dict(EnergySettings, bad, "evaluation.energy")
    with pytest.raises(ValueError, match="unknown periphery preset 'x'"):
        get_periphery_preset("x")


def test_the_schema_lists_the_presets_and_the_settings_defaults():
    props = ENERGY_SCHEMA["properties"]
    assert props["periphery_preset"]["enum"] == sorted(PERIPHERY_PRESETS)
    assert props["adc_model"]["enum"] == ["walden", "schreier"]
    defaults = {f.name: f.default for f in dataclasses.fields(EnergySettings)}
    for key, node in props.items():
        assert key in defaults, key
        if "default" in node:
            assert node["default"] == defaults[key], key
        else:
            assert defaults[key] is None, key  # an override: the preset's value unless given
    assert set(props) == set(defaults)


def broken(path: str, value) -> dict:
    config = copy.deepcopy(TEST_CONFIG)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


@pytest.mark.parametrize("key, value", [("adc_fom_walden_j", -1.0), ("adc_sample_rate_hz", 0), ("sense_energy_j", "1 pJ"),
                                        ("columns_per_adc", 0), ("dac_energy_1bit_j", None), ("periphery_preset", "isac")])
def test_config_mistakes_are_named_before_any_job(key, value):
    config = broken(f"evaluation.energy.{key}", value)
    with pytest.raises(ConfigError, match=rf"evaluation\.energy\.{key}"):
        check_schema(config, REPO / "config" / "schema.yaml")
    if value is not None:  # the settings refuse it too (a config that skips the schema)
        with pytest.raises(ConfigError, match=rf"evaluation\.energy\.{key}"):
            validate_config(config)


def test_a_circuit_read_time_must_be_positive():
    with pytest.raises(ConfigError, match=r"circuits\.tiny.*t_read_s"):
        validate_config(broken("circuits.tiny.t_read_s", 0.0))


@pytest.mark.e2e
def test_snakemake_dry_run_fails_naming_the_periphery_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(broken("evaluation.energy.adc_fom_walden_j", -1.0)))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(config),
                             "--replace-workflow-config"], capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert "evaluation.energy.adc_fom_walden_j" in result.stdout + result.stderr
