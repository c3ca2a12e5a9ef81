"""surrogate/transfer.py without training: the physics prior, the per-cell features and corrections, the
third-order combination and the calibration of the prior, each against a hand calculation or the exact
nodal solve (fast: no ngspice, data from spice/nodal.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spice import nodal
from surrogate.data import Split
from surrogate.physics import TileSpec, wire_drop
from surrogate.transfer import TransferNet
from tests.conftest import F64_EPS


def _tile(make_spec, **kw):
    spec = make_spec(**{"rows": 5, "cols": 4, **kw})
    return spec, TileSpec.from_circuit(spec)


def _split(spec, n_g=3, n_v=12, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (n_g, spec.rows, spec.cols))
    g_index = np.repeat(np.arange(n_g), n_v)
    v = rng.uniform(0.0, spec.v_read_max_v, (n_g * n_v, spec.rows))
    i = np.concatenate([nodal.column_currents(spec, g[k], v[g_index == k]) for k in range(n_g)])
    return Split(g_s=g, g_rows=np.arange(n_g), g_index=g_index, v_v=v, i_a=i,
                 i_ideal_a=np.einsum("nr,nrc->nc", v, g[g_index]))


def test_constructor_checks_and_reported_settings(make_spec):
    _, tile = _tile(make_spec)
    with pytest.raises(ValueError, match="^cell_hidden must be a positive integer, got 0$"):
        TransferNet(tile, cell_hidden=0)
    with pytest.raises(ValueError, match="^v_order must be 1 \\(linear in v\\) or 3 \\(up to cubic in v\\), got 2$"):
        TransferNet(tile, v_order=2)
    with pytest.raises(ValueError, match="^v_basis must be one of \\('cubic', 'learned'\\), got 'spline'$"):
        TransferNet(tile, v_order=3, v_basis="spline")
    net = TransferNet(tile)
    assert net.hyperparameters() == {"cell_hidden": 32, "v_order": 1, "v_basis": "cubic"}
    assert TransferNet(tile, cell_hidden=4, v_order=3).hyperparameters() == {"cell_hidden": 4, "v_order": 3,
                                                                              "v_basis": "cubic"}
    assert TransferNet(tile, v_basis="learned").v_basis == "cubic"  # linear in v: no higher terms to learn
    learned = TransferNet(tile, v_order=3, v_basis="learned")
    assert learned.macs_per_vector() == 8 * 20 + 2 * 4 + 3 * 24 * 5  # + the basis network per row voltage
    v_n = torch.rand(3, 6, 5, dtype=torch.float64)
    for got, want in zip(learned.double().basis(v_n), (v_n**2, v_n**3), strict=True):  # starts at the cubic
        torch.testing.assert_close(got, want, rtol=4 * F64_EPS, atol=0)  # v*v*v vs torch's pow: a few ulp
    assert net.param_units() == {"log_g_driver_n": "ln(S / g_on_s)", "log_g_sense_n": "ln(S / g_on_s)"}
    assert net.macs_per_vector() == 20 and TransferNet(tile, v_order=3).macs_per_vector() == 8 * 20 + 2 * 4
    assert net.cell_net[-1].out_features == 1 and TransferNet(tile, v_order=3).cell_net[-1].out_features == 8
    assert net.cell_net[0].out_features == 32 and net.cell_net[2].in_features == 32
    norm = net.normalization()
    assert norm["conductance"] == "g_n = g_s / g_on_s" and norm["voltage"] == "v_n = v_v / v_read_max_v"
    assert norm["cell_features"] == list(TransferNet.FEATURES) and len(norm["feature_mean"]) == 7
    assert norm["feature_std"] == [1.0] * 7 and norm["lin_scale"] == 1.0
    assert norm["full_scale_a"] == pytest.approx(tile.full_scale_a)
    assert norm["output"].startswith("i_a = full_scale_a * i_n; v_order 1: i_n = v_n @ T_n / rows")


def test_untrained_net_is_the_exact_wire_free_circuit(make_spec):
    """Zero-initialized correction and the spec's driver/sense resistances: without wires T_eff is the
    exact transfer matrix of the array (nodal solve); bind gives v @ T in amperes."""
    spec, tile = _tile(make_spec, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0, r_driver_ohm=700.0, r_sense_ohm=300.0)
    net = TransferNet(tile).double()
    g = np.random.default_rng(1).uniform(spec.g_off_s, spec.g_on_s, (2, 5, 4))
    t_n = net.transfer_n(torch.as_tensor(g)).detach().numpy()
    for k in range(2):
        np.testing.assert_allclose(t_n[k] * spec.g_on_s, nodal.transfer_matrix(spec, g[k]), rtol=1e-6)
    v = torch.rand(2, 6, 5, dtype=torch.float32) * 0.2
    mvm = net.bind(torch.as_tensor(g))
    out = mvm(v)
    assert out.dtype == torch.float32  # the input's dtype, computed in the parameters' dtype
    ref = np.stack([v[k].double().numpy() @ nodal.transfer_matrix(spec, g[k]) for k in range(2)])
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="^v_v has shape \\(1, 6, 5\\); expected \\[2, B, 5\\]$"):
        mvm(v[:1])
    with pytest.raises(ValueError, match="expected \\[2, B, 5\\]"):
        mvm(v[..., :4])
    with pytest.raises(ValueError, match="expected \\[2, B, 5\\]"):
        mvm(v[0])


def test_cell_features_are_the_documented_physics(make_spec):
    spec, tile = _tile(make_spec, r_driver_ohm=200.0, r_sense_ohm=50.0, r_wire_row_ohm=3.0, r_wire_col_ohm=7.0)
    net = TransferNet(tile).double()
    g_n = torch.as_tensor(np.random.default_rng(2).uniform(0.1, 1.0, (2, 5, 4)))
    feats, rho, kappa = net._raw_features(g_n)
    g_on = spec.g_on_s
    rho_ref, kappa_ref = wire_drop(g_n, 3.0 * g_on, 7.0 * g_on)
    assert feats.shape == (2, 5, 4, 7)
    torch.testing.assert_close(feats[..., 0], g_n)
    torch.testing.assert_close(feats[0, :, 0, 1], torch.linspace(0, 1, 5, dtype=torch.float64))  # row position
    torch.testing.assert_close(feats[1, 3, :, 2], torch.linspace(0, 1, 4, dtype=torch.float64))  # column position
    torch.testing.assert_close(feats[..., 3], rho_ref)
    torch.testing.assert_close(feats[..., 4], kappa_ref)
    torch.testing.assert_close(rho, rho_ref)
    torch.testing.assert_close(kappa, kappa_ref)
    torch.testing.assert_close(feats[1, 2, 3, 5], 200.0 * g_on * g_n[1, 2, :].sum())  # driver load of row 2
    torch.testing.assert_close(feats[1, 2, 3, 6], 50.0 * g_on * g_n[1, :, 3].sum())  # sense load of column 3


def test_effective_cell_conductance_formula(make_spec):
    """g_eff = g_n exp(h) / (1 + a_r rho + a_c kappa), h the network's first output on standardized features."""
    _, tile = _tile(make_spec, r_wire_row_ohm=4.0, r_wire_col_ohm=6.0)
    net = TransferNet(tile, cell_hidden=3, v_order=3).double()
    torch.manual_seed(0)
    with torch.no_grad():
        net.log_wire_row_gain.fill_(math.log(2.0))
        net.log_wire_col_gain.fill_(math.log(3.0))
        net.cell_net[-1].weight.normal_(0, 0.1)
        net.cell_net[-1].bias.normal_(0, 0.1)
        net.feature_mean.uniform_(-0.1, 0.1)
        net.feature_std.uniform_(0.5, 2.0)
    g = torch.as_tensor(np.random.default_rng(3).uniform(5e-6, 5e-5, (1, 5, 4)))
    g_eff, out = net._cells(g)
    g_n = g / tile.g_on_s
    feats, rho, kappa = net._raw_features(g_n)
    h = net.cell_net((feats - net.feature_mean) / net.feature_std)
    torch.testing.assert_close(out, h)
    torch.testing.assert_close(g_eff, g_n * torch.exp(h[..., 0]) / (1 + 2.0 * rho + 3.0 * kappa))


