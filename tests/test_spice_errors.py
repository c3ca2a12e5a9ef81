"""Bad circuit files and values get one clear error naming the file/key."""

from __future__ import annotations

import numpy as np
import pytest

from spice import ngspice
from spice.circuit import CircuitError, spec_from_config
from spice.sampling import SamplingConfig
from tests.conftest import CIRCUITS


def write(tmp_path, text, name="bad.cir"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("* nothing here\nR1 a b 1k\n", "no '.subckt cell"),
        (".subckt cell row params: g=1e-5\nR1 row 0 {1/g}\n.ends\n", "expected pins (row col [gate])"),
        (".subckt cell row col\nR1 row col 1k\n.ends\n", "lacks parameter 'g'"),
        (".subckt cell row col params: g=1e-5\nR1 row col {1/g}\n", "never closed"),
        (".subckt cell row col params: g=1e-5\nR1 row col {1/g}\n.ends\n.op\n", "'.op' is not allowed"),
        (".subckt cell row col params: g=1e-5\n.ends\n.subckt sense a b params: r=1\n.ends\n", "expected pins (in)"),
    ],
)
def test_bad_circuit_file_is_rejected_with_its_name(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(CircuitError) as err:
        spec_from_config("c", {"netlist": path, "rows": 2, "cols": 2})
    assert path in str(err.value)
    assert expected in str(err.value)


@pytest.mark.spice
def test_syntax_ngspice_rejects_names_the_file(tmp_path):
    path = write(tmp_path, ".subckt cell row col params: g=1e-5\nQ1 row col\n.ends cell\n")
    spec = spec_from_config("c", {"netlist": path, "rows": 2, "cols": 2})
    with pytest.raises(CircuitError) as err:
        ngspice.check_circuit(spec)
    assert path in str(err.value)


def test_missing_circuit_file(tmp_path):
    with pytest.raises(CircuitError, match="does not exist"):
        spec_from_config("c", {"netlist": str(tmp_path / "nope.cir"), "rows": 2, "cols": 2})


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("rows", 0, "rows must be an integer in [1, 1024]"),
        ("r_wire_row_ohm", -1.0, "r_wire_row_ohm must be a number in [0, 1e9]"),
        ("g_off_s", 1e-3, "g_off_s (0.001) must be smaller than g_on_s"),
        ("v_read_max_v", 0.0, "v_read_max_v must be in (0, 10]"),
        ("colour", 3, "unknown key(s) ['colour']"),
    ],
)
def test_nonsense_values_are_rejected_with_the_key(key, value, expected):
    with pytest.raises(CircuitError) as err:
        spec_from_config("c", {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 2, "cols": 2, key: value})
    assert expected in str(err.value)


def test_unknown_preset():
    with pytest.raises(CircuitError, match="unknown preset 'paper9'"):
        spec_from_config("c", {"preset": "paper9"})


@pytest.mark.parametrize(
    "key, value", [("n_conductance", 0), ("sampler", "gauss"), ("n_shards", 99), ("v_zero_fraction", 1.5)]
)
def test_bad_sampling_settings(key, value):
    with pytest.raises(CircuitError, match=f"sampling.{key}"):
        SamplingConfig.from_dict({"n_conductance": 4, key: value})


@pytest.mark.spice
def test_non_convergence_retries_then_marks_failed_samples(make_spec, monkeypatch, caplog):
    """A vector whose run never converges is retried with every aid, then marked failed (NaN),
    while the other vectors of the same sweep are kept."""
    spec = make_spec(rows=3, cols=2)
    g = np.full((3, 2), 2e-5)
    v = np.array([[0.1, 0.1, 0.1], [0.13, 0.0, 0.05], [0.2, 0.2, 0.2]])
    real = ngspice.run_netlist
    attempts = []

    def flaky(netlist, analysis, vectors):
        attempts.append(analysis)
        if analysis != "op" or "0.13" in netlist:  # the sweep, and vector 1 on its own, never converge
            raise ngspice.NgspiceError("doAnalyses: iteration limit reached; no convergence")
        return real(netlist, analysis, vectors)

    monkeypatch.setattr(ngspice, "run_netlist", flaky)
    i_a, failed = ngspice.solve(spec, g, v)
    assert failed.tolist() == [False, True, False]
    assert np.isnan(i_a[1]).all() and np.isfinite(i_a[[0, 2]]).all()
    n_aids = len(ngspice.CONVERGENCE_AIDS)
    # every aid on the sweep, then each vector alone: 1 try for the good ones, every aid for the bad one
    assert attempts.count("dc temp 0 2 1") == n_aids
    assert attempts.count("op") == 1 + n_aids + 1
    monkeypatch.setattr(ngspice, "run_netlist", real)
    np.testing.assert_allclose(i_a[[0, 2]], ngspice.solve(spec, g, v[[0, 2]])[0], rtol=1e-9)
