"""The package outside its checkout: the wheel holds the circuit files and the schema, builds without
packaging warnings, and works installed (not editable) in a fresh venv from another directory.

Offline and fast: the wheel is built with the running environment's setuptools (--no-build-isolation),
and the fresh venv sees the running environment's site-packages through a .pth line (its torch, h5py,
PySpice...) but gets the package itself only from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

SHIPPED = {"spice/circuits/resistive.cir", "spice/circuits/memristor_sinh.cir", "spice/circuits/one_t_one_r.cir",
           "spice/circuits/one_s_one_r.cir", "spice/circuits/tia_sense.cir", "spice/schema.yaml"}


def _source_copy(dest: Path) -> Path:
    """The checkout's tracked (and untracked, not ignored) files, links kept as links."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src, dst = REPO / name, dest / name
        if not src.is_symlink() and not src.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """(wheel path, the build's stderr)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    base = tmp_path_factory.mktemp("wheel")
    src = _source_copy(base / "src")
    out = base / "dist"
    proc = subprocess.run([sys.executable, "-W", "always", "-c",
                           f"import setuptools.build_meta as b; print(b.build_wheel({str(out)!r}))"],
                          cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1], proc.stdout + proc.stderr


@pytest.mark.slow
def test_wheel_ships_circuits_and_schema_and_builds_without_warnings(wheel):
    path, log = wheel
    names = set(zipfile.ZipFile(path).namelist())
    assert SHIPPED <= names
    for name in SHIPPED:  # the files themselves, not links
        assert zipfile.ZipFile(path).read(name) == (REPO / name).read_bytes()
    warnings = [line for line in log.splitlines() if "Warning" in line or "deprecat" in line.lower()]
    assert warnings == []
    metadata = zipfile.ZipFile(path).read("xbarchar-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed (not editable); returns (python, a directory far from the repo)."""
    base = tmp_path_factory.mktemp("venv")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # dependencies from the running environment (appended after the venv's own site-packages; .pth
    # files there, such as an editable install's finder, are not run)
    (site / "outer_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel[0])], check=True, timeout=300)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return python, elsewhere


def _run(installed, *args, timeout=300):
    python, cwd = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_installed_package_is_the_wheel_not_the_checkout(installed):
    proc = _run(installed, "-c", "import json, spice, surrogate, dnn, spice.resources as r; print(json.dumps("
                "[spice.__file__, surrogate.__file__, dnn.__file__, str(r.schema_path()), r.circuit_names()]))")
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)
    venv = str(installed[0].parents[1])
    assert all(f.startswith(venv) for f in files[:4]), files
    assert files[4] == ["memristor_sinh.cir", "one_s_one_r.cir", "one_t_one_r.cir", "resistive.cir", "tia_sense.cir"]


@pytest.mark.slow
@pytest.mark.spice
def test_preset_circuit_checks_from_another_directory(installed):
    proc = _run(installed, "-m", "spice", "check", "--circuit", '{"preset": "paper1_64_w5"}')
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("package", ["spice", "surrogate", "dnn"])
def test_stage_clis_answer_help(installed, package):
    proc = _run(installed, "-m", package, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


@pytest.mark.slow
def test_installed_console_command_runs_every_stage(installed):
    script = installed[0].parent / "xbarchar"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    for stage in ("spice", "surrogate", "dnn"):
        proc = subprocess.run([str(script), stage, "--help"], cwd=installed[1], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: xbarchar {stage} "), proc.stderr
    proc = subprocess.run([str(script), "spice", "simulate", "--shard", "nan"], cwd=installed[1], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--shard" in proc.stderr


def test_one_console_command_and_it_names_a_function():
    import importlib

    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert list(scripts) == ["xbarchar"]
    module, _, name = scripts["xbarchar"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))


# ----------------------------------------------------------------------------- conda route
CONDA_TO_PYPI = {"snakemake-minimal": "snakemake"}


def _requirement(spec: str) -> tuple[str, str]:
    import re

    name, version = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec).groups()
    return name.lower(), version.replace(" ", "")


def test_conda_environment_agrees_with_pyproject():
    import yaml

    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = {}
    for spec in conda:
        name, version = _requirement(spec.replace("=", "==", 1) if "=" in spec and not any(
            op in spec for op in (">=", "<=", "==", "!=")) else spec)
        have[CONDA_TO_PYPI.get(name, name)] = version
    for spec in pip:
        if not spec.startswith(("-", "./")):  # options and local packages carry no version
            name, version = _requirement(spec)
            have[name] = version
    for dep in project["dependencies"]:
        name, version = _requirement(dep)
        if name == "torch":  # pinned as `make install` pins it; must satisfy pyproject's range
            from packaging.specifiers import SpecifierSet

            assert have["torch"].startswith("==") and have["torch"][2:] in SpecifierSet(version)
            continue
        assert have.get(name) == version, f"environment.yml {name}{have.get(name)} vs pyproject {dep}"
    ngspice = [n for n in have if n.startswith("ngspice")]
    assert ngspice == ["ngspice-lib"]  # one ngspice package: the shared library PySpice loads
    assert env["variables"]["NGSPICE_LIBRARY_PATH"] == "${CONDA_PREFIX}/lib/libngspice.so"
    assert "-e .[dev]" in pip
    assert "./plugins/slurm-bounded" in pip  # the executor profiles/slurm names, as `make install` installs it
    assert "install -q ./plugins/slurm-bounded" in (REPO / "Makefile").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert f"install -q torch{have['torch']}" in makefile  # the apt route installs the same torch


def test_library_path_variables_are_expanded_and_klu_is_found_in_the_file(tmp_path, monkeypatch, capsys):
    from spice import install_check

    lib = tmp_path / "lib" / "libngspice.so"
    lib.parent.mkdir()
    lib.write_bytes(b"\x7fELF ... ngspice-46 ... Compiled with KLU direct linear solver ...")
    monkeypatch.setenv("XB_PREFIX", str(tmp_path))
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", "${XB_PREFIX}/lib/libngspice.so")
    assert install_check.library_name() == str(lib)
    assert install_check.find_library() == lib and install_check.has_klu(lib)
    assert install_check.main([]) == 0 and "KLU available" in capsys.readouterr().out
    lib.write_bytes(b"\x7fELF ... ngspice-39 ... Compiled with Sparse Direct Linear Solver ...")
    assert install_check.main([]) == 1
    assert "WARNING: ngspice library" in capsys.readouterr().err
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", str(tmp_path / "missing.so"))
    assert install_check.main([]) == 2 and "not found" in capsys.readouterr().err


@pytest.mark.spice
def test_the_library_xbarchar_loads_is_the_one_checked(monkeypatch):
    from spice import install_check, ngspice

    monkeypatch.delenv("NGSPICE_LIBRARY_PATH", raising=False)
    path = install_check.find_library()
    assert path is not None and path.is_file()
    assert install_check.has_klu(path) == ngspice.info().has_klu
