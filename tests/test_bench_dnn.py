"""Smoke test of bench/bench_dnn.py at tiny sizes: a 16x16 circuit, a surrogate file written here, a tiny model.

No wall-clock time is asserted; the test checks that every mode runs, the figures are consistent with
each other, and the exact mode's nodal solves are done once per tile (the bound MVM is reused).
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from spice.circuit import spec_from_config
from surrogate.io import save_surrogate
from surrogate.models import build_model as build_surrogate
from surrogate.physics import TileSpec
from tests.conftest import REPO

CIRCUIT = {"preset": "paper1_64_w5", "rows": 16, "cols": 16}


@pytest.fixture(scope="module")
def bench():
    """bench/bench_dnn.py imported as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_dnn", REPO / "bench" / "bench_dnn.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_dnn"] = module  # dataclasses look their module up while the script executes
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_dnn", None)


@pytest.fixture
def surrogate_file(tmp_path):
    """An untrained transfer-design surrogate (its physics prior) for the 16x16 circuit, as a real file."""
    spec = spec_from_config("tiny16", CIRCUIT)
    model = build_surrogate("transfer", TileSpec.from_circuit(spec), cell_hidden=4)
    path = tmp_path / "tiny16.h5"
    save_surrogate(path, model, spec, train_params={}, history={}, data_sha256="", data_path="", split={})
    return path


def test_bench_runs_every_mode_and_reports_consistent_figures(bench, surrogate_file, tmp_path):
    before = torch.get_num_threads()
    out = tmp_path / "bench.json"
    lines: list[str] = []
    args = bench.parse_args([
        "--quick", "--no-progress", "--json", str(out), "--surrogate", str(surrogate_file),
        "--circuit-name", "tiny16", "--circuit", json.dumps(CIRCUIT), "--threads", "1", "--width", "0.125",
        "--n-train", "64", "--epochs", "1", "--n-test", "24", "--batch-size", "8", "--calibration-samples", "16",
        "--read-noise-sigma", "0.1", "--crossbar-json", '{"adc_bits": 6}',
    ])
    try:
        result = bench.run(args, say=lines.append)
    finally:
        torch.set_num_threads(before)

    assert json.loads(out.read_text())["targets"] == json.loads(json.dumps(result["targets"]))
    tp = result["throughput"]
    kinds = sorted(r["kind"] for r in tp.values())
    assert kinds == ["digital", "exact", "ideal", "noisy", "noisy", "surrogate"]
    for r in tp.values():
        assert r["images_per_s"] == pytest.approx(8 / r["batch_s_median"])
        assert len(r["batch_s_samples"]) == 2 and r["first_forward_s"] > 0
    ideal = next(r for r in tp.values() if r["kind"] == "ideal")
    assert ideal["time_x_ideal"] == pytest.approx(1.0)

    assert result["crossbar_config"]["adc_bits"] == 6 and result["crossbar_config"]["weight_bits"] == 8
    n_tiles = sum(result["tiles"].values())
    assert n_tiles == 4 + 12 + 20  # conv 1->4 (9 rows), 4->8 (36 rows), 8->8 (72 rows): x2 slices x2 polarities
    assert result["exact_bind"]["nodal_solves"] == n_tiles  # bound once, reused by timing, BN adapt and eval

    acc = result["accuracy"]
    assert set(acc) == {label for label, r in tp.items() if r["kind"] != "noisy"}
    # accuracies are fractions of the 24 test images: multiples of 1/24
    for r in acc.values():
        for a in r.values():
            assert 0.0 <= a <= 1.0 and a * 24 == pytest.approx(round(a * 24), abs=1e-9)
    (label, gap), = result["accuracy_gap_points"].items()
    exact = next(lbl for lbl, r in tp.items() if r["kind"] == "exact")
    assert gap["bn_adapt"] == pytest.approx(100 * abs(acc[label]["bn_adapt"] - acc[exact]["bn_adapt"]))
    t = result["targets"][label]
    assert t["time_x_ideal"] == tp[label]["time_x_ideal"] and t["max_gap_points"] == max(gap.values())
    assert any(label in line for line in lines) and any("| mode (batch 8)" in line for line in lines)