def test_third_order_combination_by_hand(make_spec):
    _, tile = _tile(make_spec)  # rows = 5
    net = TransferNet(tile, v_order=3).double()
    net.lin_scale.fill_(2.0)
    t = lambda x: torch.tensor([x], dtype=torch.float64)  # noqa: E731
    lin, a, b, c, c2, c3 = t(0.5), t(0.1), t(0.2), t(0.3), t(0.4), t(0.6)
    l1 = 1.0  # lin * lin_scale
    expected = 0.5 + 0.1 + l1 * 0.2 + l1**2 * (0.3 + 0.4 / 5) + l1**3 * 0.6 / 5
    torch.testing.assert_close(net._combine(lin, a, b, c, c2, c3), t(expected))
    net.lin_scale.fill_(4.0)  # l1 = 2
    expected = 0.5 + 0.1 + 2 * 0.2 + 4 * (0.3 + 0.4 / 5) + 8 * 0.6 / 5
    torch.testing.assert_close(net._combine(lin, a, b, c, c2, c3), t(expected))


@pytest.mark.parametrize("v_basis", ["cubic", "learned"])
def test_folded_third_order_model_equals_its_per_vector_form(make_spec, v_basis):
    _, tile = _tile(make_spec, r_wire_row_ohm=4.0, r_wire_col_ohm=6.0)
    net = TransferNet(tile, cell_hidden=4, v_order=3, v_basis=v_basis).double()
    torch.manual_seed(1)
    with torch.no_grad():
        net.cell_net[-1].weight.normal_(0, 0.3)
        net.cell_net[-1].bias.normal_(0, 0.3)
        net.lin_scale.fill_(3.0)
        if v_basis == "learned":  # a basis away from v^2, v^3: the folded SI path must scale it like the cubic
            net.basis_net[-1].weight.normal_(0, 0.5)
            net.basis_net[-1].bias.normal_(0, 0.5)
    g = torch.as_tensor(np.random.default_rng(4).uniform(5e-6, 5e-5, (2, 5, 4)))
    v = torch.rand(2, 7, 5, dtype=torch.float64) * 0.2
    folded = net.apply_n(net.fold(g), v)
    direct = net.forward_n(g, v)
    torch.testing.assert_close(folded, direct, rtol=1e-10, atol=1e-12)
    # the correction terms matter: far from the linear part alone
    lin_only = TransferNet(tile, cell_hidden=4, v_order=1).double()
    lin_only.load_state_dict({k: v_ for k, v_ in net.state_dict().items() if not k.startswith("cell_net.4")},
                             strict=False)
    assert (direct - lin_only.forward_n(g, v)).abs().max() > 1e-3 * direct.abs().max()
    torch.testing.assert_close(net.bind(g.float())(v.float()), (direct * net.full_scale_a).float(), rtol=1e-4,
                               atol=1e-9)


