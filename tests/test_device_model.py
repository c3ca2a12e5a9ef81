"""The device model between the target conductances and the array (dnn/device.py, wired into the layers)."""

import math

import pytest
import torch
from torch import nn

import dnn.layers as layers_mod
from dnn.config import CrossbarConfig, get_device_preset
from dnn.device import (
    DeviceStats,
    apply_faults_and_range,
    draw_faults,
    draw_range_factors,
    drift_nu_mean_map,
    prog_noise_sigma_s,
    program_conductances,
    read_noise_scale,
)
from dnn.layers import CrossbarLinear
from dnn.mvm import IdealTileMVM
from dnn.noise import apply_read_noise, draw_drift_nu, make_generator

G_OFF, G_ON, V_MAX = 25e-6 / 40, 25e-6, 0.2
AIHWKIT = get_device_preset("aihwkit_pcm").prog_noise_rel
N = 200_000  # draws per statistic


def gen(seed=0):
    return make_generator(seed)


def layer(cfg, n_in=40, n_out=12, seed=0, weight=None):
    torch.manual_seed(seed)
    ref = nn.Linear(n_in, n_out)
    if weight is not None:
        ref.weight.data.copy_(weight)
    return CrossbarLinear.from_float(ref, cfg, IdealTileMVM(16, 8, G_OFF, G_ON, V_MAX), name="fc")


@pytest.mark.parametrize("x", [0.2, 0.5, 0.7])
def test_programming_error_follows_the_quadratic_sigma(x):
    target = torch.full((N,), x * G_ON, dtype=torch.float64)
    g, redraws = program_conductances(target, G_OFF, G_ON, AIHWKIT, gen())
    sigma = float(prog_noise_sigma_s(target[:1], G_ON, *AIHWKIT))
    c0, c1, c2 = AIHWKIT
    assert sigma == pytest.approx(G_ON * (c0 + c1 * x + c2 * x * x), rel=1e-12)
    err = g - target
    # clipping sits >= 6 sigma away at these levels: a plain Gaussian; 5-sigma bounds of the sample statistics
    assert abs(float(err.mean())) < 5 * sigma / math.sqrt(N)
    assert float(err.std()) == pytest.approx(sigma, abs=5 * sigma / math.sqrt(2 * N))
    assert redraws == 0 and bool(((g >= G_OFF) & (g <= G_ON)).all())


def test_programming_noise_is_clipped_to_the_range():
    g, _ = program_conductances(torch.full((N,), G_OFF), G_OFF, G_ON, AIHWKIT, gen())
    assert float(g.min()) == pytest.approx(G_OFF) and float(g.max()) <= G_ON
    assert 0.4 < float((g == G_OFF).double().mean()) < 0.6  # about half the draws fall below g_off


def test_program_and_verify_shrinks_the_error():
    target = torch.rand(N, generator=gen(1), dtype=torch.float64) * (G_ON - G_OFF) + G_OFF
    once, _ = program_conductances(target, G_OFF, G_ON, AIHWKIT, gen(2))
    tol = 0.02
    verified, redraws = program_conductances(target, G_OFF, G_ON, AIHWKIT, gen(2), verify_iterations=8,
                                             verify_tolerance=tol)
    limit = tol * (G_ON - G_OFF)
    bad_once = float(((once - target).abs() > limit).double().mean())
    bad_verified = float(((verified - target).abs() > limit).double().mean())
    assert redraws > 0 and bad_verified < 0.05 * bad_once
    assert float((verified - target).std()) < 0.6 * float((once - target).std())


def test_fault_rates_within_binomial_bounds_and_exclusive():
    p_on, p_off = 0.03, 0.07
    on, off = draw_faults((N,), p_on, p_off, gen())
    assert not bool((on & off).any())
    for k, p in ((int(on.sum()), p_on), (int(off.sum()), p_off)):
        assert abs(k - N * p) < 5 * math.sqrt(N * p * (1 - p))


