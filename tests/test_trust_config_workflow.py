"""`snakemake -n` on hostile configs: one line naming the file or key, exit status 2, no job run."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO
from tests.test_trust_config import bomb_text

TEST_CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
OUTPUT_CHARS = 2000
"""All a refused dry run prints (Snakemake's profile notice and our one line)."""

pytestmark = pytest.mark.e2e


def dry_run(config_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(config_path), *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-OUTPUT_CHARS:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("config error: ")]
    assert len(lines) == 1, output[-OUTPUT_CHARS:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert len(output) < OUTPUT_CHARS, output[-OUTPUT_CHARS:]
    assert "Traceback" not in output


@pytest.mark.parametrize("text, replace", [
    (bomb_text(12), True),  # lists: Snakemake keeps the aliases shared; 10^12 nodes once expanded
    (bomb_text(12), False),  # merged into the default config
    (bomb_text(5, mapping=True), True),  # mappings: Snakemake's own merge copies them (10^5 here)
], ids=["list-bomb", "list-bomb-merged", "mapping-bomb"])
def test_a_nested_alias_bomb_is_refused_naming_the_file(tmp_path, text, replace):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    result = dry_run(path, *(["--replace-workflow-config"] if replace else []))
    assert_refused(result, f"config file {path}", "expands to more than 100000 nodes")


@pytest.mark.parametrize("overrides, needles", [
    ({"rows": True}, ["circuits.tiny.rows: True is not of type 'integer'"]),
    ({"rows": 1024, "cols": 1024}, ["circuits.tiny.rows: a 1024x1024 array", "raise limits.memory_gb"]),
    ({"sampling": {"n_vectors": 64, "v_zero_fraction": "0.3"}},
     ["circuits.tiny.sampling.v_zero_fraction: '0.3' is not of type 'number'"]),
], ids=["rows-true", "rows-memory", "fraction-string"])
def test_a_wrong_value_is_refused_naming_the_key(tmp_path, overrides, needles):
    config = copy.deepcopy(TEST_CONFIG)
    config["circuits"]["tiny"].update(overrides)
    config_path = tmp_path / "bad.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert_refused(dry_run(config_path, "--replace-workflow-config"), *needles)