def test_init_from_data_standardizes_features_and_finds_the_prior(make_spec):
    """Data from an array whose driver and sense are 10x the spec's: the calibration grid picks 10x;
    the feature scaler is the features' mean and std; lin_scale is 1 / RMS training current (full scale)."""
    true_spec = make_spec(rows=5, cols=4, r_driver_ohm=1000.0, r_sense_ohm=1000.0, r_wire_row_ohm=0.0,
                          r_wire_col_ohm=0.0)
    spec, tile = _tile(make_spec, r_driver_ohm=100.0, r_sense_ohm=100.0, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0)
    train = _split(true_spec)
    net = TransferNet(tile)
    net.init_from_data(train)
    g_on = spec.g_on_s
    assert net.log_g_driver_n.item() == pytest.approx(-math.log(1000.0 * g_on), rel=1e-6)
    assert net.log_g_sense_n.item() == pytest.approx(-math.log(1000.0 * g_on), rel=1e-6)
    feats = net._raw_features(torch.as_tensor(train.g_s / g_on))[0].reshape(-1, 7).numpy()
    std = feats.std(0)
    np.testing.assert_allclose(net.feature_mean.numpy(), feats.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net.feature_std.numpy(), np.where(std > 1e-12, std, 1.0), rtol=1e-5)
    assert net.feature_std[3] == 1.0 and net.feature_std[4] == 1.0  # no wires: constant features keep 1
    rms = math.sqrt(np.mean((train.i_a / tile.full_scale_a) ** 2))
    assert float(net.lin_scale) == pytest.approx(1 / rms, rel=1e-5)
    # the prior now reproduces the data: the exact wire-free array with 10x resistances
    t_n = net.double().transfer_n(torch.as_tensor(train.g_s)).detach().numpy()
    np.testing.assert_allclose(t_n[0] * g_on, nodal.transfer_matrix(true_spec, train.g_s[0]), rtol=1e-6)


