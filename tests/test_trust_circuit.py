"""A circuit file describes its cell (and driver/sense), nothing else.

Three classes of hostile file, each with several spellings: definitions that shadow a name the array
builder's own expressions use, element lines outside any subcircuit (which would attach to the
builder's nodes), and cells that deliver power instead of dissipating it. Plus the size and encoding
of the file itself, checked before it is read whole.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spice import ngspice
from spice.circuit import MAX_CIRCUIT_FILE_BYTES, RESERVED_NAMES, CircuitError, spec_from_config
from spice.netlist import build_netlist
from spice.sampling import SamplingConfig
from spice.simulate import simulate_shard
from tests.conftest import CIRCUITS, REPO

HEAD = ".subckt cell row col params: g=1e-5\n"
CELL = HEAD + "R1 row col {1/g}\n.ends cell\n"
ENTRY = {"rows": 2, "cols": 2, "r_driver_ohm": 100.0, "r_sense_ohm": 100.0}


def load(tmp_path: Path, text: str | bytes, **entry):
    path = tmp_path / "user.cir"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path, spec_from_config("u", {"netlist": str(path), **ENTRY, **entry})


def refused(tmp_path: Path, text: str | bytes, line: int | None) -> str:
    path = tmp_path / "user.cir"
    with pytest.raises(CircuitError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    if line is not None:
        assert f", line {line}:" in message, message
    return message


def run_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spice", "check", "--circuit",
                           json.dumps({"netlist": str(path), **ENTRY})],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


# ---------------------------------------------------------------- 1. the builder's names and nodes
SHADOWING = [
    pytest.param(".func pwl(a,b,c,d,e,f) {0}\n" + CELL, 1, id="func-pwl"),
    pytest.param(".FUNC PWL (a, b) = {0}\n" + CELL, 1, id="func-pwl-upper-spaced"),
    pytest.param(".func V(a) {0}\n" + CELL, 1, id="func-v"),
    pytest.param(".Func i(x) {x}\n" + CELL, 1, id="func-i"),
    pytest.param(".param temper=0\n" + CELL, 1, id="param-temper"),
    pytest.param(".PARAM k=2 TeMpEr = {k}\n" + CELL, 1, id="param-second-assignment"),
    pytest.param(CELL + ".param k=1\n+ pwl=2\n", 4, id="param-on-continuation"),
    pytest.param(".func\n+ pwl(a) {0}\n" + CELL, 1, id="func-name-on-continuation"),
    pytest.param(".param pwl(x) = {x}\n" + CELL, 1, id="param-style-function"),
    pytest.param(".param sqrt=1\n" + CELL, 1, id="param-builtin-function"),
    pytest.param(HEAD + ".func v(a) {0}\nR1 row col {1/g}\n.ends cell\n", 2, id="func-inside-cell"),
    pytest.param(HEAD + ".param Temper=1\nR1 row col {1/g}\n.ends cell\n", 2, id="param-inside-cell"),
    pytest.param(".subckt cell row col params: g=1e-5 V=1\nR1 row col {1/g}\n.ends cell\n", 1, id="subckt-param"),
]


@pytest.mark.parametrize("text, line", SHADOWING)
def test_a_definition_of_a_reserved_name_is_refused(tmp_path, text, line):
    message = refused(tmp_path, text, line)
    assert "may not define" in message and "case-insensitive" in message


TOP_LEVEL = [
    pytest.param(CELL + "R9 s0 0 1\n", 4, id="resistor-on-sense-node"),
    pytest.param(CELL + "r9 S0 0 1\n", 4, id="lowercase-uppercase-node"),
    pytest.param("B1 d0 0 I=1e-3\n" + CELL, 1, id="b-source-before-cell"),
    pytest.param(CELL + "R9 s0\n+ 0\n+ 1\n", 4, id="continuation-lines"),
    pytest.param(CELL + "* comment\n\nX9 a0_0 b0_0 cell g=1\n", 6, id="instance-between-builder-nodes"),
    pytest.param(CELL + "V9 vm0 0 0\n.subckt sense in params: r=1\nR1 in 0 {r}\n.ends\n", 4, id="between-subckts"),
    pytest.param(CELL + "  G1 d0 0 d0 0 1 ; tail\n", 4, id="indented-vccs"),
]


@pytest.mark.parametrize("text, line", TOP_LEVEL)
def test_an_element_line_outside_a_subckt_is_refused(tmp_path, text, line):
    assert "outside any .subckt" in refused(tmp_path, text, line)


def test_a_subckt_defined_twice_is_refused(tmp_path):
    message = refused(tmp_path, CELL + ".SUBCKT Cell row col params: g=1\nR1 row col 1\n.ends\n", 4)
    assert "defined twice" in message


def test_every_name_the_builder_evaluates_is_reserved(make_spec):
    """If the builder's expressions ever use a new name, it must join RESERVED_NAMES (or this fails)."""
    used: set[str] = set()
    for spec in (make_spec(), make_spec(netlist=str(CIRCUITS / "one_s_one_r.cir"), r_driver_ohm=0.0)):
        netlist = build_netlist(spec, np.full((spec.rows, spec.cols), 1e-5), np.full((3, spec.rows), 0.1), False)
        for line in netlist.splitlines()[2 + len(spec.vetted_lines()):]:
            _, eq, expr = line.partition("=")
            if eq:
                used |= {w.lower() for w in re.findall(r"(?<![\w.])[A-Za-z_]\w*", re.sub(r"\((\w+)\)", "()", expr))}
    assert {"pwl", "v", "temper"} <= used <= RESERVED_NAMES