def test_stuck_cells_sit_exactly_at_the_range_ends():
    target = torch.rand(4, 16, 8, generator=gen(3), dtype=torch.float64) * (G_ON - G_OFF) + G_OFF
    on, off = draw_faults(tuple(target.shape), 0.2, 0.2, gen(4))
    g = apply_faults_and_range(target, G_OFF, G_ON, on, off)
    assert bool((g[on] == G_ON).all()) and bool((g[off] == G_OFF).all())
    assert torch.equal(g[~(on | off)], target[~(on | off)])
    f = draw_range_factors(tuple(target.shape), 0.1, gen(5))
    g = apply_faults_and_range(target, G_OFF, G_ON, on, off, f)
    assert torch.equal(g[on], (G_ON * f)[on]) and torch.equal(g[off], (G_OFF * f)[off])
    ok = ~(on | off)
    assert bool((g[ok] <= G_ON * f[ok]).all()) and bool((g[ok] >= G_OFF * f[ok]).all())


def test_range_spread_statistics():
    f = draw_range_factors((N,), 0.1, gen())
    assert float(f.mean()) == pytest.approx(1.0, abs=5 * 0.1 / math.sqrt(N))
    assert float(f.std()) == pytest.approx(0.1, abs=5 * 0.1 / math.sqrt(2 * N))


def test_layer_faults_are_seeded_counted_and_exact():
    cfg = CrossbarConfig(stuck_on_probability=0.05, stuck_off_probability=0.05)
    zero = torch.zeros(12, 40)  # every target at g_off: only stuck-ON cells reach g_on
    a, b = layer(cfg, weight=zero), layer(cfg, weight=zero)
    g = a.programmed_conductances(torch.device("cpu"), torch.float32)
    assert torch.equal(g, b.programmed_conductances(torch.device("cpu"), torch.float32))
    stats = a.device_stats()
    assert isinstance(stats, DeviceStats) and stats.cells == g.numel()
    assert int((g == torch.tensor(G_ON, dtype=torch.float32)).sum()) == stats.stuck_on
    assert abs(stats.stuck_on - 0.05 * g.numel()) < 5 * math.sqrt(g.numel() * 0.05 * 0.95)
    other = layer(cfg.replace(seed=1), weight=zero).programmed_conductances(torch.device("cpu"), torch.float32)
    assert not torch.equal(g, other)
    a.reprogram()  # a new programming places new faults
    assert not torch.equal(g, a.programmed_conductances(torch.device("cpu"), torch.float32))


def test_a_tile_with_every_device_stuck_is_counted():
    lay = layer(CrossbarConfig(stuck_on_probability=0.6, stuck_off_probability=0.4))
    stats = lay.device_stats()
    assert stats.tiles_all_stuck == lay.tile_count() and stats.stuck_on + stats.stuck_off == stats.cells
    assert layer(CrossbarConfig()).device_stats() == DeviceStats(cells=stats.cells, stuck_on=0, stuck_off=0,
                                                                 tiles_all_stuck=0, tiles=lay.tile_count())
    assert stats.to_dict()["working_cells"] == 0 and stats.tiles == lay.tile_count()


@pytest.mark.parametrize("extra", [{}, {"t_drift_s": 1e4, "drift_nu_mean": 0.05, "drift_nu_std": 0.02},
                                   {"read_noise_sigma": 0.05, "read_noise_mode": "per_forward"},
                                   {"read_noise_sigma": 0.05, "read_noise_mode": "per_read"}])
def test_defaults_leave_the_layer_bit_identical(monkeypatch, extra):
    cfg = CrossbarConfig(**extra)
    x = torch.randn(6, 40, generator=gen(7))
    with_model = layer(cfg)(x)

    def bypass(self, g_target):  # the programming step without the device model
        return g_target, DeviceStats(cells=g_target.numel(), stuck_on=0, stuck_off=0, tiles_all_stuck=0)

    monkeypatch.setattr(layers_mod.CrossbarLayerBase, "_program_devices", bypass)
    monkeypatch.setattr(layers_mod.CrossbarLayerBase, "_read_noise_scale", lambda self, g: None)
    assert torch.equal(with_model, layer(cfg)(x))


