"""One parser of circuit files (spice.circuit): subcircuit headers, bodies and model cards, which the
netlist builder, the circuit check and the exact solvers (spice.exact) all read from it."""

from __future__ import annotations

import ast
from pathlib import Path

from spice import exact
from spice.circuit import spec_from_config
from tests.conftest import CIRCUITS

REPO = Path(__file__).resolve().parents[1]


def _spec(text: str, tmp_path, name="c.cir"):
    path = tmp_path / name
    path.write_text(text)
    return spec_from_config("c", {"netlist": str(path), "rows": 4, "cols": 3})


def test_subcircuit_bodies_and_models_of_a_shipped_circuit():
    spec = spec_from_config("s", {"netlist": str(CIRCUITS / "one_s_one_r.cir"), "rows": 4, "cols": 3})
    cell = spec.subckts()["cell"]
    assert cell.header.text.lower().startswith(".subckt cell row col")
    assert [line.text.split()[0] for line in cell.body] == ["D1", "D2", "R1"]
    assert all(line.line_number > cell.header.line_number for line in cell.body)
    models = spec.models()
    assert list(models) == ["dsel"] and models["dsel"].text.split()[2] == "d"


def test_continuations_and_models_inside_a_subcircuit(tmp_path):
    spec = _spec(".subckt cell row col params: g=1e-5\n"
                 "B1 row col\n+ I={g/2*sinh(2*V(row,col))}\n"
                 ".model dd d (is=1n)\n"
                 ".ends cell\n", tmp_path)
    body = spec.subckts()["cell"].body
    assert [line.line_number for line in body] == [2, 4]
    assert body[0].text.replace(" ", "") == "B1rowcolI={g/2*sinh(2*V(row,col))}"
    assert list(spec.models()) == ["dd"]
    assert exact.cell_model(spec).b_per_v == 2.0  # the exact solver reads the parsed body


def test_the_exact_solver_does_not_parse_circuit_files_itself():
    """spice.exact takes subcircuits and model cards from CircuitSpec; it never calls the vetting itself."""
    tree = ast.parse((REPO / "spice" / "exact.py").read_text())
    called = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
              for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not called & {"vet_circuit_file", "parse_circuit_file", "load_circuit_file"}
    assert {"subckts", "models"} <= called