@pytest.mark.spice
def test_names_inside_a_subckt_never_reach_the_builder(make_spec, tmp_path):
    """A cell whose own nodes, sources and parameters carry the builder's names, beside top-level
    parameters and functions of such names, solves exactly like the plain resistive cell."""
    text = (".param idx=3 gl=1 d0=5 vm0=2\n.func f(x) {x}\n.model vin0 d is=1e-9\n.MODEL Cell R\n.model pwl d\n"
            + HEAD + "R1 row s0 {f(0.5)/g}\nvm0 s0 d0 0\nR2 d0 col {0.5/g}\nR3 a0_0 0 1e12\n.ends cell\n")
    _, spec = load(tmp_path, text, rows=4, cols=3)
    plain = make_spec(rows=4, cols=3, r_driver_ohm=100.0, r_sense_ohm=100.0)
    rng = np.random.default_rng(5)
    g = rng.uniform(plain.g_off_s, plain.g_on_s, (4, 3))
    v = rng.uniform(0.0, plain.v_read_max_v, (6, 4))
    mine, failed = ngspice.solve(spec, g, v)
    reference, _ = ngspice.solve(plain, g, v)
    assert not failed.any()
    np.testing.assert_allclose(mine, reference, rtol=1e-6)


@pytest.mark.spice
def test_the_cli_check_refuses_a_shadowing_file_in_one_line(tmp_path):
    for text, words in ((".func pwl(a,b,c,d) {0}\n" + CELL, "'pwl'"), (CELL + "R9 s0 0 1\n", "outside any .subckt")):
        path = tmp_path / "user.cir"
        path.write_text(text)
        result = run_check(path)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert str(path) in result.stderr and words in result.stderr


# ---------------------------------------------------------------- 2. a passive cell never delivers power
ACTIVE_CELLS = [
    pytest.param(HEAD + "B1 row col I=-{g}*v(row,col)\n.ends cell\n", id="b-source-negative-conductance"),
    pytest.param(HEAD + "R1 row col {-1/g}\n.ends cell\n", id="negative-resistance"),
    pytest.param(HEAD + "G1 row col row col {-g}\n.ends cell\n", id="vccs-negative"),
    pytest.param(HEAD + "R1 row col {1/g}\nI1 col row 1u\n.ends cell\n", id="current-source-offset"),
    pytest.param(HEAD + "B1 row col I={g*(v(row,col)-0.05)}\n.ends cell\n", id="active-near-zero-only"),
    pytest.param(HEAD + "R1 row mid {1/g}\nE1 col mid row col -2\n.ends cell\n", id="vcvs-gain"),
]


@pytest.mark.spice
@pytest.mark.parametrize("text", ACTIVE_CELLS)
def test_a_cell_that_delivers_power_fails_the_check(tmp_path, text):
    path, spec = load(tmp_path, text)
    with pytest.raises(CircuitError) as info:
        ngspice.check_circuit(spec)
    message = str(info.value)
    assert str(path) in message and "delivers" in message and "passive" in message


@pytest.mark.spice
def test_simulating_an_active_cell_is_refused_before_any_sample(tmp_path):
    path, spec = load(tmp_path, ACTIVE_CELLS[1].values[0])
    with pytest.raises(CircuitError, match="delivers"):
        simulate_shard(spec, SamplingConfig(n_conductance=1, n_vectors=2, seed=1), 0, progress=False)


