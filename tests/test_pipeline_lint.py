"""`snakemake --lint` finds nothing in the workflow beyond a short, justified allow-list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

NO_CONDA = ("one software environment, the one that runs Snakemake: every job needs the project itself, which "
            "environment.yml installs from the checkout by a relative pip path that a per-rule environment (built "
            "from a copy under .snakemake/conda/) cannot resolve; a named environment makes Snakemake call conda "
            "on every run (docs/scale-out.md)")
ALLOWED: dict[tuple[str, str], str] = {
    (rule, "Specify a conda environment or container for each rule."): NO_CONDA
    for rule in ("spice_tile_bank", "spice_shard", "spice_merge", "spice_dnn_samples", "surrogate_train",
                 "surrogate_fidelity_dnn", "train_model", "evaluate", "report", "report_energy")}
"""(rule or snakefile, lint title) -> why it stays (docs/scale-out.md)."""

# The CLI prints text only (`--lint json` is accepted but ignored in Snakemake 9); the API gives JSON, once
# its encoder can write the snakefile names (source-file objects) as text.
LINT_JSON = """
import json
import sys
json.JSONEncoder.default = lambda self, obj: str(obj)
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path(sys.argv[1])).lint(json=True)
"""


def lint_findings(snakefile: Path) -> set[tuple[str, str]]:
    """(rule or snakefile, title) of every lint finding, from a fresh Snakemake process."""
    proc = subprocess.run([sys.executable, "-c", LINT_JSON, str(snakefile)], cwd=snakefile.parent,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    found = set()
    for kind, item in (("snakefiles", "snakefile"), ("rules", "rule")):
        for entry in report[kind]:
            name = Path(entry["for"][item]).name if item == "snakefile" else entry["for"][item]
            found.update((name, lint["title"]) for lint in entry["lints"])
    return found


def test_the_workflow_lints_clean_beyond_the_allow_list():
    assert lint_findings(REPO / "Snakefile") - set(ALLOWED) == set()


def test_the_command_line_lint_reports_only_the_allowed_finding():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    titles = {line.strip()[2:].rstrip(":") for line in out.splitlines() if line.strip().startswith("* ")}
    assert titles <= {title for _, title in ALLOWED}, out[-3000:]


def test_the_lint_check_sees_the_findings_this_workflow_once_had(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "common.smk").write_text(
        'PY = "python3"\n\n\ndef target():\n    return "a.txt"\n\n\nrule make:\n    output:\n        target(),\n'
        '    log:\n        "a.log",\n    shell:\n        "{PY} -c pass > {output} 2> {log}"\n')
    (tmp_path / "Snakefile").write_text('include: "rules/common.smk"\n')
    found = lint_findings(tmp_path / "Snakefile")
    titles = {title for _, title in found}
    assert ("common.smk", "Mixed rules and functions in same snakefile.") in found
    assert ("make", "Specify a conda environment or container for each rule.") in found
    assert "Shell command directly uses variable PY from outside of the rule" in titles
