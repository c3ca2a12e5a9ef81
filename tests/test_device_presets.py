"""Finite levels, aihwkit's laws, the cited presets, their validation (down to snakemake -n), device statistics in
the result and the device statements of the report."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from bench.device_vs_aihwkit import ks_distance, targets_us
from dnn.config import DEVICE_PRESETS, CrossbarConfig, get_device_preset
from dnn.device import (
    AIHWKIT_T_READ_S,
    aihwkit_pcm_nu,
    aihwkit_read_noise_sigma,
    prog_noise_sigma_s,
    program_conductances,
    snap_to_levels,
)
from dnn.layers import CrossbarLinear, device_stats_per_seed
from dnn.mvm import IdealTileMVM
from dnn.noise import make_generator
from dnn.report import ReportSettings
from dnn.report_device import bn_limit, bn_limit_decisions, device_statements
from dnn.results import EvaluationResult, MethodResult
from pipeline.config import ConfigError, validate_config
from tests.conftest import REPO

G_OFF, G_ON, V_MAX = 25e-6 / 40, 25e-6, 0.2
N = 200_000


def layer(cfg, n_in=40, n_out=12, seed=0):
    torch.manual_seed(seed)
    return CrossbarLinear.from_float(nn.Linear(n_in, n_out), cfg, IdealTileMVM(16, 8, G_OFF, G_ON, V_MAX), name="fc")


# ----------------------------------------------------------------------------- finite levels
def test_levels_snap_to_the_nearest_of_n_evenly_spaced_values():
    g = torch.rand(N, generator=make_generator(0), dtype=torch.float64) * (G_ON - G_OFF) + G_OFF
    for n in (2, 5, 17):
        s = snap_to_levels(g, G_OFF, G_ON, n)
        levels = G_OFF + torch.arange(n, dtype=torch.float64) * (G_ON - G_OFF) / (n - 1)
        nearest = levels[(g[:, None] - levels[None]).abs().argmin(dim=1)]
        torch.testing.assert_close(s, nearest, rtol=0, atol=1e-18)
        assert len(torch.unique(s)) == n
    assert snap_to_levels(g, G_OFF, G_ON, 0) is g
    assert float(snap_to_levels(torch.tensor([0.0, 1.0]), G_OFF, G_ON, 3)[1]) == pytest.approx(G_ON)


def test_a_layer_with_few_levels_programs_only_those_levels():
    cpu, f64 = torch.device("cpu"), torch.float64
    g = layer(CrossbarConfig(conductance_levels=3)).programmed_conductances(cpu, f64)
    levels = torch.tensor([G_OFF, (G_OFF + G_ON) / 2, G_ON], dtype=f64)
    assert bool(((g[..., None] - levels).abs().min(dim=-1).values < 1e-15).all())
    full = layer(CrossbarConfig()).programmed_conductances(cpu, f64)  # 4-bit slices: 16 levels
    assert len(torch.unique(full)) > 3
    assert torch.equal(layer(CrossbarConfig(conductance_levels=16)).programmed_conductances(cpu, f64), full)


# ----------------------------------------------------------------------------- aihwkit's laws
def _folded_normal(mu, s):
    """Mean and std of |N(mu, s^2)| (closed form)."""
    mean = s * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * s * s)) + mu * math.erf(mu / (s * math.sqrt(2)))
    return mean, math.sqrt(mu * mu + s * s - mean * mean)


@pytest.mark.parametrize("x, mu, sig", [
    (0.01, -0.0155 * math.log(0.01) + 0.0244, 0.045),  # sig clamped at 0.045
    (0.2, -0.0155 * math.log(0.2) + 0.0244, -0.0125 * math.log(0.2) - 0.0059),
    (0.5, 0.049, 0.008),  # both clamped low
    (1e-9, 0.1, 0.045),  # x floored at 1e-7: both clamped high
])
def test_aihwkit_nu_law_with_its_clamps(x, mu, sig):
    nu = aihwkit_pcm_nu(torch.full((N,), x), make_generator(1))
    mean, std = _folded_normal(mu, sig)
    assert float(nu.min()) >= 0.0
    assert float(nu.mean()) == pytest.approx(mean, abs=5 * std / math.sqrt(N))
    assert float(nu.std()) == pytest.approx(std, abs=5 * std / math.sqrt(2 * N))


def test_aihwkit_read_noise_sigma():
    t = 3600.0 + 20.0
    assert aihwkit_read_noise_sigma(t) == pytest.approx(0.0088 * math.sqrt(math.log((t + 250e-9) / 500e-9)))
    assert AIHWKIT_T_READ_S == 250e-9


def test_nonnegative_clip_lets_devices_leave_the_range_but_not_go_negative():
    sigma_coeffs = (0.5, 0.0, 0.0)  # sigma = g_on / 2: far beyond both ends
    g, _ = program_conductances(torch.full((N,), G_ON / 2, dtype=torch.float64), G_OFF, G_ON, sigma_coeffs,
                                make_generator(2), clip="nonnegative")
    p0 = 0.5 * (1 + math.erf(-1.0 / math.sqrt(2)))  # P(N(0.5, 0.5) < 0) in units of g_on
    assert float((g == 0).double().mean()) == pytest.approx(p0, abs=5 * math.sqrt(p0 * (1 - p0) / N))
    assert float(g.min()) == 0.0 and float(g.max()) > 1.5 * G_ON
    ranged, _ = program_conductances(torch.full((N,), G_ON / 2, dtype=torch.float64), G_OFF, G_ON, sigma_coeffs,
                                     make_generator(2))
    assert float(ranged.min()) == G_OFF and float(ranged.max()) == G_ON


def test_layer_uses_the_aihwkit_law_and_reads_noise_of_the_programmed_state():
    cpu, f64 = torch.device("cpu"), torch.float64
    drift = dict(t_drift_s=1e6, t0_s=20.0, drift_nu_mean=0.0568, drift_nu_std=0.0111, drift_nu_slope=-0.0112)
    lin = layer(CrossbarConfig(**drift)).programmed_conductances(cpu, f64)
    aih = layer(CrossbarConfig(**drift, drift_nu_law="aihwkit_pcm")).programmed_conductances(cpu, f64)
    assert torch.equal(aih, layer(CrossbarConfig(**drift, drift_nu_law="aihwkit_pcm")).programmed_conductances(cpu, f64))
    assert not torch.equal(lin, aih)
    lay = layer(CrossbarConfig(**drift, read_noise_g_exponent=-0.65))
    prog = lay._programmed_state(cpu, f64)[0]
    assert torch.equal(prog.g_read_ref_s, layer(CrossbarConfig()).programmed_conductances(cpu, f64))
    assert not torch.equal(prog.g_read_ref_s, prog.g_s)


# ----------------------------------------------------------------------------- presets
def test_rram_milo_and_pcm_joshi_reproduce_crosssim_sigma():
    milo = get_device_preset("rram_milo")
    assert (milo.g_on_s, milo.g_off_s) == pytest.approx((225e-6, 50e-6))
    for g_us in (50.0, 120.0, 225.0):
        sigma = float(prog_noise_sigma_s(torch.tensor(g_us * 1e-6, dtype=torch.float64), milo.g_on_s,
                                         *milo.prog_noise_rel))
        assert sigma == pytest.approx((-0.009107 * g_us + 4.782321) * 1e-6, rel=1e-9)
    joshi = get_device_preset("pcm_joshi")
    assert (joshi.g_on_s, joshi.g_off_s) == pytest.approx((25e-6, 0.25e-6))
    for g_us in (0.25, 10.0, 25.0):
        sigma = float(prog_noise_sigma_s(torch.tensor(g_us * 1e-6, dtype=torch.float64), joshi.g_on_s,
                                         *joshi.prog_noise_rel))
        assert sigma == pytest.approx((-0.00178767 * g_us ** 2 + 0.07585724 * g_us + 0.28638599) * 1e-6, rel=1e-9)


@pytest.mark.parametrize("name", sorted(DEVICE_PRESETS))
def test_every_preset_is_a_valid_config_and_cites_a_source(name):
    p = DEVICE_PRESETS[name]
    cfg = CrossbarConfig.from_dict(p.device_config(t_drift_s=3600.0))
    assert p.source and cfg.t_drift_s == 3600.0
    assert cfg.prog_noise_c0_rel == p.prog_noise_rel[0]


def test_aihwkit_preset_sets_aihwkit_laws():
    cfg = CrossbarConfig.from_dict(get_device_preset("aihwkit_pcm").device_config())
    assert (cfg.drift_nu_law, cfg.prog_noise_clip, cfg.read_noise_g_exponent) == ("aihwkit_pcm", "nonnegative", -0.65)


@pytest.mark.parametrize("settings, key", [
    ({"g_range_spread": 0.25}, "g_range_spread"),
    ({"prog_noise_c0_rel": 0.01, "prog_noise_c1_rel": -0.05}, "prog_noise_c0_rel"),  # sigma < 0 at g_on
    ({"prog_noise_c0_rel": 0.01, "prog_noise_c1_rel": -0.1, "prog_noise_c2_rel": 0.1}, "prog_noise_c0_rel"),
    ({"conductance_levels": 1}, "conductance_levels"),
    ({"conductance_levels": 2.5}, "conductance_levels"),
    ({"prog_noise_clip": "none"}, "prog_noise_clip"),
    ({"drift_nu_law": "log"}, "drift_nu_law"),
])
def test_bad_device_values_name_the_key(settings, key):
    with pytest.raises(ValueError, match=rf"^CrossbarConfig\.{key} = ") as exc:
        CrossbarConfig.from_dict(settings)
    assert "\n" not in str(exc.value)


def test_a_valid_quadratic_with_a_dip_is_accepted():
    CrossbarConfig(prog_noise_c0_rel=0.03, prog_noise_c1_rel=-0.1, prog_noise_c2_rel=0.1)  # min 0.005 at x = 0.5


def _config(**scenario):
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["scenarios"] = {"dev": scenario}
    return cfg


@pytest.mark.parametrize("scenario, expected", [
    ({"stuck_on_probability": 1.5}, "scenarios.dev (with `crossbar` defaults): CrossbarConfig.stuck_on_probability"),
    ({"g_range_spread": 0.5}, "CrossbarConfig.g_range_spread = 0.5"),
    ({"device_preset": "rram_wan"}, "scenarios.dev.device_preset: unknown preset 'rram_wan'"),
    ({"device_preset": "aihwkit_pcm", "prog_noise_c0_rel": -0.02},
     "scenarios.dev (with `crossbar` defaults and device_preset aihwkit_pcm): CrossbarConfig.prog_noise_c0_rel"),
])
def test_pipeline_validation_names_the_key(scenario, expected):
    with pytest.raises(ConfigError) as exc:
        validate_config(_config(**scenario), REPO)
    assert expected in str(exc.value) and "\n" not in str(exc.value)


def test_snakemake_dry_run_refuses_a_bad_fault_rate(tmp_path):
    cfg = _config(stuck_off_probability=-0.01)
    cfg["results_dir"] = str(tmp_path / "results")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(path),
                           "--replace-workflow-config"], cwd=REPO, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "CrossbarConfig.stuck_off_probability = -0.01" in out
    assert not (tmp_path / "results").exists()


def test_the_device_study_config_dry_runs():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--configfile",
                           "config/device.yaml"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- device statistics in the result
def test_device_stats_per_seed_match_the_layers_and_state_dead_layers():
    model = nn.Sequential(nn.Linear(40, 12))
    cfg = CrossbarConfig(analog_layers="all", stuck_on_probability=0.01, stuck_off_probability=0.02)
    mvm = IdealTileMVM(16, 8, G_OFF, G_ON, V_MAX)
    stats = device_stats_per_seed(model, cfg, mvm, [0, 1])
    a, b = stats["per_seed"]["0"]["0"], stats["per_seed"]["1"]["0"]
    assert a != b and a["cells"] == b["cells"] and stats["layers_without_working_cells"] == []
    assert a["working_cells"] == a["cells"] - a["stuck_on"] - a["stuck_off"]
    again = device_stats_per_seed(model, cfg, mvm, [0])["per_seed"]["0"]["0"]
    assert again == a  # the same seed: the same programming the evaluation made
    dead = device_stats_per_seed(model, cfg.replace(stuck_on_probability=0.5, stuck_off_probability=0.5), mvm, [0])
    assert dead["layers_without_working_cells"] == ["0"]
    assert dead["per_seed"]["0"]["0"]["tiles_all_stuck"] == dead["per_seed"]["0"]["0"]["tiles"]


def _result(stats=None):
    m = MethodResult(accuracy_mean=0.9, accuracy_std=0.0, accuracies=[0.9], accuracy_per_seed=[0.9],
                     trainable_params=0, wall_s=1.0, peak_mem_mb=1.0, memory_kind="x")
    return EvaluationResult(circuit="c", model="m", scenario="s", architecture="a", model_path="p",
                            software_accuracy=0.95, methods={"none": m}, **({"device_stats": stats} if stats else {}))


def test_device_stats_round_trip_and_older_files_load(tmp_path):
    stats = {"per_seed": {"0": {"fc": {"cells": 10, "stuck_on": 10, "stuck_off": 0, "tiles": 1, "tiles_all_stuck": 1,
                                       "verify_redraws": 0, "working_cells": 0}}},
             "layers_without_working_cells": ["fc"]}
    _result(stats).write(tmp_path / "r.json")
    assert EvaluationResult.read(tmp_path / "r.json").device_stats == stats
    old = _result().to_dict()
    del old["device_stats"]
    assert EvaluationResult.from_dict(old).device_stats == {}


# ----------------------------------------------------------------------------- statements
def _rows(scenario, accs, software=95.0, stuck=0.0, settings="", pc2=0.1, dead=""):
    return [{"circuit": "c", "model": "m", "scenario": scenario, "method": m, "accuracy_mean": a / 100,
             "software_accuracy": software / 100, "accuracy_per_seed": [a / 100] * 3, "read_noise_sigma": 0.0,
             "t_drift_s": 0.0, "device_scenario": bool(settings), "device_settings": settings,
             "stuck_probability": stuck, "stuck_fraction": stuck, "tiles_all_stuck": 0,
             "layers_without_working_cells": dead, "pc2_mean": pc2} for m, a in accs.items()]


def test_statements_give_loss_recovery_bn_limit_and_dead_layers():
    rows = (_rows("device_ideal", {"none": 94.0, "bn_adapt": 94.5, "bn_finetune": 95.0}, pc2=0.05)
            + _rows("stuck_0.01", {"none": 84.0, "bn_adapt": 92.0, "bn_finetune": 93.0}, stuck=0.01,
                    settings="stuck_on_probability=0.005", pc2=0.30)
            + _rows("stuck_0.05", {"none": 40.0, "bn_adapt": 70.0, "bn_finetune": 80.0}, stuck=0.05,
                    settings="stuck_on_probability=0.025", pc2=0.60, dead="features.0"))
    entries = device_statements(rows, ReportSettings())
    e1 = next(e for e in entries if e["scenario"] == "stuck_0.01")
    assert e1["device_cost_points"] == pytest.approx({"none": 10.0, "bn_adapt": 2.5, "bn_finetune": 2.0})
    assert e1["recovered_points"]["bn_adapt"] == pytest.approx(8.0)
    assert e1["gap_closed_share"]["bn_finetune"] == pytest.approx(9.0 / 11.0)
    assert "0.050 -> 0.300" in e1["text"] and "beyond a gain" in e1["text"] and "near chance" not in e1["text"]
    e5 = next(e for e in entries if e["scenario"] == "stuck_0.05")
    assert "NO WORKING DEVICE in layer(s) features.0" in e5["text"]
    pc2_line, line = bn_limit(entries, ReportSettings())
    assert "0.050 (no fault) -> 0.300 (1%) -> 0.600 (5%)" in pc2_line and "cannot recover" in pc2_line
    assert "BN-only stops helping at 5% stuck devices" in line and "bn_finetune" in line
    line = bn_limit([e1], ReportSettings())[-1]
    assert "stay within 5 points" in line


def test_none_near_chance_is_said():
    rows = (_rows("device_ideal", {"none": 9.7, "bn_adapt": 98.6}) + _rows(
        "stuck_0.01", {"none": 9.7, "bn_adapt": 97.2}, stuck=0.01, settings="stuck_on_probability=0.005"))
    (e,) = device_statements(rows, ReportSettings())
    assert "none is near chance" in e["text"] and e["device_cost_points"]["bn_adapt"] == pytest.approx(1.4)


def _seed_rows(scenario, seeds, software=95.0, stuck=0.0, settings=""):
    """Rows whose accuracy per seed (points) is given per method; the mean is theirs."""
    return [{"circuit": "c", "model": "m", "scenario": scenario, "method": m, "accuracy_mean": sum(v) / len(v) / 100,
             "software_accuracy": software / 100, "accuracy_per_seed": [a / 100 for a in v], "read_noise_sigma": 0.0,
             "t_drift_s": 0.0, "device_scenario": bool(settings), "device_settings": settings,
             "stuck_probability": stuck, "stuck_fraction": stuck, "tiles_all_stuck": 0,
             "layers_without_working_cells": "", "pc2_mean": 0.1} for m, v in seeds.items()]


def _t_interval(values, confidence=0.95, floor=0.25):
    """The interval by hand: mean +- t(0.975, n-1) s / sqrt(n), s the sample standard deviation, the
    half-width at least the floor."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    half = max(t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)), floor)
    return x.mean() - half, x.mean() + half


