"""Energy and latency of crossbar layers (dnn/energy.py) against an independent hand count."""

import json
import math
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from dnn.config import CrossbarConfig
from dnn.energy import ENERGY_PARTS, EnergyMeter, measure_energy, metering
from dnn.layers import CrossbarConv2d, CrossbarLinear
from dnn.mvm import IdealTileMVM
from dnn.periphery import PERIPHERY_PRESETS, EnergySettings

G_MIN, G_MAX, V_MAX, T_READ = 5e-6, 50e-6, 0.2, 50e-9
ISAAC = PERIPHERY_PRESETS["isaac_32nm"]


def tile_model(rows=8, cols=4, **kw):
    return IdealTileMVM(rows, cols, G_MIN, G_MAX, V_MAX, t_read_s=T_READ, **kw)


def linear_layer(n_in=20, n_out=6, rows=8, cols=4, config=None):
    torch.manual_seed(0)
    ref = nn.Linear(n_in, n_out)
    cfg = config or CrossbarConfig()  # 8-bit weights as 2 slices of 4-bit cells, differential, two-phase 8-bit DAC
    return CrossbarLinear.from_float(ref, cfg, tile_model(rows, cols), name="fc")


def test_a_tiny_layer_costs_its_hand_count():
    """20 inputs x 6 outputs on 8x4 tiles: 3 row tiles x 2 column tiles x 2 slices x 2 polarity arrays = 24
    tiles; 5 vectors of +-1 inputs read in two phases = 10 reads of every tile. Every real row is driven at
    v_max in exactly one phase, so the array energy is t_read v_max^2 x 5 x (sum of G over the real rows)."""
    layer = linear_layer()
    x = torch.where(torch.rand(5, 20, generator=torch.Generator().manual_seed(1)) < 0.5, -1.0, 1.0)
    meter = EnergyMeter(ISAAC, power_sample_vectors=0)
    with metering(layer, meter):
        layer(x)
    assert layer.energy_meter is None  # detached afterwards
    out = meter.summary(n_images=5)
    (cost,) = out["per_layer"]

    slices, pairs, row_tiles, col_tiles = 2, 2, math.ceil(20 / 8), math.ceil(6 / 4)
    tiles, reads = slices * pairs * row_tiles * col_tiles, 5 * 2
    assert (cost["tiles"], cost["reads_per_inference"] * 5) == (tiles, reads) == (24, 10)
    dac = reads * slices * pairs * col_tiles * 20  # every real row of every tile, every read
    adc = reads * slices * row_tiles * 6  # every pair-subtracted column in use, every row tile, every read
    assert cost["dac_conversions_per_inference"] * 5 == dac == 1600
    assert cost["adc_conversions_per_inference"] * 5 == adc == 360

    g = layer.programmed_conductances(torch.device("cpu"), torch.float32).double()  # [T, 8, 4], T = (s, p, r, c)
    real_rows = torch.zeros(slices, pairs, row_tiles, col_tiles, 8, dtype=torch.bool)
    for r in range(row_tiles):
        real_rows[:, :, r, :, : min(8, 20 - 8 * r)] = True
    g_real = (g.sum(-1) * real_rows.reshape(-1, 8)).sum()
    array_j = T_READ * V_MAX**2 * 5 * float(g_real)
    assert cost["energy_breakdown_j"]["array"] * 5 == pytest.approx(array_j, rel=1e-5, abs=0)

    per_image = {
        "array": array_j / 5,
        "dac": dac * 0.41667e-12 * 2**6 / 5,  # 7 magnitude bits per phase: 2^(7-1) x the 1-bit DAC
        "adc": adc * 16e-3 / 9.6e9 / 5,  # ISAAC: 1.667 pJ per 8-bit conversion
        "sense": adc * ISAAC.sense_energy_j / 5,
        "shift_add": adc * 0.021e-12 / 5,
    }
    for part in ENERGY_PARTS:
        assert out["energy_breakdown_j"][part] == pytest.approx(per_image[part], rel=1e-5, abs=0), part
    assert out["energy_per_inference_j"] == pytest.approx(sum(per_image.values()), rel=1e-5, abs=0)
    assert out["latency_per_inference_s"] == pytest.approx(reads / 5 * (T_READ + 4 / 1.2e9), rel=1e-9, abs=0)
    assert out["power_model"] == "ideal v^2 G"


