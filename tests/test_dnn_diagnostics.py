"""PC2 diagnostic against hand-derived values: 0 for a gain, the analytic ratio for a noisy line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dnn.config import CrossbarConfig
from dnn.convert import convert_to_crossbar
from dnn.diagnostics import layer_pc2, pc2_ratio
from dnn.models import build_model
from dnn.mvm import IdealTileMVM


def test_a_gain_and_offset_is_a_line():
    x = np.random.default_rng(0).normal(size=1000)
    assert pc2_ratio(x, 3.0 * x + 1.0) == pytest.approx(0.0, abs=1e-6)
    assert pc2_ratio(x, -0.2 * x) == pytest.approx(0.0, abs=1e-6)


def test_noisy_line_matches_the_correlation_formula():
    """y = x + e, var(x) = 1, var(e) = s^2: the standardized scatter has correlation rho = 1/sqrt(1+s^2)
    and eigenvalues 1 +- rho, so PC2 = sqrt((1 - rho) / (1 + rho))."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=200_000)
    for s in (0.1, 0.5, 2.0):
        rho = 1 / math.sqrt(1 + s * s)
        expected = math.sqrt((1 - rho) / (1 + rho))
        assert pc2_ratio(x, x + s * rng.normal(size=x.size)) == pytest.approx(expected, rel=0.02)
    assert pc2_ratio(x, rng.normal(size=x.size)) == pytest.approx(1.0, rel=0.02)  # no relation
    assert math.isnan(pc2_ratio(x, np.zeros_like(x)))  # a constant output has no direction


def test_layer_pc2_names_every_crossbar_layer_and_grows_with_read_noise():
    torch.manual_seed(0)
    model = build_model("bn_cnn", 1, 10, 8, width=0.25).eval()
    mvm = IdealTileMVM(32, 16, 5e-6, 50e-6, 0.2)
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    quiet = convert_to_crossbar(model, CrossbarConfig(input_bits=0, adc_bits=0), mvm)
    noisy = convert_to_crossbar(model, CrossbarConfig(read_noise_sigma=0.3, seed=2), mvm)
    a, b = layer_pc2(model, quiet, x), layer_pc2(model, noisy, x)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert sorted(a) == sorted(b) == sorted(convs)
    assert all(v < 0.05 for v in a.values())  # only 8-bit weight quantization: nearly a line
    assert all(b[k] > a[k] + 0.05 for k in a)  # read noise spreads the scatter across the line
