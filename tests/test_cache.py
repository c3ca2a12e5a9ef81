"""Between-workflow output cache: a second project with the same circuit reuses the first one's
surrogate (Snakemake's `--cache`, SNAKEMAKE_OUTPUT_CACHE) and runs no ngspice at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(cache: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--cores", "2", "--cache", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=1200, env={**os.environ, "SNAKEMAKE_OUTPUT_CACHE": str(cache)})


def project(tmp_path: Path, name: str, **changes) -> tuple[Path, Path]:
    """config/test.yaml as another project: own results folder, `changes` applied (dotted keys)."""
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / name / "results")
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, tmp_path / name / "results"


def rules_run(proc: subprocess.CompletedProcess) -> set[str]:
    """Rules of the job-count table Snakemake prints before running (or dry-running)."""
    lines = (proc.stdout + proc.stderr).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("job") and "count" in line)
    rules = set()
    for line in lines[start + 2:]:  # after the header and its dashed underline
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        rules.add(parts[0])
    return rules - {"total"}


def test_second_project_reuses_the_surrogate_without_ngspice(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    first_cfg, first = project(tmp_path, "first")
    proc = run_snakemake(cache, "--configfile", str(first_cfg), "--replace-workflow-config")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert {"spice_shard", "spice_merge", "surrogate_train"} <= rules_run(proc)
    surrogate = first / "surrogate" / "tiny.h5"
    assert surrogate.is_symlink() and Path(os.path.realpath(surrogate)).parent == cache
    index = sorted(p.name.split("-")[0] for p in (cache / "xbarchar").iterdir())
    assert index == ["spice", "surrogate"]

    # Another project: the same circuit under another name, another model and scenario.
    second_cfg, second = project(tmp_path, "second", **{"models.digits_cnn.seed": 30, "models.digits_cnn.epochs": 1})
    cfg = yaml.safe_load(second_cfg.read_text())
    cfg["circuits"] = {"same_tiny": cfg["circuits"]["tiny"]}
    cfg["scenarios"] = {"noise_0.2": {"read_noise_sigma": 0.2}}
    second_cfg.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(cache, "--configfile", str(second_cfg), "--replace-workflow-config")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    ran = rules_run(proc)
    assert "spice_shard" not in ran and "spice_dnn_samples" not in ran and "surrogate_train" not in ran, ran
    assert {"train_model", "evaluate", "report"} <= ran
    assert not (second / "spice").exists() and not (second / "logs" / "spice").exists(), "no ngspice run"
    evaluation = json.loads((second / "eval" / "same_tiny" / "digits_cnn" / "noise_0.2.json").read_text())
    assert evaluation["mvm"]["kind"] == "surrogate"
    assert os.path.realpath(evaluation["mvm"]["path"]) == os.path.realpath(surrogate), "the first project's surrogate"

    # A change that reaches the SPICE data (another sampling seed) is a new key: ngspice runs again.
    third_cfg, _ = project(tmp_path, "third", **{"circuits.tiny.sampling.seed": 99})
    dry = run_snakemake(cache, "-n", "--configfile", str(third_cfg), "--replace-workflow-config")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert {"spice_shard", "surrogate_train"} <= rules_run(dry)
    # Changing only the surrogate settings reuses the cached SPICE dataset: training, no ngspice.
    fourth_cfg, _ = project(tmp_path, "fourth", **{"circuits.tiny.surrogate.epochs": 5})
    dry = run_snakemake(cache, "-n", "--configfile", str(fourth_cfg), "--replace-workflow-config")
    assert dry.returncode == 0, dry.stderr[-3000:]
    ran = rules_run(dry)
    assert "surrogate_train" in ran and "spice_shard" not in ran and "spice_merge" not in ran, ran