def _stuck(scenario, p, seeds):
    return _seed_rows(scenario, seeds, stuck=p, settings=f"stuck_on_probability={p / 2:g}")


def test_bn_limit_is_inconclusive_where_the_means_cross_but_the_seeds_straddle_the_threshold():
    # software 95: at 1% the best BN-only method (bn_finetune by mean, 89.4) is 5.6 points below software on
    # average, more than 5, but its seeds lie 3, 5.6 and 8.2 below: the interval holds 5. The means alone
    # said "stops helping at 1%"; at 5% the gap is clearly above 5, yet the sweep stays inconclusive at 1%.
    rows = (_seed_rows("device_ideal", {"none": [94, 94, 94], "bn_adapt": [94.5, 94.5, 94.5],
                                        "bn_finetune": [95, 95, 95]})
            + _stuck("stuck_0.001", 0.001, {"none": [90, 91, 92], "bn_adapt": [93, 94, 93], "bn_finetune": [94, 94.5, 95]})
            + _stuck("stuck_0.01", 0.01, {"none": [80, 81, 82], "bn_adapt": [89, 88, 90], "bn_finetune": [92, 89.4, 86.8]})
            + _stuck("stuck_0.05", 0.05, {"none": [40, 41, 42], "bn_adapt": [60, 61, 62], "bn_finetune": [80, 81, 79]}))
    entries = device_statements(rows, ReportSettings())
    e1 = next(e for e in entries if e["scenario"] == "stuck_0.01")
    assert e1["software"] - max(e1["accuracy"][m] for m in ("bn_adapt", "bn_finetune")) > 5.0  # the means cross
    gap = e1["bn_only_gap_points"]
    assert gap["method"] == "bn_finetune"
    low, high = _t_interval([3.0, 5.6, 8.2])
    assert (gap["interval"]["low"], gap["interval"]["high"]) == pytest.approx((low, high), abs=1e-9)
    assert gap["interval"]["estimate"] == pytest.approx(5.6) and gap["interval"]["n_seeds"] == 3
    (d,) = bn_limit_decisions(entries, ReportSettings())
    assert d["verdict"] == "inconclusive" and d["stuck_probability"] == 0.01
    assert [s["stuck_probability"] for s in d["steps"]] == [0.001, 0.01]
    line = bn_limit(entries, ReportSettings())[-1]
    assert "inconclusive at 1% stuck devices" in line and "stops helping" not in line
    assert f"5.6 [{low:.1f}, {high:.1f}]" in line and "contains the 5-point threshold" in line
    assert "95% t-interval over 3 seed(s)" in line and "below that rate within 5 points (0.1% " in line
    # with a threshold of 12.3 points ([-0.9, 12.1] at 1%, [12.5, 17.5] at 5%) the intervals at 0.1% and 1% lie wholly below it, the one at 5% wholly above
    d12 = bn_limit_decisions(entries, ReportSettings(fail_drop_points=12.3))[0]
    assert d12["verdict"] == "stops helping" and d12["stuck_probability"] == 0.05