def test_non_negative_inputs_read_once_and_signed_inputs_drive_full_bits():
    layer = linear_layer()
    meter = EnergyMeter(ISAAC)
    with metering(layer, meter):
        layer(torch.rand(3, 20))  # no negative input: the second phase is skipped
    assert meter.summary(3)["per_layer"][0]["reads_per_inference"] == 1
    assert meter.layers["fc"].dac_bits == 7
    signed = CrossbarLinear.from_float(nn.Linear(20, 6), CrossbarConfig(input_polarity="signed"), tile_model(),
                                       name="fc")
    meter = EnergyMeter(ISAAC)
    with metering(signed, meter):
        signed(torch.randn(3, 20))
    assert meter.summary(3)["per_layer"][0]["reads_per_inference"] == 1 and meter.layers["fc"].dac_bits == 8


@dataclass(frozen=True)
class ScaledPowerMVM(IdealTileMVM):
    """An ideal tile whose power model says 2.5 x the ideal formula, plus 1 mW per read on a constant-power
    variant."""

    offset_w: float = 0.0
    power_model: str = field(default="2.5 x ideal", init=False)

    def bind_power(self, g_s):
        ideal = IdealTileMVM.bind_power(self, g_s)
        return lambda v_v: 2.5 * ideal(v_v) + self.offset_w


@pytest.mark.parametrize("sample", [0, 3, 1000])
def test_the_array_energy_comes_from_the_tile_models_power(sample):
    """Sampled reads scale to every read by the ideal formula's ratio: exact when the power is proportional
    to it, whatever the sample; a power that is not (a constant) is exact only when every read is sampled."""
    x = torch.randn(7, 20, generator=torch.Generator().manual_seed(2))
    for offset_w in (0.0, 1e-3):
        mvm = ScaledPowerMVM(8, 4, G_MIN, G_MAX, V_MAX, t_read_s=T_READ, offset_w=offset_w)
        layer = CrossbarLinear.from_float(nn.Linear(20, 6), CrossbarConfig(), mvm, name="fc")
        meter = EnergyMeter(ISAAC, power_sample_vectors=sample)
        with metering(layer, meter):
            layer(x)
        out = meter.summary(7)
        assert out["power_model"] == "2.5 x ideal"
        exact = 2.5 * out["array_ideal_formula_j"] + 24 * 14 * offset_w * T_READ / 7
        if offset_w == 0.0 or sample != 3:
            assert out["energy_breakdown_j"]["array"] == pytest.approx(exact, rel=1e-5, abs=0)
        else:
            assert out["energy_breakdown_j"]["array"] == pytest.approx(exact, rel=0.5, abs=0)  # an estimate


def test_a_tile_model_without_power_falls_back_to_the_ideal_formula_and_says_so():
    from dnn.mvm import TransferTileMVM

    mvm = TransferTileMVM(8, 4, G_MIN, G_MAX, V_MAX, t_read_s=T_READ, transfer_fn=lambda g: g)  # no admittance_fn
    layer = CrossbarLinear.from_float(nn.Linear(20, 6), CrossbarConfig(), mvm, name="fc")
    meter = EnergyMeter(ISAAC)
    with metering(layer, meter):
        layer(torch.randn(4, 20))
    out = meter.summary(4)
    assert out["power_model"].startswith("ideal v^2 G (fallback")
    assert out["array_ideal_formula_j"] > 0
    # the fallback sums v^2 G in the layer's float32, the ideal-formula tally in float64: float32 rounding
    # (6e-8 per operation) over a few dozen terms
    assert out["energy_breakdown_j"]["array"] == pytest.approx(out["array_ideal_formula_j"], rel=1e-6, abs=0)


