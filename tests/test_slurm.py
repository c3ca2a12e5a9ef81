"""The workflow on a real SLURM cluster: `snakemake --profile profiles/slurm` on the local one-node
cluster of scripts/local_slurm.sh (munge, MariaDB + slurmdbd accounting, slurmctld, slurmd).

Each config runs once locally and once through SLURM; every output must exist, the SPICE datasets
must be equal bit for bit (all datasets and attributes but the creation time) and the reports equal
(all but the wall-time and memory figures). Without root or without the Debian packages the module
is skipped with one line saying why.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.conftest import REPO

pytestmark = [pytest.mark.slurm, pytest.mark.e2e, pytest.mark.slow]

SCRIPT = REPO / "scripts" / "local_slurm.sh"
PARTITION = ACCOUNT = "xbarchar"  # what scripts/local_slurm.sh sets up
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
VOLATILE_ATTRS = {"created", "content_sha256"}  # the record covers "created"
VOLATILE_CSV_COLUMNS = {"wall_s", "peak_mem_mb"}
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _cluster_answers() -> bool:
    return subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode == 0


def _why_no_cluster() -> str | None:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
        import snakemake_executor_plugin_slurm_bounded  # noqa: F401
    except ImportError as e:
        return (f"{e.name} is not installed (make install, or pip install -e .[dev] "
                "./plugins/slurm-bounded)")
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if missing:
        return (f"no local SLURM cluster: {', '.join(missing)} not installed "
                "(as root: scripts/local_slurm.sh start installs and starts it)")
    if not _cluster_answers() and os.geteuid() != 0:
        return "no local SLURM cluster running and starting one needs root (scripts/local_slurm.sh start)"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    """The local cluster: used when it runs, else started here and stopped afterwards."""
    reason = _why_no_cluster()
    if reason:
        pytest.skip(reason)
    started_here = not _cluster_answers()
    if started_here:
        subprocess.run(["bash", str(SCRIPT), "start"], check=True, capture_output=True, timeout=900)
    yield
    if started_here:
        subprocess.run(["bash", str(SCRIPT), "stop"], check=True, capture_output=True, timeout=300)


def slurm_profile(tmp_path: Path, **resources: str) -> Path:
    """profiles/slurm with the local cluster's partition and account filled in (or the given ones)."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"].update({"slurm_partition": PARTITION, "slurm_account": ACCOUNT, **resources})
    folder = tmp_path / "profile"
    folder.mkdir(exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def run_snakemake(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=REPO, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, **(env or {})})


def tiny_config(tmp_path: Path, results: Path) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["results_dir"] = str(results)
    return cfg


def two_circuit_config(tmp_path: Path, results: Path) -> dict:
    """Not the default in any key that matters: 2 circuits (linear and sinh cells), 2 models, 1 scenario."""
    circuit = {"rows": 8, "cols": 8, "r_driver_ohm": 100, "r_wire_row_ohm": 5, "r_wire_col_ohm": 5,
               "r_sense_ohm": 100, "surrogate": {"design": "transfer", "epochs": 10, "seed": 4}}
    return {
        "results_dir": str(results),
        "circuits": {
            "lin8": {**circuit, "netlist": "data/circuits/resistive.cir",
                     "sampling": {"n_conductance": 4, "n_vectors": 32, "n_shards": 2, "seed": 5}},
            "sinh8": {**circuit, "netlist": "data/circuits/memristor_sinh.cir",
                      "sampling": {"n_conductance": 4, "n_vectors": 32, "n_shards": 2, "seed": 6}},
        },
        "models": {
            "cnn_a": {"dataset": "digits", "model": "bn_cnn", "epochs": 1, "batch_size": 64, "lr": 0.002,
                      "seed": 7, "width": 0.5},
            "cnn_b": {"dataset": "digits", "model": "bn_cnn", "epochs": 1, "batch_size": 64, "lr": 0.002,
                      "seed": 8, "width": 0.5},
        },
        "scenarios": {"noise_0.05": {"read_noise_sigma": 0.05}},
        "evaluation": {"methods": ["none", "bn_adapt"], "seeds": [0], "calibration_samples": 128},
    }


def assert_same_spice_dataset(a: Path, b: Path) -> None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert {k: v for k, v in fa.attrs.items() if k not in VOLATILE_ATTRS}.keys() == \
            {k: v for k, v in fb.attrs.items() if k not in VOLATILE_ATTRS}.keys()
        for key, value in fa.attrs.items():
            if key not in VOLATILE_ATTRS:
                assert np.array_equal(np.asarray(value), np.asarray(fb.attrs[key])), f"{a.name}: attribute {key}"
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        assert sorted(names_a) == sorted(names_b), a.name
        for name in names_a:
            da, db = fa[name], fb[name]
            assert dict(da.attrs) .keys() == dict(db.attrs).keys(), f"{a.name}:{name} attributes"
            if isinstance(da, h5py.Dataset):
                assert da.dtype == db.dtype and da.shape == db.shape, f"{a.name}:{name}"
                assert da[()].tobytes() == db[()].tobytes(), f"{a.name}:{name} differs"


