"""The report's energy columns, the accuracy-energy statement and figure (dnn/report_energy.py)."""

from __future__ import annotations

import csv
import json

import pytest

from dnn.report import ReportSettings, load_results, markdown_table, write_csv
from dnn.report_energy import least_energy_within, main, statements, write_energy_report
from dnn.results import EvaluationResult


def result(path, rows, accuracy, energy_j, latency_s, method="bn_adapt", scenario="parasitics", software=0.95):
    energy = {} if energy_j is None else {"energy_per_inference_j": energy_j, "latency_per_inference_s": latency_s,
                                          "energy_breakdown_j": {"array": energy_j / 10}, "power_model": "exact nodal"}
    data = {"kind": "xbarchar.evaluation", "format_version": 1, "circuit": f"paper1_{rows}", "model": "digits_bncnn",
            "scenario": scenario, "architecture": "bn_cnn", "model_path": "m.pt", "software_accuracy": software,
            "mvm": {"kind": "exact", "rows": rows, "cols": rows},
            "circuit_spec": {"rows": rows, "cols": rows, "r_wire_row_ohm": 5.0, "g_on_s": 5e-5},
            "methods": {method: {"accuracy_mean": accuracy, "accuracy_std": 0.01, "accuracies": [accuracy],
                                 "energy": energy}}}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def sweep(tmp_path):
    # 32: cheap in the array but converts most partial sums; 128: loses accuracy
    return [result(tmp_path / "a.json", 32, 0.945, 3e-6, 2e-6), result(tmp_path / "b.json", 64, 0.942, 2e-6, 1e-6),
            result(tmp_path / "c.json", 128, 0.90, 1e-6, 0.5e-6)]


def test_the_cheapest_size_within_the_loss_is_named(sweep):
    rows = load_results(sweep)
    (line,) = statements(rows, loss_points=1.0)
    assert "the 64x64 array costs least energy within 1 points of software (95.0%): 2 uJ per inference" in line
    assert "128x128: 90.0%, 1 uJ, 0.5 us" in line
    assert least_energy_within(rows, 10.0)["rows"] == 128  # a looser loss admits the cheapest size
    assert least_energy_within(rows, 0.1) is None
    (none,) = statements(rows, loss_points=0.1)
    assert "no array size is within 0.1 points of software" in none
    md = markdown_table(rows, ReportSettings(energy_loss_points=1.0))
    assert "report.energy_loss_points" in md and "the 64x64 array costs least energy" in md


def test_results_csv_gains_energy_and_latency_columns(sweep, tmp_path):
    rows = load_results(sweep)
    write_csv(rows, tmp_path / "r.csv")
    table = list(csv.DictReader(open(tmp_path / "r.csv")))
    by_circuit = {r["circuit"]: (float(r["energy_per_inference_j"]), float(r["latency_per_inference_s"])) for r in table}
    assert by_circuit == {"paper1_32": (3e-6, 2e-6), "paper1_64": (2e-6, 1e-6), "paper1_128": (1e-6, 0.5e-6)}


def test_results_without_energy_still_load_and_state_nothing(tmp_path):
    old = result(tmp_path / "old.json", 64, 0.9, None, None)
    data = json.loads(old.read_text())
    del data["methods"]["bn_adapt"]["energy"]  # a file written before the energy pass existed
    old.write_text(json.dumps(data))
    assert EvaluationResult.read(old).methods["bn_adapt"].energy == {}
    rows = load_results([old])
    assert rows[0]["energy_per_inference_j"] == "" and statements(rows, 1.0) == []
    assert "report.energy_loss_points" not in markdown_table(rows)


def test_the_figure_and_statement_are_written(sweep, tmp_path):
    lines = write_energy_report(sweep, tmp_path / "e.png", tmp_path / "e.md", 1.0)
    assert (tmp_path / "e.png").stat().st_size > 10_000 and lines
    assert "64x64 array costs least energy" in (tmp_path / "e.md").read_text()
    assert main([*map(str, sweep), "--plot", str(tmp_path / "f.png"), "--loss-points", "5", "--no-progress"]) == 0
    assert main([str(sweep[0]), "--md", str(sweep[0])]) == 2  # an output over an input: bad input, exit 2
    with pytest.raises(ValueError, match="report.energy_loss_points"):
        ReportSettings.from_dict({"energy_loss_points": 0})
