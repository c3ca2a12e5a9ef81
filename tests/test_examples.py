"""The numbered examples run as a user runs them (a subprocess from another folder) and print what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

pytestmark = pytest.mark.spice


def run_example(name: str, tmp_path: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


def test_examples_are_numbered_and_listed():
    names = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert names == ["01_convert_your_own_model.py", "02_use_a_surrogate_file.py", "03_swap_a_circuit.py"]
    readme = (EXAMPLES / "README.md").read_text()
    for name in names:
        assert name in readme


def test_convert_your_own_model(tmp_path):
    out = run_example("01_convert_your_own_model.py", tmp_path)
    assert number(r"ideal array: 2 crossbar layers, feature error vs float ([\d.]+)", out) < 0.1
    real = number(r"real array: 2 crossbar layers, feature error vs float ([\d.]+)", out)
    adapted = number(r"after BN adaptation: feature error vs float ([\d.]+)", out)
    assert real > 0.2  # the 1 kOhm driver and sense shift every BN's statistics
    assert adapted < real / 3  # BN adaptation absorbs most of it


def test_use_a_surrogate_file(tmp_path):
    out = run_example("02_use_a_surrogate_file.py", tmp_path)
    assert "circuit paper1_8 8x8" in out
    error = number(r"surrogate error ([\d.e+-]+) of full scale", out)
    ideal = number(r"ideal v\.G ([\d.e+-]+)", out)
    assert error < 2e-3 and error < ideal / 20
    assert "crossbar conv layer output (2, 4, 4, 4)" in out
    assert re.search(r"refused: .*rows 8 in the file != 16", out)
    assert not list(tmp_path.iterdir())  # its files live in a temporary folder


def test_swap_a_circuit(tmp_path):
    out = run_example("03_swap_a_circuit.py", tmp_path)
    ratios = {name: number(rf"{name}: column current / ideal = ([\d.]+)", out)
              for name in ("resistive", "memristor_sinh", "one_s_one_r", "contact_resistance")}
    assert 0.3 < ratios["resistive"] < 0.95  # driver, sense and wires load the array
    assert ratios["memristor_sinh"] > ratios["resistive"]  # sinh passes more than g*V at 0.5 V
    assert ratios["one_s_one_r"] < ratios["resistive"] / 2  # the selector is mostly off at <= 0.5 V
    assert ratios["contact_resistance"] < ratios["resistive"]  # 2 kOhm more in series
    assert "failed vectors 0" in out
    assert re.search(r"refused: circuit file .*includes_a_file\.cir, line 1: dot command '\.include'", out)