def report_rows(results: Path) -> list[dict]:
    with open(results / "report" / "results.csv") as fh:
        return [{k: v for k, v in row.items() if k not in VOLATILE_CSV_COLUMNS} for row in csv.DictReader(fh)]


def accuracy_tables(results: Path) -> list[str]:
    """results.md without the cost table (wall time and memory differ from run to run)."""
    lines, skipping = [], False
    for line in (results / "report" / "results.md").read_text().splitlines():
        if line.startswith("Cost per method"):
            skipping = True
        elif skipping and not line.startswith("|") and line.strip():
            skipping = False
        if not skipping:
            lines.append(line)
    return lines


def outputs(results: Path) -> set[str]:
    return {str(p.relative_to(results)) for p in results.rglob("*")
            if p.is_file() and p.parts[len(results.parts)] not in ("logs", "benchmarks")}


@pytest.mark.parametrize("make_config", [tiny_config, two_circuit_config], ids=["test.yaml", "two_circuits"])
def test_config_runs_on_slurm_as_it_runs_locally(slurm_cluster, tmp_path, make_config):
    # Both runs write the same results folder (files record their input paths), moved away after each.
    results = tmp_path / "results"
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(make_config(tmp_path, results)))
    for where in ("local", "slurm"):
        engine = (["--profile", str(slurm_profile(tmp_path))] if where == "slurm" else ["--cores", "2"])
        proc = run_snakemake(*engine, "--configfile", str(cfg_path), "--replace-workflow-config")
        assert proc.returncode == 0, f"{where} run failed:\n{(proc.stdout + proc.stderr)[-6000:]}"
        if where == "slurm":
            assert proc.stdout.count("has been submitted with SLURM jobid") + \
                proc.stderr.count("has been submitted with SLURM jobid") >= 10
        results.rename(tmp_path / where)
    local, slurm = tmp_path / "local", tmp_path / "slurm"
    assert outputs(slurm) == outputs(local)
    spice_files = sorted(p.relative_to(local) for p in (local / "spice").glob("*.h5"))
    cfg = make_config(tmp_path, local)
    assert len([f for f in spice_files if not f.name.endswith(".dnn.h5")]) == len(cfg["circuits"])
    for rel in spice_files:
        assert_same_spice_dataset(local / rel, slurm / rel)
    assert report_rows(slurm) == report_rows(local)
    assert accuracy_tables(slurm) == accuracy_tables(local)
    rows = report_rows(local)
    assert {r["circuit"] for r in rows} == set(cfg["circuits"])
    assert {r["model"] for r in rows} == set(cfg["models"])
    # Every job ran through SLURM and was accounted for.
    assert list((slurm / "benchmarks").rglob("*.tsv")), "every rule writes a benchmark file"


def write_config(tmp_path: Path) -> Path:
    cfg_path = tmp_path / "test.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(tmp_path, tmp_path / "results")))
    return cfg_path


@pytest.mark.parametrize("resource, value, expected", [
    ("slurm_partition", "nope", "partition 'nope' (resource slurm_partition, set in the profile) does not exist"),
    ("slurm_account", "nobody", "account 'nobody' (resource slurm_account, set in the profile) is not an account"),
])
def test_unknown_partition_or_account_is_one_clear_error(slurm_cluster, tmp_path, resource, value, expected):
    proc = run_snakemake("--profile", str(slurm_profile(tmp_path, **{resource: value})),
                         "--configfile", str(write_config(tmp_path)), "--replace-workflow-config")
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert "has been submitted" not in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists(), "nothing may be written"


def test_cluster_down_is_one_clear_error(slurm_cluster, tmp_path):
    """A controller that does not answer (SLURM_CONF names a port nothing listens on)."""
    conf = Path("/etc/slurm/slurm.conf").read_text()
    down = tmp_path / "slurm.conf"
    down.write_text(conf + "\nSlurmctldPort=6999\nMessageTimeout=2\n")
    proc = run_snakemake("--profile", str(slurm_profile(tmp_path)), "--configfile", str(write_config(tmp_path)),
                         "--replace-workflow-config", env={"SLURM_CONF": str(down)})
    assert proc.returncode != 0
    assert "slurmctld does not answer" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists(), "nothing may be written"