@pytest.mark.spice
def test_the_cli_check_refuses_an_active_cell_in_one_line(tmp_path):
    path = tmp_path / "user.cir"
    path.write_text(ACTIVE_CELLS[0].values[0])
    result = run_check(path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert str(path) in result.stderr and "delivers" in result.stderr


SHIPPED = [pytest.param(p.name, id=p.stem) for p in sorted(CIRCUITS.glob("*.cir"))]


@pytest.mark.spice
@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("v_read_min_v", [0.0, -0.2])
def test_every_shipped_circuit_is_passive(name, v_read_min_v):
    spec = spec_from_config("s", {"netlist": str(CIRCUITS / name), **ENTRY, "v_read_min_v": v_read_min_v,
                                  "v_gate_v": 1.8})
    check = ngspice.check_circuit(spec)
    assert check.cell_current_max_a > 0.0


def test_a_column_current_against_every_row_voltage_is_implausible():
    check = ngspice.CircuitCheck(cell_current_max_a=1e-5, column_current_bound_a=2e-5)
    i_a = np.array([[1e-6, -1e-6], [1e-6, -1e-6], [-1e-6, 1e-6], [1e-6, -1e-13], [0.0, 0.0], [-1e-6, 2e-6]])
    v_v = np.array([[0.1, 0.0], [0.1, -0.1], [-0.1, -0.2], [0.1, 0.2], [0.0, 0.0], [-0.1, 0.0]])
    reasons = ngspice.implausible_samples(i_a, check, v_v)
    assert "column 1" in reasons[0] and "wrong sign" in reasons[0] and ">= 0 V" in reasons[0]
    assert reasons[1] == ""  # mixed signs: either direction is possible
    assert "column 1" in reasons[2] and "<= 0 V" in reasons[2]
    assert reasons[3] == "" and reasons[4] == ""  # within the solver tolerance; all zero
    assert "column 1" in reasons[5]
    assert list(ngspice.implausible_samples(i_a, check)) == [""] * 6  # without voltages: bound only


@pytest.mark.spice
def test_samples_from_an_active_sense_element_are_marked_failed(tmp_path):
    """A sense element that pushes current back into the array passes the cell's check, but no
    passive array gives those currents: every sample is stored as failed with its reason."""
    _, spec = load(tmp_path, CELL + ".subckt sense in params: r=1e3\nR1 in 0 {r}\nI1 0 in 1m\n.ends sense\n",
                   r_sense_ohm=250.0)  # the sense input sits near 0.25 V, above every row (<= 0.2 V)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=2, n_vectors=3, seed=4), 0, progress=False)
    assert shard.failed.all() and np.isnan(shard.i_a).all()
    assert all(b"wrong sign for a passive array" in r for r in shard.failure_reason), shard.failure_reason


# ---------------------------------------------------------------- 3. size and encoding, before reading
def test_a_huge_file_is_refused_from_its_size_without_reading_it(tmp_path):
    path = tmp_path / "user.cir"
    with path.open("wb") as handle:
        handle.truncate(3_000_000_000)  # sparse: reading it whole would need 3 GB
    with pytest.raises(CircuitError, match=r"user\.cir: larger than 1000000 bytes"):
        spec_from_config("u", {"netlist": str(path), **ENTRY})


def test_the_size_limit_is_exact(tmp_path):
    body = CELL.encode()
    filler = b"*" * (MAX_CIRCUIT_FILE_BYTES - len(body) - 1) + b"\n"
    path, spec = load(tmp_path, filler + body)
    assert path.stat().st_size == MAX_CIRCUIT_FILE_BYTES and spec.has_custom_sense is False
    assert "larger than" in refused(tmp_path, b"*" + filler + body, None)


@pytest.mark.parametrize("data, line, offset", [
    pytest.param(CELL.encode() + b"* caf\xe9\n", 4, len(CELL) + 5, id="latin-1"),
    pytest.param(b"\xff\xfe" + CELL.encode("utf-16-le"), 1, 0, id="utf-16"),
    pytest.param(HEAD.encode() + b"R1 row col\x80 {1/g}\n.ends\n", 2, len(HEAD) + 10, id="stray-continuation-byte"),
])
def test_undecodable_bytes_name_their_line_and_offset(tmp_path, data, line, offset):
    message = refused(tmp_path, data, line)
    assert f"byte {offset} " in message and "UTF-8" in message


def test_decodable_non_ascii_names_its_line(tmp_path):
    assert "plain ASCII" in refused(tmp_path, CELL + "* caf\u00e9\n", 4)


def test_a_file_parameter_split_over_a_continuation_is_refused(tmp_path):
    from spice.circuit import CircuitError, vet_circuit_file

    for text in ('.subckt cell row col params: g=1e-5\nV1 row x PWL file\n+ = "data.txt"\nR1 x col {1/g}\n.ends cell\n',
                 '.subckt cell row col params: g=1e-5\nV1 row x PWL\n+ FILE\n+=\n+ "data.txt"\nR1 x col {1/g}\n.ends\n'):
        with pytest.raises(CircuitError, match=r"c\.cir, line [34]: a 'file=' parameter is not allowed"):
            vet_circuit_file(text, "c.cir")


@pytest.mark.spice
def test_ngspice_in_the_loop_refuses_currents_of_the_wrong_sign(tmp_path):
    """The same sign check when ngspice solves the MVM inside a DNN evaluation: one clear error."""
    import torch

    from spice.inloop import InLoopError, SpiceArray

    _, spec = load(tmp_path, CELL + ".subckt sense in params: r=1e3\nR1 in 0 {r}\nI1 0 in 1m\n.ends sense\n",
                   r_sense_ohm=250.0)
    check = ngspice.check_circuit(spec)
    g = torch.full((1, spec.rows, spec.cols), 0.5 * (spec.g_off_s + spec.g_on_s), dtype=torch.float64)
    v = torch.full((1, 2, spec.rows), 0.5 * spec.v_read_max_v, dtype=torch.float64)
    with pytest.raises(InLoopError, match=r"wrong sign for a passive array"):
        SpiceArray(spec, g, check).currents(v)
