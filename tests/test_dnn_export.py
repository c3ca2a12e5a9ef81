"""Distribution-matched SPICE samples: a trained model's tiles and real activations as a sampler bank."""

from __future__ import annotations

import numpy as np
import torch

from dnn.config import CrossbarConfig
from dnn.export import save_bank, tile_bank
from dnn.models import build_model
from spice.sampling import SamplingConfig, draw


def test_tile_bank_holds_programmed_levels_and_dac_voltages(tmp_path, make_spec):
    torch.manual_seed(0)
    model = build_model("bn_cnn", in_channels=1, num_classes=10, image_size=8).eval()
    images = torch.randn(8, 1, 8, 8)
    cfg = CrossbarConfig.from_dict({"weight_bits": 8, "bits_per_cell": 4, "input_bits": 8})
    g, v = tile_bank(model, cfg, rows=16, cols=16, g_off_s=5e-6, g_on_s=5e-5, v_read_max_v=0.2, images=images,
                     n_tiles=10, n_vectors=50, seed=1)
    assert g.shape == (10, 16, 16) and v.shape == (50, 16)
    # conductances sit on the 16 levels of a 4-bit cell between g_min and g_max
    levels = (g - 5e-6) / ((5e-5 - 5e-6) / 15)
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-6)
    assert g.min() >= 5e-6 and g.max() <= 5e-5
    # voltages are DAC outputs: non-negative, within v_max, on a 2^8-level grid per vector
    assert v.min() >= 0.0 and v.max() <= 0.2
    assert (np.abs(v).sum(1) > 0).all()
    codes = v / 0.2 * 127  # the 8-bit DAC's codes 0..127 (v_max / 127 per code)
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-4)
    assert (np.abs(codes.max(1) - 127) < 1e-4).any()  # a vector whose largest input is in this row tile
    assert len(np.unique(np.round(codes))) > 16  # many DAC levels in use, not a coarse grid
    # the SPICE stage's from_file sampler draws exactly these
    save_bank(tmp_path / "bank.npz", g, v)
    spec = make_spec(rows=16, cols=16)
    g_s, v_v = draw(spec, SamplingConfig(sampler="from_file", source_file=str(tmp_path / "bank.npz"), n_vectors=5), 0)
    assert any(np.array_equal(g_s, gi) for gi in g)
    assert all(any(np.array_equal(row, vi) for vi in v) for row in v_v)