def test_an_ideal_adc_has_no_cost_model_and_makes_the_total_nan():
    layer = linear_layer(config=CrossbarConfig(adc_bits=0))
    meter = EnergyMeter(ISAAC)
    with metering(layer, meter):
        layer(torch.randn(2, 20))
    out = meter.summary(2)
    assert math.isnan(out["energy_breakdown_j"]["adc"]) and math.isnan(out["energy_per_inference_j"])
    assert out["energy_breakdown_j"]["dac"] > 0


def test_conv_layers_read_once_per_output_position_and_the_model_sums_layers():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    layer = CrossbarConv2d.from_float(conv, CrossbarConfig(), tile_model(rows=8, cols=4), name="conv")
    model = nn.Sequential(layer, nn.ReLU(), nn.Flatten(),
                          CrossbarLinear.from_float(nn.Linear(3 * 5 * 5, 4), CrossbarConfig(), tile_model(), name="fc"))
    out = measure_energy(model, torch.rand(2, 2, 5, 5), EnergySettings())
    conv_cost, fc_cost = out["per_layer"]
    assert conv_cost["vectors_per_inference"] == 25 and conv_cost["reads_per_inference"] == 25  # inputs >= 0: one phase
    assert fc_cost["vectors_per_inference"] == 1
    assert out["energy_per_inference_j"] == pytest.approx(conv_cost["energy_j"] + fc_cost["energy_j"], rel=1e-12, abs=0)
    assert out["latency_per_inference_s"] == pytest.approx(conv_cost["latency_s"] + fc_cost["latency_s"], rel=1e-12, abs=0)
    assert out["n_images"] == 2 and model.training  # measure_energy restores the mode


def test_larger_tiles_need_fewer_adc_conversions():
    """The periphery trade-off the array size sweep is about: a 64-input layer on 8-row tiles converts
    every column of 8 row tiles; on 64-row tiles once."""
    x = torch.rand(4, 64)
    counts = {}
    for rows in (8, 64):
        torch.manual_seed(0)
        layer = CrossbarLinear.from_float(nn.Linear(64, 8), CrossbarConfig(), tile_model(rows=rows, cols=8), name="fc")
        meter = EnergyMeter(ISAAC)
        with metering(layer, meter):
            layer(x)
        counts[rows] = meter.layers["fc"].adc_conversions
    assert counts[8] == 8 * counts[64]


@pytest.mark.usefixtures("one_torch_thread")
def test_an_evaluation_reports_energy_per_method_and_layer(small_digits_model, tmp_path):
    from dnn.cli import main
    from dnn.results import EvaluationResult

    def evaluate(energy, out):
        evaluation = {"methods": ["none", "bn_adapt"], "seeds": [0], "calibration_samples": 64,
                      "bn_adapt": {"n_draws": 1}, "energy": energy}
        return main(["evaluate", "-q", "--model", str(small_digits_model), "--rows", "32", "--cols", "32",
                     "--evaluation-json", json.dumps(evaluation), "--no-progress", "--device", "cpu", "--out", str(out)])

    assert evaluate({"n_images": 4, "periphery_preset": "survey_envelope", "columns_per_adc": 8}, tmp_path / "e.json") == 0
    result = EvaluationResult.read(tmp_path / "e.json")
    for method in ("none", "bn_adapt"):
        e = result.methods[method].energy
        assert e["n_images"] == 4 and e["power_model"] == "ideal v^2 G" and e["periphery"]["columns_per_adc"] == 8
        assert e["energy_per_inference_j"] == pytest.approx(sum(e["energy_breakdown_j"].values()), rel=1e-12, abs=0)
        assert e["energy_per_inference_j"] > 0 and e["latency_per_inference_s"] > 0
        assert [layer["name"] for layer in e["per_layer"]] == ["features.0", "features.4", "features.8"]
    assert evaluate({"enabled": False}, tmp_path / "off.json") == 0
    assert EvaluationResult.read(tmp_path / "off.json").methods["none"].energy == {}
    assert evaluate({"adc_fom_walden_j": -1.0}, tmp_path / "bad.json") == 2  # a bad periphery value: bad input
