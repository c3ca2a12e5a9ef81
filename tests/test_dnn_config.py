"""CrossbarConfig validation and from_dict; device presets."""

import pytest

from dnn.config import DEVICE_PRESETS, CrossbarConfig, get_device_preset


def test_defaults_are_paper1_mapping():
    c = CrossbarConfig()
    assert (c.weight_bits, c.bits_per_cell, c.n_slices) == (8, 4, 2)
    assert c.analog_layers == "conv" and c.encoding == "differential"
    assert CrossbarConfig(encoding="offset").n_slices == 2
    assert CrossbarConfig(weight_bits=5, bits_per_cell=4).n_slices == 1
    assert CrossbarConfig(weight_bits=5, bits_per_cell=4, encoding="offset").n_slices == 2


def test_from_dict_round_trip_and_unknown_keys():
    d = {"weight_bits": 6, "exclude": ["features.0"], "read_noise_sigma": 0.1}
    c = CrossbarConfig.from_dict(d)
    assert c.exclude == ("features.0",) and c.weight_bits == 6
    assert CrossbarConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match=r"unknown CrossbarConfig key\(s\) \['adc_bit'\].*valid keys"):
        CrossbarConfig.from_dict({"adc_bit": 6})


@pytest.mark.parametrize("key,value,expected", [
    ("weight_bits", 1, "weight_bits = 1: expected an int in \\[2, 16\\]"),
    ("bits_per_cell", 9, "bits_per_cell"),
    ("encoding", "twos", "encoding = 'twos': expected one of"),
    ("input_bits", 1, "input_bits"),
    ("adc_bits", 1.5, "adc_bits"),
    ("adc_range_fraction", 0.0, "adc_range_fraction"),
    ("analog_layers", "fc", "analog_layers"),
    ("read_noise_sigma", -0.1, "read_noise_sigma = -0.1: expected a number in \\[0, 1\\]"),
    ("read_noise_mode", "per_batch", "read_noise_mode = 'per_batch': expected one of"),
    ("t_drift_s", 0.5, "t_drift_s = 0.5: expected 0 \\(off\\) or a number >= t0_s"),
    ("drift_nu_std", -1.0, "drift_nu_std"),
    ("clip_conductances", 1, "clip_conductances"),
    ("seed", -1, "seed"),
])
def test_validation_names_key_and_range(key, value, expected):
    with pytest.raises(ValueError, match=expected):
        CrossbarConfig.from_dict({key: value})


def test_presets():
    rram = get_device_preset("RRAM")
    assert rram.g_on_s == pytest.approx(50e-6) and rram.g_off_s == pytest.approx(5e-6)
    assert get_device_preset("pcm_80").g_off_s == pytest.approx(25e-6 / 80)
    for p in DEVICE_PRESETS.values():
        assert p.source and p.g_off_s < p.g_on_s
    cfg = CrossbarConfig().replace(**get_device_preset("pcm_40").drift_config(t_drift_s=3600.0))
    assert cfg.drift_on and cfg.drift_nu_mean == pytest.approx(0.05) and cfg.t0_s == 20.0
    with pytest.raises(ValueError, match="valid: \\['aihwkit_pcm', 'fefet'"):
        get_device_preset("sram")
