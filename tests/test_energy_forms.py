"""The energy meter's fast path for tile models whose per-part read power is a quadratic form in the row voltages
(``dnn.mvm.FormsPoweredTileMVM``): the forms of the tiles that read one row tile's voltages are summed once per
programming and applied once per row tile. Checked against the per-tile path it replaces, and the linear surrogate
energy model's forms against its own split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import dnn.energy as energy_module
from dnn.config import CrossbarConfig
from dnn.energy import EnergyMeter, metering
from dnn.layers import CrossbarLinear
from dnn.mvm import POWER_PARTS, FormsPoweredTileMVM, bind_power_forms
from dnn.periphery import PERIPHERY_PRESETS
from surrogate.energy import NONLINEAR_FEATURES, EnergyModelError
from tests.test_energy_parts import energy_model, exact_tile_model, rounding_rtol

EPS32 = float(np.finfo(np.float32).eps)


class _NoForms:
    """Stands in for FormsPoweredTileMVM in dnn.energy: no tile model is one, so the meter takes the per-tile path."""


def _metered(spec, sample: int) -> tuple[dict, EnergyMeter]:
    torch.manual_seed(0)
    layer = CrossbarLinear.from_float(nn.Linear(20, 6), CrossbarConfig(), exact_tile_model(spec), name="fc")
    x = torch.randn(5, 20, generator=torch.Generator().manual_seed(1))
    meter = EnergyMeter(PERIPHERY_PRESETS["isaac_32nm"], power_sample_vectors=sample)
    with metering(layer, meter):
        layer(x)
        layer(x[:2])
    return meter.summary(7), meter


@pytest.mark.parametrize("sample", [0, 3])
def test_summed_forms_give_the_per_tile_parts(make_spec, monkeypatch, sample):
    spec = make_spec(rows=8, cols=4, r_driver_ohm=500.0, r_sense_ohm=500.0, r_wire_row_ohm=10.0, r_wire_col_ohm=10.0)
    fast, meter = _metered(spec, sample)
    (bound,) = (b for _g, b in meter._power.values())
    assert bound.group_parts is not None  # the fast path ran
    s, p, n_r, n_c = meter.layers["fc"].grid
    assert n_r > 1 and s * p * n_c > 1  # several row tiles, several tiles per row tile: the sum is not trivial
    monkeypatch.setattr(energy_module, "FormsPoweredTileMVM", _NoForms)
    slow, meter = _metered(spec, sample)
    (bound,) = (b for _g, b in meter._power.values())
    assert bound.group_parts is None
    # the per-tile path computes each read's power in float32 (the layer's dtype), the fast one in float64: a
    # relative difference of float32 rounding over a read's sums (rows terms, 2 matmuls), margin 10
    rtol = 10 * 2 * spec.rows * EPS32
    assert fast["power_split"] == slow["power_split"] and fast["power_split"].startswith("exact")
    assert fast["energy_breakdown_j"]["array"] == pytest.approx(slow["energy_breakdown_j"]["array"], rel=rtol, abs=0)
    for part in POWER_PARTS:
        assert fast["array_parts_j"][part] == pytest.approx(slow["array_parts_j"][part], rel=rtol, abs=0), part
    assert fast["array_ideal_formula_j"] == slow["array_ideal_formula_j"]
    assert sum(fast["array_parts_j"].values()) == pytest.approx(fast["energy_breakdown_j"]["array"], rel=1e-12, abs=0)


def test_the_linear_energy_models_forms_are_its_split(make_spec):
    spec = make_spec(rows=6, cols=5, r_driver_ohm=700.0, r_sense_ohm=400.0, r_wire_row_ohm=10.0, r_wire_col_ohm=5.0)
    model = energy_model(spec, theta=(0.97,), a=0.3, b=0.4)
    rng = np.random.default_rng(3)
    g = torch.as_tensor(rng.uniform(spec.g_off_s, spec.g_on_s, (2, 6, 5)))
    v = torch.as_tensor(rng.uniform(-0.2, 0.2, (2, 9, 6)))
    q = model.power_forms(g)
    assert q.shape == (2, len(POWER_PARTS), 6, 6) and q.dtype == torch.float64
    split = model.bind_parts(g)(v).numpy()
    forms = bind_power_forms(q, torch.float64)(v).numpy()
    np.testing.assert_allclose(forms, split, rtol=rounding_rtol(spec), atol=0)
    assert isinstance(_Attached(model), FormsPoweredTileMVM)


def test_a_non_linear_energy_model_has_no_forms(make_spec):
    spec = make_spec(rows=6, cols=5)
    model = energy_model(spec, features=NONLINEAR_FEATURES, theta=(1.0, 0.1, 0.01, 0.001))
    with pytest.raises(EnergyModelError, match="not a quadratic form"):
        model.power_forms(torch.full((1, 6, 5), 3e-5, dtype=torch.float64))


class _Attached:
    """A surrogate to the protocol: a tile and bind, and the energy model attached (``surrogate.energy.attach``)."""

    def __init__(self, model) -> None:
        from surrogate.energy import attach

        self.tile = None
        attach(self, model)

    def bind(self, g_s):
        return lambda v_v: torch.bmm(v_v, g_s)
