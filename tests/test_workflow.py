"""The real Snakemake workflow: dry run of the default config, a tiny end-to-end run, bad configs."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_default_config_dry_run_lists_every_stage(tmp_path):
    proc = run_snakemake("-n", "--quiet", "rules", "--config", f"results_dir={tmp_path / 'results'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for rule in ("spice_shard", "spice_merge", "surrogate_train", "train_model", "evaluate", "report",
                 "spice_tile_bank", "spice_dnn_samples", "surrogate_fidelity_dnn"):
        assert rule in out, f"rule {rule} missing from the default DAG"


def job_counts(out: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    table = out.split("Job stats:")[1].split("\n\n")[0]
    return {parts[0]: int(parts[1]) for parts in (line.split() for line in table.splitlines())
            if len(parts) == 2 and parts[1].isdigit()}


def test_circuits_experiment_trains_each_surrogate_once_for_both_models(tmp_path):
    proc = run_snakemake("-n", "--configfile", "config/circuits.yaml", "--replace-workflow-config",
                         "--config", f"results_dir={tmp_path / 'results'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["surrogate_train"] == 4 and counts["spice_merge"] == 4  # one per circuit
    assert counts["train_model"] == 2 and counts["evaluate"] == 8  # 4 circuits x 2 models, one scenario


def write_config(tmp_path: Path, **changes) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / "results")
    for dotted, value in changes.items():
        node = cfg
        keys = dotted.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("circuits.tiny.rows", 0, "rows"),
        ("circuits.tiny.sampling.n_vectors", -3, "n_vectors"),
        ("evaluation.methods", ["none", "magic"], "magic"),
        ("circuits.tiny.colour", "red", "colour"),
        ("scenarios.parasitics.circuits", ["nope"], "scenarios.parasitics.circuits: unknown circuit(s) ['nope']"),
        ("scenarios.parasitics.read_noise_sigma", 2.0, "read_noise_sigma"),
        ("scenarios.parasitics.device_preset", "dram", "scenarios.parasitics.device_preset: unknown preset 'dram'"),
        ("report.fail_drop_points", -1, "fail_drop_points"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(tmp_path, key, value, expected):
    cfg = write_config(tmp_path, **{key: value})
    proc = run_snakemake("-n", "--configfile", str(cfg), "--replace-workflow-config")
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists(), "a rejected config must not write anything"


def test_scenarios_run_on_their_circuits_with_their_device_preset(tmp_path):
    cfg = yaml.safe_load(write_config(tmp_path).read_text())
    cfg["circuits"]["tiny32"] = {**cfg["circuits"]["tiny"], "rows": 32, "cols": 32}
    cfg["scenarios"]["noise_0.1"]["circuits"] = ["tiny"]
    cfg["scenarios"]["drift"] = {"device_preset": "pcm_40", "t_drift_s": 1.0e6, "circuits": ["tiny32"]}
    path = tmp_path / "two_circuits.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake("-n", "--printshellcmds", "--configfile", str(path), "--replace-workflow-config")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    evals = {line.split("/eval/")[1].split(".json")[0] for line in out.splitlines()
             if "--out" in line and "/eval/" in line}
    assert evals == {"tiny/digits_cnn/parasitics", "tiny32/digits_cnn/parasitics", "tiny/digits_cnn/noise_0.1",
                     "tiny32/digits_cnn/drift"}
    drift_cmd = next(line for line in out.splitlines() if "/eval/tiny32/digits_cnn/drift.json" in line
                     and "--out" in line)
    assert "--device-preset pcm_40" in drift_cmd and '"t_drift_s": 1000000.0' in drift_cmd
    assert "device_preset" not in drift_cmd.split("--crossbar-json")[1].split("--evaluation-json")[0]


@pytest.mark.e2e
@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path):
    cfg = write_config(tmp_path)
    proc = run_snakemake("--cores", "2", "--configfile", str(cfg), "--replace-workflow-config")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    results = tmp_path / "results"
    assert (results / "spice" / "tiny.h5").is_file()
    assert (results / "surrogate" / "tiny.h5").is_file()
    assert (results / "surrogate" / "tiny.fidelity.json").is_file()
    dnn_fidelity = json.loads((results / "surrogate" / "tiny.fidelity_dnn.json").read_text())
    assert dnn_fidelity["n_test_samples"] == 4 * 256  # every DNN-distribution sample, none held back
    assert dnn_fidelity["models"]["surrogate"]["rel_rms_fs"] < dnn_fidelity["models"]["ideal"]["rel_rms_fs"]
    assert (results / "models" / "digits_cnn.pt").is_file()
    rows = list(csv.DictReader(open(results / "report" / "results.csv")))
    methods = {r["method"] for r in rows}
    assert methods == {"none", "bn_adapt", "bn_finetune"}
    assert {r["scenario"] for r in rows} == {"parasitics", "noise_0.1"}
    evaluations = {(r["scenario"], r["method"]): r for r in rows}
    for (scenario, method), r in evaluations.items():
        result = json.loads((results / "eval" / "tiny" / "digits_cnn" / f"{scenario}.json").read_text())
        assert float(r["accuracy_mean"]) == pytest.approx(result["methods"][method]["accuracy_mean"])
        assert float(r["software_accuracy"]) == pytest.approx(result["software_accuracy"])
    for plot in ("accuracy", "accuracy_vs_sigma", "accuracy_vs_drift", "accuracy_vs_size"):
        assert (results / "report" / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (results / "report" / "results.md").read_text()
    assert "Shape of Paper 1's result" in md and "| tiny | digits_cnn | parasitics |" in md
    # the surrogate's fidelity is tabled (both test sets) and judged
    assert "| tiny | held-out | transfer |" in md and "| tiny | DNN-like | transfer |" in md
    assert list((results / "benchmarks").rglob("*.tsv")), "every rule writes a benchmark file"

    # Reuse: a second run on the same config does nothing; an external surrogate file skips SPICE.
    again = run_snakemake("-n", "--configfile", str(cfg), "--replace-workflow-config")
    assert "Nothing to be done" in again.stdout + again.stderr
    external = tmp_path / "external_surrogate.h5"
    shutil.copy(results / "surrogate" / "tiny.h5", external)
    cfg2 = write_config(tmp_path, **{"circuits.tiny.surrogate_file": str(external),
                                     "results_dir": str(tmp_path / "results2")})
    dry = run_snakemake("-n", "--configfile", str(cfg2), "--replace-workflow-config")
    assert dry.returncode == 0, dry.stderr[-3000:]
    out = dry.stdout + dry.stderr
    assert "spice_shard" not in out and "surrogate_train" not in out
    assert "evaluate" in out
