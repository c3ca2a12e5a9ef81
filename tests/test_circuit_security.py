"""A circuit file is untrusted: it can neither read a file nor run a command, in any spelling.

Every dot command of the ngspice manual other than the five a circuit file needs is refused before
ngspice sees the file, in every case and spacing variant; messages never carry the file's content.
Files that pass the allow-list are then run for real (``python -m spice check``) to show that nothing
they hold reaches a shell or a file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spice.circuit import ALLOWED_DOT_COMMANDS, CircuitError, spec_from_config, vet_circuit_file
from spice.netlist import build_netlist
from tests.conftest import REPO

CELL = ".subckt cell row col params: g=1e-5\nR1 row col {1/g}\n.ends cell\n"
SECRET = "TOPSECRET_4711"

# Dot commands of the ngspice manual (analyses, control, output, include/library, conditionals,
# options and XSPICE/OSDI extras) plus the prefixes ngspice matches (".inc" is any ".inc..." word).
NGSPICE_DOT_COMMANDS = [
    ".ac", ".control", ".endc", ".csparam", ".dc", ".disto", ".else", ".elseif", ".end", ".endif", ".endl",
    ".exec", ".four", ".global", ".ic", ".if", ".inc", ".incl", ".include", ".includes", ".lib", ".libsave",
    ".meas", ".measure", ".nodeset", ".noise", ".op", ".opt", ".option", ".options", ".plot", ".print",
    ".probe", ".pss", ".pz", ".save", ".sens", ".sp", ".spiceinit", ".step", ".temp", ".tf", ".title",
    ".tran", ".width", ".osdi", ".hdl", ".model_file", ".data", ".enddata", ".alter", ".check", ".endcheck",
]


def spellings(word: str) -> list[str]:
    return sorted({word, word.upper(), word[:2].upper() + word[2:], "  " + word, "\t" + word.title()})


HOSTILE_LINES = [
    pytest.param(f"{spelled} /tmp/{SECRET}.txt", id=f"{word}-{k}")
    for word in NGSPICE_DOT_COMMANDS for k, spelled in enumerate(spellings(word))
] + [
    pytest.param(f"*# shell touch /tmp/{SECRET}", id="star-hash-control-line"),
    pytest.param(f"  *#shell cat /tmp/{SECRET}", id="star-hash-indented"),
    pytest.param(f"R9 a b 1k\n+ .include /tmp/{SECRET}", id="include-after-continuation-is-joined"),
    pytest.param(f"a1 in out src\n.model src filesource (file=\"/tmp/{SECRET}\")", id="xspice-filesource"),
    pytest.param(f"R9 a b 1k file=/tmp/{SECRET}", id="file-parameter"),
    pytest.param("n1 a b osdimodel", id="osdi-device"),
    pytest.param(f"p1 a b c d ref model={SECRET}", id="multiconductor-line"),
    pytest.param(f"#include /tmp/{SECRET}", id="hash-include"),
    pytest.param(f"R9 a b 1k\x0c.include /tmp/{SECRET}", id="form-feed-line-break"),
    pytest.param("R9 a b 1k\x0b.control", id="vertical-tab"),
    pytest.param(f"R9 a b 1k\u2028.include /tmp/{SECRET}", id="unicode-line-separator"),
    pytest.param(f"R9 a b 1k\x00.include /tmp/{SECRET}", id="nul-byte"),
    pytest.param("\u0130nclude", id="non-ascii"),
    pytest.param(f". include /tmp/{SECRET}", id="dot-space"),
    pytest.param("+ .control", id="leading-continuation"),
]


@pytest.mark.parametrize("line", HOSTILE_LINES)
def test_hostile_line_is_refused_with_its_line_number_and_no_content(tmp_path, line):
    path = tmp_path / "hostile.cir"
    path.write_text(CELL + line + "\n", encoding="utf-8")
    with pytest.raises(CircuitError) as info:
        spec_from_config("h", {"netlist": str(path), "rows": 2, "cols": 2})
    message = str(info.value)
    assert str(path) in message and re.search(r", line [45]:", message)
    rest = message.replace(str(path), "")
    assert SECRET not in rest and "/tmp" not in rest


def test_only_the_five_dot_commands_are_allowed():
    assert set(ALLOWED_DOT_COMMANDS) == {".subckt", ".ends", ".param", ".model", ".func"}
    vetted = vet_circuit_file(".PARAM k=2\n.Func f(x) {x*k}\n" + CELL.upper().replace("{1/G}", "{1/g}")
                              + ".model nm nmos level=1\n", "ok.cir")
    assert [v.line_number for v in vetted] == [1, 2, 3, 4, 5, 6]


def test_netlist_holds_only_the_vetted_lines(make_spec, tmp_path):
    """Comments (any of ngspice's comment forms) never reach ngspice; continuations arrive joined."""
    path = tmp_path / "commented.cir"
    path.write_text(f"* {SECRET} header\n.subckt cell row col params: g=1e-5 ; {SECRET}\n"
                    f"R1 row col\n+ {{1/g}} $ {SECRET}\n.ends cell // {SECRET}\n")
    spec = spec_from_config("c", {"netlist": str(path), "rows": 2, "cols": 2})
    import numpy as np

    netlist = build_netlist(spec, np.full((2, 2), 1e-5), np.full((1, 2), 0.1), use_klu=False)
    assert SECRET not in netlist
    assert "R1 row col {1/g}" in netlist.splitlines()


def run_check(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spice", "check", "--circuit",
                           json.dumps({"netlist": str(path), "rows": 2, "cols": 2})],
                          capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
                          timeout=120)


