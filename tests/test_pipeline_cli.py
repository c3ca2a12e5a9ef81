"""``xbarchar config check``: a config checked as ``snakemake -n --configfile`` would, without Snakemake,
never evaluating anything in the file (Snakemake evaluates YTE templates when it reads them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli import checked_config, merged
from tests.conftest import REPO

SHIPPED = sorted(p for p in (REPO / "config").glob("*.yaml") if p.name != "schema.yaml")
YTE = "__use_yte__: true\nresults_dir: ?__import__('pathlib').Path('{marker}').write_text('x') and 'r'\n"


def run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "xbarchar", "config", "check", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_every_shipped_config_passes():
    proc = run(*SHIPPED[:1])
    assert proc.returncode == 0 and proc.stdout.startswith("config OK"), proc.stderr
    for path in SHIPPED:
        checked_config([str(path)], replace=False)


def test_a_yte_template_is_refused_and_never_evaluated(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.yaml"
    evil.write_text(YTE.format(marker=marker))
    proc = run(evil, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "evil.yaml" in lines[0] and "YTE template" in lines[0], proc.stderr
    assert not marker.exists()


def test_snakemake_refuses_a_yte_config_before_any_job(tmp_path):
    """Snakemake itself has evaluated the template when the workflow's first check refuses it: the run
    stops with one line and exit 2 (docs/security.md: check a stranger's config with `xbarchar config check`)."""
    evil = tmp_path / "evil.yaml"
    evil.write_text(YTE.format(marker=tmp_path / "marker"))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(evil)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert any(line.startswith("config error: ") and "YTE template" in line for line in proc.stderr.splitlines())


@pytest.mark.parametrize("text, key", [
    ("circuits: {paper1_64: {sampling: {n_vectors: true}}}\n", "circuits.paper1_64.sampling"),
    ("evaluation: {seeds: [0, 1.5]}\n", "evaluation"),
    ("scenarios: {x: {read_noise_sigma: .nan}}\n", "scenarios.x"),
])
def test_a_mistake_names_its_key(tmp_path, text, key):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    proc = run(bad, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and key in lines[0], proc.stderr


def test_files_merge_onto_the_default_as_snakemake_does():
    assert merged({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}, "e": 6}) == {"a": {"b": 5, "c": 2}, "d": 3, "e": 6}
    assert merged({"a": {"b": 1}}, {"a": 7}) == {"a": 7}