def test_third_order_calibration_fits_a_global_coefficient_per_term(make_spec):
    spec, tile = _tile(make_spec, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0)
    train = _split(spec)
    linear = TransferNet(tile, v_order=1)
    linear.init_from_data(train)
    cubic = TransferNet(tile, v_order=3)
    cubic.init_from_data(train)
    assert cubic.log_g_driver_n.item() == pytest.approx(linear.log_g_driver_n.item())
    coef = cubic.cell_net[-1].bias[1:].detach()
    assert coef.abs().max() < 1e-3  # a linear array: every higher-order coefficient fits ~0
    assert cubic.cell_net[-1].bias[0].item() == 0.0
    lin_feats = linear._prior_features(torch.rand(3, 5, dtype=torch.float64),
                                       torch.rand(5, 4, dtype=torch.float64), 1.0)
    assert lin_feats.shape == (12, 1)
    v, t_n = torch.rand(3, 5, dtype=torch.float64), torch.rand(5, 4, dtype=torch.float64)
    f = cubic._prior_features(v, t_n, 2.0)
    lin = v @ t_n / 5
    assert f.shape == (12, 8)
    torch.testing.assert_close(f[:, 0], lin.reshape(-1))
    torch.testing.assert_close(f[:, 1], ((v * v) @ t_n / 5).reshape(-1))
    torch.testing.assert_close(f[:, 2], ((v ** 3) @ t_n / 5).reshape(-1))
    torch.testing.assert_close(f[:, 3], (2 * lin * lin).reshape(-1))
    torch.testing.assert_close(f[:, 4], (2 * lin * ((v * v) @ t_n / 5)).reshape(-1))
    torch.testing.assert_close(f[:, 5], ((2 * lin) ** 2 * lin).reshape(-1))
    torch.testing.assert_close(f[:, 6], ((2 * lin) ** 2 * (t_n.sum(0) / 5)).reshape(-1))
    torch.testing.assert_close(f[:, 7], ((2 * lin) ** 3 * (t_n.sum(0) / 5)).reshape(-1))


def test_small_settings_edge_cases(make_spec):
    spec, tile = _tile(make_spec)
    assert TransferNet(tile, cell_hidden=1).cell_hidden == 1  # the smallest network is allowed
    assert TransferNet(tile, v_order=3).normalization()["output"] == (
        "i_a = full_scale_a * i_n; v_order 1: i_n = v_n @ T_n / rows; v_order 3: see TransferNet docstring")
    silent = _split(spec)
    silent.v_v[:] = 0.0
    silent.i_a[:] = 0.0
    net = TransferNet(tile)
    net.init_from_data(silent)  # no current at all: the scale stays 1
    assert net.lin_scale.item() == 1.0


def test_linear_apply_equals_the_per_vector_solve(make_spec):
    _, tile = _tile(make_spec, r_wire_row_ohm=4.0, r_wire_col_ohm=6.0)
    net = TransferNet(tile, cell_hidden=4).double()
    with torch.no_grad():
        net.cell_net[-1].bias.fill_(0.2)
    g = torch.as_tensor(np.random.default_rng(6).uniform(5e-6, 5e-5, (2, 5, 4)))
    v = torch.rand(2, 3, 5, dtype=torch.float64) * 0.2
    torch.testing.assert_close(net.apply_n(net.fold(g), v), net.forward_n(g, v), rtol=1e-10, atol=1e-14)
    v_n = v / tile.v_read_max_v
    torch.testing.assert_close(net.apply_n(net.fold(g), v), v_n @ net.transfer_n(g) / 5)