@pytest.mark.spice
def test_cli_refuses_a_control_block_and_runs_nothing(tmp_path):
    """The file of the original report: a .control block with a shell command; check must say no."""
    sentinel = tmp_path / "ran"
    path = tmp_path / "evil.cir"
    path.write_text(CELL + f".control\nshell touch {sentinel}\n.endc\n")
    result = run_check(path, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "line 4" in result.stderr and "'.control'" in result.stderr
    assert not sentinel.exists()


@pytest.mark.spice
@pytest.mark.parametrize("tail", [
    "R9 a 0 1k ; .control",
    "R9 a 0 1k $ .include {secret}",
    "R9 a 0\n+ 1k\n* .include {secret}",
    "* shell touch {sentinel}",
    ".param p = {{1}} ; shell touch {sentinel}",
])
def test_allowed_files_reach_ngspice_without_side_effects(tmp_path, tail):
    """Files the allow-list accepts run through real ngspice: no command runs, no file is read."""
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{SECRET} 1 2\n")
    sentinel = tmp_path / "ran"
    path = tmp_path / "ok.cir"
    path.write_text(CELL.replace(".ends", tail.format(secret=secret, sentinel=sentinel) + "\n.ends"))
    result = run_check(path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert not sentinel.exists() and SECRET not in result.stdout + result.stderr


@pytest.mark.spice
def test_a_shell_word_outside_a_control_block_is_only_a_bad_switch(tmp_path):
    """'shell' starts with 's', a switch to ngspice: it is rejected as an element, and nothing runs."""
    sentinel = tmp_path / "ran"
    path = tmp_path / "shell.cir"
    path.write_text(CELL + f"shell touch {sentinel}\n")
    result = run_check(path, tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(f"error: circuit file {path}")
    assert result.stderr.count("\n") == 1
    assert not sentinel.exists()


@pytest.mark.spice
def test_a_spiceinit_in_the_working_directory_does_not_run(tmp_path):
    """ngspice runs ./.spiceinit when it starts; a folder from someone else must not run anything."""
    sentinel = tmp_path / "ran"
    (tmp_path / ".spiceinit").write_text(f"shell touch {sentinel}\n")
    result = subprocess.run([sys.executable, "-m", "spice", "check", "--circuit",
                             json.dumps({"netlist": str(REPO / "data/circuits/resistive.cir"), "rows": 2, "cols": 2})],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert not sentinel.exists()