def test_bn_limit_states_the_rate_where_every_seed_is_clearly_beyond_the_threshold():
    rows = (_seed_rows("device_ideal", {"none": [94, 94, 94], "bn_adapt": [95, 95, 95]})
            + _stuck("stuck_0.01", 0.01, {"none": [84, 85, 86], "bn_adapt": [92.8, 93, 93.2], "bn_finetune": [93, 92, 91]})
            + _stuck("stuck_0.05", 0.05, {"none": [40, 42, 44], "bn_adapt": [79, 80, 81], "bn_finetune": [70, 70, 70]}))
    entries = device_statements(rows, ReportSettings())
    (d,) = bn_limit_decisions(entries, ReportSettings())
    assert d["verdict"] == "stops helping" and d["stuck_probability"] == 0.05 and d["reason"] == ""
    # the best BN-only method by mean at each rate, then its seeds: bn_adapt at 1% (93.0 against 92.0)
    first, last = d["steps"]
    assert first["method"] == "bn_adapt" and last["method"] == "bn_adapt"
    low, high = _t_interval([2.2, 2.0, 1.8])  # spread 0.2: t s/sqrt(n) = 0.497, above the floor
    assert (first["interval"]["low"], first["interval"]["high"]) == pytest.approx((low, high), abs=1e-9)
    low, high = _t_interval([16.0, 15.0, 14.0])
    assert (last["interval"]["low"], last["interval"]["high"]) == pytest.approx((low, high), abs=1e-9)
    line = d["line"]
    assert "BN-only stops helping at 5% stuck devices" in line and "(bn_adapt, 80.0%)" in line
    assert f"15.0 [{low:.1f}, {high:.1f}] points below software (95.0%), wholly more than 5" in line
    # a smaller confidence narrows the interval by the ratio of the t quantiles
    from scipy.stats import t

    narrow = bn_limit_decisions(entries, ReportSettings(confidence=0.5))[0]["steps"][1]["interval"]
    assert narrow["high"] - narrow["estimate"] == pytest.approx(t.ppf(0.75, 2) / math.sqrt(3), abs=1e-9)
    # every rate wholly within: the verdict names each rate's interval
    within = bn_limit(entries[:1], ReportSettings())[-1]
    assert "stay within 5 points of software at every rate" in within and "1% 2.0 [" in within