def test_programming_noise_reaches_the_layer_and_is_seeded():
    cfg = CrossbarConfig(prog_noise_c0_rel=AIHWKIT[0], prog_noise_c1_rel=AIHWKIT[1], prog_noise_c2_rel=AIHWKIT[2])
    x = torch.randn(6, 40, generator=gen(7))
    clean, noisy = layer(CrossbarConfig())(x), layer(cfg)(x)
    assert torch.equal(noisy, layer(cfg)(x)) and not torch.equal(noisy, clean)
    assert float((noisy - clean).abs().max()) < 0.5 * float(clean.abs().max())


def test_drift_mean_follows_the_conductance():
    x = torch.cat([torch.full((N,), 0.1), torch.full((N,), 1.0)])
    nu = draw_drift_nu(x.shape, drift_nu_mean_map(x, 0.0568, -0.0112), 0.0111, gen())
    for part, xv in ((nu[:N], 0.1), (nu[N:], 1.0)):
        assert float(part.mean()) == pytest.approx(0.0568 - 0.0112 * xv, abs=5 * 0.0111 / math.sqrt(N))
    # in a layer: a slope changes the drifted conductances, deterministically
    base = CrossbarConfig(t_drift_s=1e4, t0_s=20.0, drift_nu_mean=0.0568, drift_nu_std=0.0111)
    cpu, f32 = torch.device("cpu"), torch.float32
    flat = layer(base).programmed_conductances(cpu, f32)
    sloped = layer(base.replace(drift_nu_slope=-0.0112)).programmed_conductances(cpu, f32)
    assert torch.equal(sloped, layer(base.replace(drift_nu_slope=-0.0112)).programmed_conductances(cpu, f32))
    assert float(sloped.mean()) > float(flat.mean())  # a smaller nu at high g: less decay


def test_read_noise_scales_with_the_conductance():
    g = torch.full((N,), G_ON / 4, dtype=torch.float64)
    scale = read_noise_scale(g, G_ON, -0.5)
    assert float(scale[0]) == pytest.approx(2.0)
    rel = apply_read_noise(g, 0.05, gen(), scale) / g - 1.0
    assert float(rel.std()) == pytest.approx(0.1, abs=5 * 0.1 / math.sqrt(2 * N))
    cfg = CrossbarConfig(read_noise_sigma=0.05, read_noise_mode="per_read")
    x = torch.randn(6, 40, generator=gen(7))
    assert not torch.equal(layer(cfg)(x), layer(cfg.replace(read_noise_g_exponent=-0.5))(x))


def test_aihwkit_preset_sets_each_key():
    p = get_device_preset("aihwkit_pcm")
    cfg = CrossbarConfig.from_dict(p.device_config(t_drift_s=3600.0))
    assert cfg.prog_noise_c0_rel == pytest.approx(0.26348 / 25) and cfg.prog_noise_c1_rel == pytest.approx(1.9650 / 25)
    assert cfg.prog_noise_c2_rel == pytest.approx(-1.1731 / 25) and cfg.t0_s == 20.0
    assert cfg.drift_nu_slope < 0 and cfg.prog_noise_on and not cfg.faults_on
    assert p.g_on_s == 25e-6


@pytest.mark.parametrize("settings, key", [
    ({"stuck_on_probability": 1.5}, "stuck_on_probability"),
    ({"stuck_off_probability": -0.1}, "stuck_off_probability"),
    ({"stuck_on_probability": 0.6, "stuck_off_probability": 0.5}, "stuck_off_probability"),
    ({"g_range_spread": -0.1}, "g_range_spread"),
    ({"prog_noise_c1_rel": float("nan")}, "prog_noise_c1_rel"),
    ({"program_verify_iterations": -1}, "program_verify_iterations"),
    ({"program_verify_tolerance": 0.0}, "program_verify_tolerance"),
    ({"drift_nu_slope": 2.0}, "drift_nu_slope"),
    ({"read_noise_g_exponent": "x"}, "read_noise_g_exponent"),
])
def test_bad_values_name_the_key(settings, key):
    with pytest.raises(ValueError, match=rf"^CrossbarConfig\.{key} = ") as exc:
        CrossbarConfig.from_dict(settings)
    assert "\n" not in str(exc.value)


def test_an_unknown_preset_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown device preset 'pcm_99'; valid: .*'aihwkit_pcm'"):
        get_device_preset("pcm_99")
