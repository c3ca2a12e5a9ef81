"""The ridge design: the ridge baseline's features and fit, folded per tile; files; crossbar layers."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from dnn.config import CrossbarConfig
from dnn.layers import CrossbarConv2d, CrossbarLinear
from dnn.mvm import LoadedTileMVM, SharedInputTileMVM, TileMVM
from spice.cli import main as spice_main
from surrogate import ridge
from surrogate.baselines import RidgeBaseline
from surrogate.data import load_splits
from surrogate.io import SurrogateFileError, describe, load_surrogate, save_surrogate
from surrogate.models import RidgeMVM, build_model, from_architecture, predict_a
from surrogate.physics import TileSpec, analytic_transfer, wire_drop
from surrogate.train import TrainParams, train
from tests.conftest import CIRCUITS, PerTileOnly

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SELECTOR = {"netlist": str(CIRCUITS / "one_s_one_r.cir"), "rows": 8, "cols": 8, "r_driver_ohm": 1000.0,
            "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 1000.0, "v_read_max_v": 1.0}
"""The strongly non-linear 1S1R selector array, read up to 1 V (the selector conducts from ~0.3 V)."""
TILE = TileSpec(rows=16, cols=8, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=0.0, v_read_max_v=0.2, r_driver_ohm=500.0,
                r_sense_ohm=500.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)


@pytest.fixture(scope="module")
def selector8(tmp_path_factory):
    out = tmp_path_factory.mktemp("ridge") / "s1r8.h5"
    rc = spice_main(["simulate", "--circuit-name", "s1r8", "--circuit", json.dumps(SELECTOR), "--sampling",
                     json.dumps({"n_conductance": 8, "n_vectors": 32, "seed": 3}), "--out", str(out), "--quiet"])
    assert rc == 0
    return load_splits(out, seed=0)


@pytest.fixture(scope="module")
def fitted(selector8):
    result = train(selector8, TrainParams(design="ridge"), progress=False)
    assert isinstance(result.model, RidgeMVM)
    return result


def random_ridge(tile: TileSpec = TILE, seed: int = 0) -> RidgeMVM:
    """A ridge model with made-up standardization and coefficients (every term non-zero)."""
    gen = torch.Generator().manual_seed(seed)
    model = build_model("ridge", tile)
    n_f = len(ridge.FEATURES)
    with torch.no_grad():
        model.feature_mean.copy_(0.05 * torch.rand(n_f, generator=gen, dtype=torch.float64))
        model.feature_scale.copy_(0.01 + 0.05 * torch.rand(n_f, generator=gen, dtype=torch.float64))
        model.coef.copy_(0.02 * torch.randn(n_f, generator=gen, dtype=torch.float64))
        model.intercept.fill_(0.3)
    return model.requires_grad_(False).eval()


def tiles(tile: TileSpec = TILE, n_tiles: int = 3, batch: int = 5, seed: int = 1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    g = tile.g_off_s + (tile.g_on_s - tile.g_off_s) * torch.rand(n_tiles, tile.rows, tile.cols, generator=gen)
    v = tile.v_read_max_v * torch.rand(n_tiles, batch, tile.rows, generator=gen)
    return g.to(dtype), v.to(dtype)


def test_features_are_the_documented_physics():
    """(v_n^p @ M) / rows with M: G, T_an, T_an rho, T_an kappa, T_an driver load, T_an sense load; v^2 and v^3
    against T_an (the one definition the baseline and the design share)."""
    tile = dataclasses.replace(TILE, rows=5, cols=4, r_driver_ohm=200.0, r_sense_ohm=50.0, r_wire_row_ohm=3.0,
                               r_wire_col_ohm=7.0)
    rng = np.random.default_rng(2)
    g_n = torch.as_tensor(rng.uniform(0.1, 1.0, (5, 4)))
    v_n = torch.as_tensor(rng.uniform(0.0, 1.0, (3, 5)))
    x = ridge.features(ridge.feature_maps(g_n, tile), v_n)
    assert x.shape == (3, 4, len(ridge.FEATURES)) == (3, 4, 8)
    g_on = tile.g_on_s
    t_an = analytic_transfer(g_n, tile)
    rho, kappa = wire_drop(g_n, 3.0 * g_on, 7.0 * g_on)
    load_r = 200.0 * g_on * g_n.sum(1, keepdim=True)
    load_c = 50.0 * g_on * g_n.sum(0, keepdim=True)
    expected = [v_n @ g_n, v_n @ t_an, v_n @ (t_an * rho), v_n @ (t_an * kappa), v_n @ (t_an * load_r),
                v_n @ (t_an * load_c), (v_n ** 2) @ t_an, (v_n ** 3) @ t_an]
    for k, e in enumerate(expected):
        torch.testing.assert_close(x[..., k], e / 5, msg=ridge.FEATURES[k])


@pytest.mark.spice
def test_the_ridge_design_is_the_ridge_baseline(selector8, fitted):
    """Same features, same fit: the folded per-tile matrices give sklearn's predictions on the explicit
    feature matrix to float64 rounding, on held-out matrices of a strongly non-linear array."""
    model, test = fitted.model, selector8.test
    baseline = RidgeBaseline(model.tile).fit(selector8.train)
    scaler, fit = baseline.model_[0], baseline.model_[-1]
    np.testing.assert_array_equal(model.feature_mean.numpy(), scaler.mean_)
    np.testing.assert_array_equal(model.feature_scale.numpy(), scaler.scale_)
    np.testing.assert_array_equal(model.coef.detach().numpy(), fit.coef_)
    assert float(model.intercept.detach()) == float(fit.intercept_) and model.alpha == fit.alpha == ridge.RIDGE_ALPHA
    expected = baseline.predict_a(test.g_s, test.g_index, test.v_v)
    got = predict_a(model, test.g_s, test.g_index, test.v_v)
    fs = model.full_scale_a
    assert np.max(np.abs(got - expected)) < 1e-10 * fs
    # not a trivial agreement: the ridge is far better than the ideal model on this array
    rms = np.sqrt(np.mean((got - test.i_a) ** 2)) / fs
    assert rms < 0.05 * np.sqrt(np.mean((test.i_ideal_a - test.i_a) ** 2)) / fs
    assert fitted.history["best_val_rms_fs"] > 0 and fitted.history["epochs_run"] == 0


@pytest.mark.spice
def test_fold_and_apply_equal_the_unfused_path_on_the_fitted_model(selector8, fitted):
    model, test = fitted.model, selector8.test
    g = torch.as_tensor(test.g_s)
    v = torch.as_tensor(test.v_v[: 4 * len(g)]).reshape(len(g), 4, -1)
    bound, unfused = model.bind(g)(v), model(g, v)
    assert bound.dtype == torch.float64
    torch.testing.assert_close(bound, unfused, rtol=1e-10, atol=1e-12 * model.full_scale_a)


def test_bind_shared_equals_bind_and_gradients_flow():
    model = random_ridge()
    assert isinstance(model, SharedInputTileMVM) and isinstance(model, TileMVM)
    assert not isinstance(model, LoadedTileMVM)  # it cannot tell effective line resistances
    g, v = tiles(n_tiles=6, batch=4, dtype=torch.float32)
    unfused = model(g, v)
    torch.testing.assert_close(model.bind(g)(v), unfused, rtol=1e-5, atol=1e-7 * TILE.full_scale_a)
    groups = model.bind_shared(g.reshape(2, 3, TILE.rows, TILE.cols))(v[::3])
    per_tile = model.bind(g)(v[::3].repeat_interleave(3, 0)).reshape(2, 3, 4, TILE.cols)
    assert groups.dtype == torch.float32
    torch.testing.assert_close(groups, per_tile, rtol=1e-6, atol=1e-9 * TILE.full_scale_a)
    # the non-linear and constant terms are not negligible here
    assert (unfused - model(g, v * 0.5) * 2).abs().max() > 1e-3 * unfused.abs().max()
    g.requires_grad_(True)
    v.requires_grad_(True)
    model.bind(g)(v).square().sum().backward()
    assert g.grad.abs().sum() > 0 and v.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"expects \[G, K, 16, 8\]"):
        model.bind_shared(g)
    with pytest.raises(ValueError, match=r"expected \[2, B, 16\]"):
        model.bind_shared(g.detach().reshape(2, 3, TILE.rows, TILE.cols))(v)


def test_cost_model_and_settings():
    model = random_ridge()
    assert model.macs_per_vector() == 3 * 16 * 8
    assert sum(p.numel() for p in model.parameters()) == len(ridge.FEATURES) + 1
    arch = model.architecture()
    assert arch["design"] == "ridge" and arch["hyperparameters"] == {"alpha": ridge.RIDGE_ALPHA}
    assert isinstance(from_architecture(json.loads(json.dumps(arch))), RidgeMVM)
    norm = model.normalization()
    assert norm["features"] == list(ridge.FEATURES) and norm["coef"] == model.coef.tolist()
    for bad in (-1.0, float("nan"), "1", True):
        with pytest.raises(ValueError, match="alpha must be a number >= 0"):
            RidgeMVM(TILE, alpha=bad)


@pytest.mark.spice
def test_round_trip_through_a_file(selector8, fitted, tmp_path):
    path = tmp_path / "ridge.h5"
    params = TrainParams(design="ridge")
    save_surrogate(path, fitted.model, selector8.spec, train_params=params.to_dict(), history=fitted.history,
                   data_sha256=selector8.sha256, data_path=selector8.path, split=selector8.split_json())
    loaded = load_surrogate(path, expect_spec=selector8.spec)
    assert isinstance(loaded, RidgeMVM) and loaded.coef.dtype == torch.float64
    for name, value in fitted.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    g, v = tiles(loaded.tile, seed=4)
    torch.testing.assert_close(loaded.bind(g)(v), fitted.model.bind(g)(v), rtol=0.0, atol=0.0)
    text = describe(path)
    assert "design: ridge" in text and '"alpha": 1e-06' in text and "MACs per vector after bind: 192" in text
    with pytest.raises(SurrogateFileError, match="v_read_max_v 1.0 in the file != 0.5"):
        load_surrogate(path, expect_spec=dataclasses.replace(selector8.spec, v_read_max_v=0.5))


def test_crossbar_layers_run_with_the_ridge_design():
    """A conv layer (2 bit slices, differential pairs, several row and column tiles) reads its tiles through
    `bind_shared`, with the outputs and input gradients of per-tile binding; per-read noise takes the generic
    path (the tile's response to one row at a time)."""
    model = random_ridge()
    conv = nn.Conv2d(5, 20, 3, padding=1)  # 45 inputs -> 3 row tiles of 16; 20 outputs -> 3 column tiles of 8
    cfg = CrossbarConfig(adc_bits=0, seed=1)
    shared = CrossbarConv2d.from_float(conv, cfg, model)
    per_tile = CrossbarConv2d.from_float(conv, cfg, PerTileOnly(model))
    x = torch.rand(2, 5, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y, y_ref = shared(x), per_tile(x)
    assert y.dtype == torch.float32 and torch.all(torch.isfinite(y))
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5 * float(y_ref.abs().max()))
    grads = []
    for layer in (shared, per_tile):
        x_ = x.clone().requires_grad_(True)
        (layer(x_) * torch.linspace(-1, 1, 20).view(1, -1, 1, 1)).sum().backward()
        grads.append(x_.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5 * float(grads[1].abs().max()))
    noisy_cfg = CrossbarConfig(adc_bits=0, seed=3, read_noise_sigma=0.1, read_noise_mode="per_read")
    lin = nn.Linear(20, 10)
    noisy, quiet = (CrossbarLinear.from_float(lin, c, model) for c in (noisy_cfg, noisy_cfg.replace(read_noise_sigma=0.0)))
    xl = torch.rand(6, 20, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y_noisy, y_quiet = noisy(xl), quiet(xl)
    assert torch.all(torch.isfinite(y_noisy)) and (y_noisy - y_quiet).abs().max() > 1e-3 * y_quiet.abs().max()