def test_bn_limit_with_one_seed_is_inconclusive_and_says_why():
    rows = (_seed_rows("device_ideal", {"none": [94], "bn_adapt": [95]})
            + _stuck("stuck_0.05", 0.05, {"none": [40], "bn_adapt": [60]}))
    entries = device_statements(rows, ReportSettings())
    (d,) = bn_limit_decisions(entries, ReportSettings())
    assert d["verdict"] == "inconclusive" and d["stuck_probability"] == 0.05
    assert d["reason"].startswith("1 seed(s): no spread over seeds to measure")
    iv = d["steps"][0]["interval"]  # one seed: the floor alone
    assert (iv["low"], iv["estimate"], iv["high"]) == pytest.approx((34.75, 35.0, 35.25))
    assert "stops helping" not in d["line"] and "inconclusive at 5% stuck devices" in d["line"]
    assert "evaluation.seeds" in d["line"]
    assert "no spread over seeds, the floor alone" in entries[0]["text"]


def test_device_cost_and_recovery_are_paired_seed_by_seed_with_their_intervals():
    rows = (_seed_rows("device_ideal", {"none": [94, 95, 96], "bn_adapt": [95, 95, 95]})
            + _stuck("stuck_0.01", 0.01, {"none": [84, 86, 85], "bn_adapt": [93, 94, 95]}))
    (e,) = device_statements(rows, ReportSettings())
    cost = e["device_cost_interval_points"]["none"]
    low, high = _t_interval([10.0, 9.0, 11.0])  # paired: seed by seed, not the difference of the means' spreads
    assert (cost["estimate"], cost["low"], cost["high"]) == pytest.approx((10.0, low, high), abs=1e-9)
    ad = e["device_cost_interval_points"]["bn_adapt"]
    assert (ad["low"], ad["high"]) == pytest.approx(_t_interval([2.0, 1.0, 0.0]), abs=1e-9)
    rec = e["recovered_interval_points"]["bn_adapt"]
    assert (rec["estimate"], rec["low"], rec["high"]) == pytest.approx((9.0, *_t_interval([9.0, 8.0, 10.0])), abs=1e-9)
    assert f"none 10.0 [{low:.1f}, {high:.1f}] points (95.0% -> 85.0%)" in e["text"]
    assert "bn_adapt recovers +9.0 [" in e["text"] and "differences paired seed by seed, 95% t-interval over 3" in e["text"]
    assert e["device_cost_points"]["none"] == pytest.approx(10.0)  # the means stay as they were
    # different seed counts: no pairing, the mean alone and why
    rows = (_seed_rows("device_ideal", {"none": [94, 96], "bn_adapt": [95, 95]})
            + _stuck("stuck_0.01", 0.01, {"none": [84, 86, 85], "bn_adapt": [93, 94, 95]}))
    (e,) = device_statements(rows, ReportSettings())
    assert e["device_cost_interval_points"]["none"] is None
    assert "none 10.0 (mean only: 2 and 3 seeds cannot be paired) points" in e["text"]
    assert e["recovered_interval_points"]["bn_adapt"] is not None  # same result, same seeds