def test_targets_against_hand_made_figures(bench):
    """The issue's targets: at most 3x the ideal-quantized time, at most 1 point of accuracy gap."""
    tp = {"fast": {"time_x_ideal": 2.9}, "edge": {"time_x_ideal": 3.0}, "slow": {"time_x_ideal": 3.1}}
    gap = {"fast": {"none": 0.2, "bn_adapt": 1.0}, "edge": {"none": 0.5, "bn_adapt": 1.2},
           "slow": {"none": 0.0, "bn_adapt": 0.0}}
    tg = bench.targets(tp, gap)
    assert {k: (v["time_target_met"], v["accuracy_target_met"], v["max_gap_points"]) for k, v in tg.items()} == {
        "fast": (True, True, 1.0), "edge": (True, False, 1.2), "slow": (False, True, 0.0)}
    untimed = bench.targets({}, {"fast": {"none": 0.3}})
    assert untimed == {"fast": {"time_x_ideal": None, "time_target_met": None, "max_gap_points": 0.3,
                                "accuracy_target_met": True}}
    lines = bench.target_lines(tg)
    assert "- edge: 3.00x the ideal-quantized time (target <= 3x: met); accuracy gap to exact <= 1.2 points " \
           "(target <= 1: NOT met)" in lines
    assert "- fast: not timed;" in bench.target_lines(untimed)[0]


@pytest.mark.slow  # ~35 s on 2 shared cores (the Newton mode solves every 8x8 tile-vector)
@pytest.mark.parametrize("reference", ["exact", pytest.param("spice", marks=pytest.mark.spice)])
def test_bench_reports_the_gap_to_a_nonlinear_reference(bench, tmp_path, reference):
    """A sinh circuit: exact mode is the Newton solve (or ngspice in the loop), and the surrogate's gap to it
    is reported."""
    circuit = {**CIRCUIT, "rows": 8, "cols": 8, "netlist": str(REPO / "data" / "circuits" / "memristor_sinh.cir")}
    spec = spec_from_config("sinh8", circuit)
    path = tmp_path / "sinh8.h5"
    save_surrogate(path, build_surrogate("transfer", TileSpec.from_circuit(spec), cell_hidden=4), spec,
                   train_params={}, history={}, data_sha256="", data_path="", split={})
    before = torch.get_num_threads()
    lines: list[str] = []
    args = bench.parse_args([
        "--quick", "--no-progress", "--no-timing", "--surrogate", str(path), "--circuit-name", "sinh8",
        "--circuit", json.dumps(circuit), "--threads", "1", "--width", "0.125", "--n-train", "32", "--epochs", "1",
        "--n-test", "8", "--batch-size", "8", "--calibration-samples", "8", "--reference", reference,
    ])
    try:
        result = bench.run(args, say=lines.append)
    finally:
        torch.set_num_threads(before)
    exact_label = "exact (Newton (spice.exact))" if reference == "exact" else "exact (ngspice in the loop)"
    assert exact_label in result["accuracy"]
    (label, gap), = result["accuracy_gap_points"].items()
    acc = result["accuracy"]
    assert gap["none"] == pytest.approx(100 * abs(acc[label]["none"] - acc[exact_label]["none"]))
    assert any(exact_label in line for line in lines)


def test_targets_without_an_exact_mode(bench):
    """--no-exact (e.g. non-linear cells): the time target is still judged, the accuracy gap is not measured."""
    tg = bench.targets({"s": {"time_x_ideal": 2.5, "kind": "surrogate"}}, {}, ["s"])
    assert tg == {"s": {"time_x_ideal": 2.5, "time_target_met": True, "max_gap_points": None,
                        "accuracy_target_met": None}}
    assert bench.target_lines(tg) == ["- s: 2.50x the ideal-quantized time (target <= 3x: met); no exact mode, "
                                      "accuracy gap not measured"]


def test_bench_runs_a_third_order_surrogate_without_exact_mode(bench, tmp_path):
    spec = spec_from_config("tiny16", CIRCUIT)
    path = tmp_path / "cubic16.h5"
    save_surrogate(path, build_surrogate("transfer", TileSpec.from_circuit(spec), cell_hidden=4, v_order=3), spec,
                   train_params={}, history={}, data_sha256="", data_path="", split={})
    before = torch.get_num_threads()
    try:
        result = bench.run(bench.parse_args([
            "--quick", "--no-progress", "--no-exact", "--surrogate", str(path), "--circuit-name", "tiny16",
            "--circuit", json.dumps(CIRCUIT), "--threads", "1", "--width", "0.125", "--n-train", "64", "--epochs",
            "1", "--n-test", "16", "--batch-size", "8", "--calibration-samples", "8"]), say=lambda _line: None)
    finally:
        torch.set_num_threads(before)
    kinds = sorted(r["kind"] for r in result["throughput"].values())
    assert kinds == ["digital", "ideal", "surrogate"] and result["accuracy_gap_points"] == {}
    (label,) = result["targets"]
    assert result["targets"][label]["time_x_ideal"] == result["throughput"][label]["time_x_ideal"] > 0
    assert result["exact_bind"]["nodal_solves"] == 0
