"""The front page and the docs site: links resolve, the config reference is fresh, benchmark figures have sources."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
LINKED = [REPO / "README.md", REPO / "examples" / "README.md", *PAGES]
BENCHMARK_PAGES = sorted(p for p in (DOCS / "benchmarks").glob("*.md") if p.name != "index.md")

LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE_RE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_RE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    return CODE_RE.sub("", FENCE_RE.sub("", text))


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (what mkdocs links to)."""
    text = re.sub(r"<[^>]+>", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    text = FENCE_RE.sub("", path.read_text())
    return {slug(m.group(1).replace("`", "")) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK_RE.findall(prose(path.read_text())) if not re.match(r"[a-z]+:", t)]


def tracked_files() -> set[str] | None:
    """Paths git tracks (None outside a checkout): a JSON named as a source must be committed."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return None
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    return set(out.stdout.split()) if out.returncode == 0 else None


def test_readme_is_a_front_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for command in ("make run", "make test"):
        assert command in text
    assert "docs/security.md" in text and re.search(r"!\[[^\]]*\]\(docs/[\w.-]+\.png\)", text)


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{path.relative_to(REPO)}: " + "; ".join(broken)


def test_link_checker_catches_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](#top) [bad](missing.md) [anchor](#nowhere) `[code](skipped.md)`\n")
    links = relative_links(page)
    assert links == ["#top", "missing.md", "#nowhere"]
    assert "top" in anchors(page) and "nowhere" not in anchors(page)
    assert slug("Reusing SPICE datasets and surrogates between projects") == \
        "reusing-spice-datasets-and-surrogates-between-projects"
    assert slug("Scale-out: SLURM, declared resources, a shared cache") == "scale-out-slurm-declared-resources-a-shared-cache"


def test_every_docs_page_is_in_the_nav():
    import yaml

    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]
    listed: set[str] = set()

    def walk(node):
        if isinstance(node, str):
            listed.add(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(nav)
    assert {str(p.relative_to(DOCS)) for p in PAGES} == listed


def test_every_figure_is_shown_somewhere():
    shown = "\n".join(p.read_text() for p in [REPO / "README.md", *PAGES])
    for png in DOCS.glob("*.png"):
        assert png.name in shown, f"{png.name} is on no page"


def test_configuration_reference_is_fresh():
    """docs/configuration.md is generated from config/schema.yaml; a schema change must regenerate it."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_configuration_reference_lists_every_schema_key(tmp_path):
    import yaml

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    page = (DOCS / "configuration.md").read_text()
    for key in schema["properties"]:
        assert f"| `{key}` |" in page
    for key in schema["$defs"]["circuit"]["properties"]["sampling"]["properties"]:
        assert f"| `circuits.NAME.sampling.{key}` |" in page
    for key in schema["$defs"]["model"]["properties"]:
        assert f"| `models.NAME.{key}` |" in page
    # a stale page is caught: the check fails against a page generated from another schema
    schema["properties"]["results_dir"]["default"] = "elsewhere"
    other = tmp_path / "schema.yaml"
    other.write_text(yaml.safe_dump(schema))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py"), "--schema", str(other),
                           "--check"], capture_output=True, text=True)
    assert proc.returncode == 1 and "stale" in proc.stderr


def command_script(command: str) -> Path | None:
    """The file a documented command runs: a script path, `python -m pkg.mod`, or the Makefile of `make`."""
    if m := re.search(r"python -m ([\w.]+)", command):
        module = m.group(1).replace(".", "/")
        for candidate in (REPO / f"{module}.py", REPO / module / "__main__.py"):
            if candidate.exists():
                return candidate
        return None
    if m := re.search(r"((?:bench|scripts)/[\w/]+\.py)", command):
        return REPO / m.group(1)
    if re.search(r"\b(make run|snakemake)\b", command):
        configs = re.findall(r"--configfile ([^\s`]+)", command)
        missing = [c for c in configs if not (REPO / c).exists()]
        return REPO / "Snakefile" if not missing else REPO / missing[0]
    return None


def sources_table(path: Path) -> list[tuple[str, str, str]]:
    text = path.read_text()
    assert "\n## Sources\n" in text, f"{path.name}: no '## Sources' table naming commands and JSON files"
    rows = []
    for line in text.split("\n## Sources\n", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("|") and len(cells) == 3 and cells[0] not in ("figures",) and not set(cells[0]) <= {"-"}:
            rows.append((cells[0], cells[1], cells[2]))
    return rows


@pytest.mark.parametrize("path", BENCHMARK_PAGES, ids=lambda p: p.name)
def test_benchmark_page_names_command_and_json(path):
    tracked = tracked_files()
    assert re.search(r"\d", prose(path.read_text())), f"{path.name}: a benchmark page without numbers"
    rows = sources_table(path)
    assert rows, f"{path.name}: empty Sources table"
    for figures, command, json_cell in rows:
        script = command_script(command)
        assert script is not None and script.exists(), f"{path.name}: {figures}: no script for {command}"
        named = re.findall(r"`([\w./-]+\.json)`", json_cell)
        if named:
            for name in named:
                ok = name in tracked if tracked is not None else (REPO / name).exists()
                assert ok, f"{path.name}: {figures}: {name} is not in the repository"
        else:
            assert json_cell.startswith("none committed") and "printed" in json_cell, \
                f"{path.name}: {figures}: name a committed JSON or say which command printed the numbers"


def test_source_checker_rejects_a_missing_script(tmp_path):
    assert command_script("`python bench/no_such_bench.py --json x.json`") == REPO / "bench/no_such_bench.py"
    assert not command_script("`python bench/no_such_bench.py`").exists()
    assert command_script("`python -m bench.peers --json bench/peers.json`") == REPO / "bench/peers.py"
    assert command_script("`snakemake --configfile config/nope.yaml`") == REPO / "config/nope.yaml"
    page = tmp_path / "page.md"
    page.write_text("# T\n\n1.5x\n\n## Sources\n\n| figures | command | JSON |\n|---|---|---|\n| t | `make run` | `a.json` |\n")
    assert sources_table(page) == [("t", "`make run`", "`a.json`")]