# ----------------------------------------------------------------------------- the bench's pieces
def test_ks_distance_matches_scipy_and_counts_point_masses():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=3000), rng.normal(0.1, 1.0, size=2000)
    assert ks_distance(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    a0, b0 = np.maximum(a, 0.0), np.maximum(b, 0.0)  # half of each at exactly 0
    assert ks_distance(a0, b0) == pytest.approx(ks_2samp(a0, b0).statistic, abs=1e-12)


def test_targets_follow_aihwkit_single_pair_converter():
    w = np.array([[1.0, -0.5], [0.0, 0.25]])
    gp, gm, s = targets_us(w, 25.0, 0.625)
    assert s == pytest.approx(24.375)
    np.testing.assert_allclose(gp, [[25.0, 0.625], [0.625, 0.625 + 0.25 * 24.375]])
    np.testing.assert_allclose(gm, [[0.625, 0.625 + 0.5 * 24.375], [0.625, 0.625]])


def test_report_device_cli_writes_statements_and_refuses_a_bad_file(tmp_path, capsys):
    from dnn.report_device import main

    ref, dev = _result().to_dict(), _result().to_dict()
    ref["scenario"] = "device_ideal"
    dev["scenario"], dev["xbar_config"] = "stuck_0.05", {"stuck_on_probability": 0.025, "stuck_off_probability": 0.025}
    dev["methods"]["none"]["accuracy_mean"] = 0.5
    paths = []
    for d in (ref, dev):
        paths.append(tmp_path / f"{d['scenario']}.json")
        paths[-1].write_text(json.dumps(d))
    assert main([*map(str, paths), "--md", str(tmp_path / "d.md"), "--json", str(tmp_path / "d.json")]) == 0
    out = json.loads((tmp_path / "d.json").read_text())
    (entry,) = out["entries"]
    assert entry["scenario"] == "stuck_0.05" and entry["device_cost_points"]["none"] == pytest.approx(40.0)
    assert "stuck_0.05" in (tmp_path / "d.md").read_text()
    assert out["settings"]["confidence"] == 0.95 and out["fail_drop_points"] == 5.0
    assert main([*map(str, paths), "--json", str(tmp_path / "d.json"), "--settings-json", '{"confidence": 0.9}',
                 "--fail-drop-points", "7"]) == 0
    out = json.loads((tmp_path / "d.json").read_text())
    assert out["settings"]["confidence"] == 0.9 and out["settings"]["fail_drop_points"] == 7.0
    assert main([*map(str, paths), "--fail-drop-points", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("report_device: report.fail_drop_points: expected") and "\n" not in err
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("report_device: ") and "bad.json" in err and "\n" not in err
