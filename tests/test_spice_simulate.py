"""spice/simulate.py: the superposition path, its linearity check at the tolerance boundary, the direct
sweep and failed samples, each against an independent reference (spice/nodal.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from spice import ngspice, nodal
from spice.sampling import SamplingConfig, draw
from spice.simulate import simulate_shard, superposition, superposition_probed
from tests.conftest import CIRCUITS, reorder_atol

pytestmark = pytest.mark.spice

SINH = str(CIRCUITS / "memristor_sinh.cir")
B_PER_V = 5.0  # the b of memristor_sinh.cir


def _weak_sinh(make_spec):
    """A small sinh array read at 0.02 V: sinh(b V)/(b V) - 1 ~ 1e-4, weakly non-linear."""
    return make_spec("weak", rows=5, cols=4, netlist=SINH, v_read_max_v=0.02)


def _superposition_error(spec, g, v_check):
    """The linearity check's relative error computed from Newton solves of the nodal equations: the
    affine prediction from rows+1 basis solves against the direct solves of the check vectors."""
    v_ref = spec.v_read_max_v
    basis = np.vstack([np.zeros(spec.rows), v_ref * np.eye(spec.rows)])
    i_basis = nodal.column_currents_sinh(spec, g, basis, B_PER_V)
    t = (i_basis[1:] - i_basis[0]) / v_ref
    direct = nodal.column_currents_sinh(spec, g, v_check, B_PER_V)
    return np.max(np.abs(i_basis[0] + v_check @ t - direct)) / np.max(np.abs(direct))


def test_weakly_nonlinear_array_fails_the_relative_linearity_check(make_spec, caplog):
    spec = _weak_sinh(make_spec)
    rng = np.random.default_rng(0)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (5, 4))
    v_check = rng.uniform(0.0, spec.v_read_max_v, (2, 5))
    err = _superposition_error(spec, g, v_check)
    # weakly non-linear: far above the default tolerance (1e-6), far below a percent; the absolute
    # error is ~1e-11 A, so only a *relative* measure sees it
    assert 1e-5 < err < 1e-3
    with caplog.at_level(logging.INFO, logger="spice.simulate"):
        assert superposition(spec, g, v_check, rtol=1e-6) is None
    (message,) = [r.getMessage() for r in caplog.records if r.name == "spice.simulate"]
    logged = float(message.split("relative error ")[1].split(" ")[0])
    assert logged == pytest.approx(err, rel=0.01)  # the error measured, to the 3 digits logged
    assert message == f"linearity check failed (relative error {logged:.2e} > 1.0e-06): using direct sweep"


def test_linearity_tolerance_boundary(make_spec):
    """Accepted when the tolerance is above the measured non-linearity, refused just below it."""
    spec = _weak_sinh(make_spec)
    rng = np.random.default_rng(1)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (5, 4))
    v_check = rng.uniform(0.0, spec.v_read_max_v, (2, 5))
    err = _superposition_error(spec, g, v_check)
    accepted = superposition(spec, g, v_check, rtol=1.5 * err)
    assert accepted is not None
    t, offset = accepted
    # the accepted transfer matrix is the array's response to one row at a time (secant at v_ref)
    basis = np.vstack([np.zeros(5), spec.v_read_max_v * np.eye(5)])
    i_basis = nodal.column_currents_sinh(spec, g, basis, B_PER_V)
    np.testing.assert_allclose(t, (i_basis[1:] - i_basis[0]) / spec.v_read_max_v, rtol=1e-6)
    np.testing.assert_allclose(offset, 0.0, atol=1e-15)
    assert superposition(spec, g, v_check, rtol=err / 1.5) is None


def test_weakly_nonlinear_array_goes_to_the_direct_sweep(make_spec):
    spec = _weak_sinh(make_spec)
    cfg = SamplingConfig(n_conductance=2, n_vectors=3, seed=4)
    shard = simulate_shard(spec, cfg, 0, progress=False)
    assert shard.solver.tolist() == [b"sweep", b"sweep"]
    assert np.isnan(shard.transfer_a_per_v).all() and shard.transfer_a_per_v.shape == (2, 5, 4)
    for k in range(2):
        sel = shard.g_index == k
        exact = nodal.column_currents_sinh(spec, shard.g_s[k], shard.v_v[sel], B_PER_V)
        np.testing.assert_allclose(shard.i_a[sel], exact, rtol=1e-7, atol=1e-8 * np.abs(exact).max())


def test_resistive_shard_is_solved_by_superposition_exactly(make_spec):
    spec = make_spec(rows=4, cols=3)
    cfg = SamplingConfig(n_conductance=3, n_vectors=5, seed=7, n_shards=2)
    shard = simulate_shard(spec, cfg, 1, progress=False)  # shard 1 of 2 holds matrix 2 only
    assert shard.g_id.tolist() == [2] and shard.g_id.dtype == np.int64
    g, v = draw(spec, cfg, 2)
    np.testing.assert_array_equal(shard.g_s[0], g)
    np.testing.assert_array_equal(shard.v_v, v)
    assert shard.g_index.tolist() == [0] * 5 and shard.g_index.dtype == np.int64
    assert shard.solver.tolist() == [b"superposition"] and not shard.failed.any()
    assert shard.failed.shape == (5,) and shard.failed.dtype == bool
    np.testing.assert_allclose(shard.transfer_a_per_v[0], nodal.transfer_matrix(spec, g), rtol=1e-7)
    np.testing.assert_allclose(shard.i_a, nodal.column_currents(spec, g, v), rtol=1e-7)
    np.testing.assert_allclose(shard.i_ideal_a, v @ g, rtol=1e-12)


def test_several_matrices_keep_their_own_samples(make_spec):
    spec = make_spec(rows=3, cols=2)
    cfg = SamplingConfig(n_conductance=3, n_vectors=2, seed=3)
    shard = simulate_shard(spec, cfg, 0, progress=False)
    assert shard.g_id.tolist() == [0, 1, 2] and shard.g_index.tolist() == [0, 0, 1, 1, 2, 2]
    for k in range(3):
        g, v = draw(spec, cfg, k)
        np.testing.assert_array_equal(shard.g_s[k], g)
        np.testing.assert_allclose(shard.i_a[2 * k:2 * k + 2], nodal.column_currents(spec, g, v), rtol=1e-7)
    np.testing.assert_allclose(shard.i_ideal_a, np.einsum("nr,nrc->nc", shard.v_v, shard.g_s[shard.g_index]))


def test_forced_sweep_solves_every_vector_directly(make_spec, monkeypatch):
    spec = make_spec(rows=4, cols=3)
    calls = []
    monkeypatch.setattr("spice.simulate.superposition_probed", lambda *a, **k: calls.append(a) or None)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=1, n_vectors=4, solver="sweep"), 0, progress=False)
    assert calls == []  # solver "sweep" never tries superposition
    assert shard.solver.tolist() == [b"sweep"] and np.isnan(shard.transfer_a_per_v).all()
    np.testing.assert_allclose(shard.i_a, nodal.column_currents(spec, shard.g_s[0], shard.v_v), rtol=1e-7)


def test_check_vectors_lie_in_the_read_range_and_are_seeded(make_spec, monkeypatch):
    spec = make_spec(rows=4, cols=3, v_read_min_v=-0.1)
    seen = []

    def spy(spec_, g, v_check, rtol, check, probe_names):
        seen.append((v_check.copy(), rtol))
        return superposition_probed(spec_, g, v_check, rtol, check, probe_names)

    monkeypatch.setattr("spice.simulate.superposition_probed", spy)
    cfg = SamplingConfig(n_conductance=2, n_vectors=2, seed=1, linearity_rtol=1e-5)
    simulate_shard(spec, cfg, 0, progress=False)
    simulate_shard(spec, cfg, 0, progress=False)
    assert len(seen) == 4 and all(r == 1e-5 for _, r in seen)
    for v, _ in seen:
        assert v.shape == (2, 4) and v.min() >= -0.1 and v.max() <= 0.2
    assert (np.concatenate([v for v, _ in seen]) < 0).any()  # bipolar range used
    np.testing.assert_array_equal(seen[0][0], seen[2][0])  # same seed, same matrix: same vectors
    assert not np.array_equal(seen[0][0], seen[1][0])  # another matrix: other vectors


def _basis_spy(monkeypatch):
    """ngspice.solve_probed, recording the input vectors of every call."""
    calls, real = [], ngspice.solve_probed

    def solve(spec, g, v, probes):
        calls.append(np.array(v))
        return real(spec, g, v, probes)

    monkeypatch.setattr("spice.simulate.ngspice.solve_probed", solve)
    return calls


@pytest.mark.parametrize("v_min, v_max, v_ref", [(-0.2, 0.2, 0.2), (-0.1, 0.25, 0.25), (0.05, 0.25, 0.25)])
def test_bipolar_reads_use_the_larger_read_voltage_for_the_basis(make_spec, monkeypatch, v_min, v_max, v_ref):
    """The basis vectors are v_ref e_r with v_ref = v_read_max_v, the read voltage of largest magnitude
    (CircuitSpec keeps v_read_min_v >= -v_read_max_v): the secant the transfer matrix is taken at,
    which matters for cells that are not odd."""
    spec = make_spec(rows=3, cols=2, v_read_min_v=v_min, v_read_max_v=v_max)
    g = np.random.default_rng(2).uniform(spec.g_off_s, spec.g_on_s, (3, 2))
    v_check = np.array([[0.1, -0.2, 0.05], [-0.1, 0.0, 0.1]])
    calls = _basis_spy(monkeypatch)
    t, offset = superposition(spec, g, v_check, rtol=1e-6)
    (basis,) = calls
    np.testing.assert_array_equal(basis, np.vstack([np.zeros(3), v_ref * np.eye(3), v_check]))
    np.testing.assert_allclose(t, nodal.transfer_matrix(spec, g), rtol=1e-7)


def test_an_implausible_basis_solve_refuses_superposition(make_spec):
    """Basis currents above the circuit's passive bound send the matrix to the direct sweep (whose
    samples are then marked), even when they are perfectly linear."""
    spec = make_spec(rows=3, cols=2)
    g = np.full((3, 2), 2e-5)
    v_check = np.full((2, 3), 0.1)
    i_basis = nodal.column_currents(spec, g, np.vstack([np.zeros(3), spec.v_read_max_v * np.eye(3), v_check]))
    worst = np.max(np.abs(i_basis))
    assert superposition(spec, g, v_check, 1e-6, ngspice.CircuitCheck(1.0, 1.01 * worst)) is not None
    assert superposition(spec, g, v_check, 1e-6, ngspice.CircuitCheck(1.0, 0.99 * worst)) is None


def test_shard_arrays_are_the_dataset_of_the_file(make_spec):
    """ShardResult.arrays(): every dataset spice.io writes, by name, each the shard's own array."""
    from spice.io import UNITS

    spec = make_spec(rows=3, cols=2)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=2, n_vectors=3, seed=5), 0, progress=False)
    arrays = shard.arrays()
    assert sorted(arrays) == sorted(UNITS)
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, getattr(shard, name))
    per_vector = np.stack([shard.v_v[n] @ shard.g_s[shard.g_index[n]] for n in range(6)])
    # einsum vs one matmul per vector: another summation order of 3 terms
    atol = reorder_atol(3, float(np.max(np.abs(shard.v_v) @ np.abs(shard.g_s).max(0))))
    np.testing.assert_allclose(arrays["i_ideal_a"], per_vector, rtol=0, atol=atol)


def _failing_solve(n_fail_from):
    """ngspice.solve_probed, but samples from index `n_fail_from` on are reported as failed (NaN)."""
    real = ngspice.solve_probed

    def solve(spec, g, v, probes):
        i, failed, values = real(spec, g, v, probes)
        failed = failed.copy()
        failed[n_fail_from:] = True
        i = np.where(failed[:, None], np.nan, i)
        return i, failed, np.where(failed[:, None], np.nan, values)

    return solve


def test_a_failed_basis_solve_refuses_superposition(make_spec, monkeypatch):
    spec = make_spec(rows=3, cols=2)
    g = np.full((3, 2), 2e-5)
    monkeypatch.setattr("spice.simulate.ngspice.solve_probed", _failing_solve(5))  # only the 2nd check vector
    assert superposition(spec, g, np.full((2, 3), 0.1), rtol=1e-6) is None


def test_failed_samples_are_marked_and_counted_never_dropped(make_spec, monkeypatch, caplog):
    spec = make_spec(rows=3, cols=2)
    monkeypatch.setattr("spice.simulate.ngspice.solve_probed", _failing_solve(2))
    with caplog.at_level(logging.ERROR, logger="spice.simulate"):
        shard = simulate_shard(spec, SamplingConfig(n_conductance=2, n_vectors=3), 0, progress=False)
    assert shard.failed.tolist() == [False, False, True] * 2
    assert np.isnan(shard.i_a[shard.failed]).all() and np.isfinite(shard.i_a[~shard.failed]).all()
    assert shard.solver.tolist() == [b"sweep", b"sweep"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["2 of 6 samples failed (2 did not converge after all convergence aids); they are marked in "
                      "/failed with /failure_reason"]


def test_no_failure_no_error_log(make_spec, caplog):
    spec = make_spec(rows=3, cols=2)
    with caplog.at_level(logging.INFO, logger="spice.simulate"):
        simulate_shard(spec, SamplingConfig(n_conductance=1, n_vectors=2), 0, progress=False)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_affine_circuit_gets_its_offset_and_the_same_transfer_matrix(make_spec, monkeypatch):
    """A constant current on every column (e.g. a sense amplifier's offset) is an affine array: the
    offset comes out of the zero-input solve and the transfer matrix is unchanged."""
    spec = make_spec(rows=4, cols=3)
    g = np.random.default_rng(5).uniform(spec.g_off_s, spec.g_on_s, (4, 3))
    offset_a = np.array([1e-6, -2e-6, 3e-7])
    real = ngspice.solve_probed

    def solve(s, g_, v, probes):
        i, failed, values = real(s, g_, v, probes)
        return i + offset_a, failed, values

    monkeypatch.setattr("spice.simulate.ngspice.solve_probed", solve)
    t, offset = superposition(spec, g, np.full((2, 4), 0.1), rtol=1e-6)
    np.testing.assert_allclose(offset, offset_a, rtol=1e-9)
    np.testing.assert_allclose(t, nodal.transfer_matrix(spec, g), rtol=1e-7)


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bar_names_the_circuit_and_shard(make_spec, capsys, caplog, progress):
    spec = make_spec("bar", rows=3, cols=2)
    cfg = SamplingConfig(n_conductance=2, n_vectors=2, n_shards=2)
    with caplog.at_level(logging.INFO, logger="spice.simulate"):
        if progress:
            simulate_shard(spec, cfg, 1)  # progress by default: a log line when stderr is not a terminal
        else:
            simulate_shard(spec, cfg, 1, progress=False)
    assert capsys.readouterr().err == ""  # no bar drawn into a log file
    assert ("ngspice bar shard 1: 1/1 G (100%)" in caplog.text) == progress


def test_the_tolerance_is_inclusive(make_spec):
    """'Within rtol' includes rtol itself: zero check vectors are predicted exactly (the offset), so the
    relative error is exactly 0 and rtol = 0 accepts the circuit."""
    spec = make_spec(rows=3, cols=2)
    g = np.full((3, 2), 2e-5)
    result = superposition(spec, g, np.zeros((2, 3)), rtol=0.0)
    assert result is not None
    np.testing.assert_allclose(result[0], nodal.transfer_matrix(spec, g), rtol=1e-7)


def test_a_matrix_whose_basis_exceeds_the_passive_bound_goes_to_the_direct_sweep(make_spec):
    """simulate_shard hands its circuit check to the linearity path: a basis solve (one row at
    v_read_max_v) above the bound refuses superposition, though the array is linear; the samples above
    the bound are then marked, the others kept."""
    spec = make_spec(rows=3, cols=2)
    cfg = SamplingConfig(n_conductance=1, n_vectors=6, seed=9)
    g, v = draw(spec, cfg, 0)
    i_basis = nodal.column_currents(spec, g, spec.v_read_max_v * np.eye(3))
    check = ngspice.CircuitCheck(1.0, 0.99 * np.max(np.abs(i_basis)))
    shard = simulate_shard(spec, cfg, 0, progress=False, check=check)
    assert shard.solver.tolist() == [b"sweep"] and np.isnan(shard.transfer_a_per_v).all()
    exact = nodal.column_currents(spec, g, v)
    above = np.max(np.abs(exact), axis=1) > check.column_current_bound_a
    np.testing.assert_array_equal(shard.failed, above)
    np.testing.assert_allclose(shard.i_a[~above], exact[~above], rtol=1e-7)


def test_failure_reasons_log_and_nan_for_both_kinds_of_failure(make_spec, monkeypatch, caplog):
    """An implausible (finite, above the bound) sample and a non-converged one: each marked with its
    reason (bytes in the file), its currents NaN, and one error line counting each kind."""
    spec = make_spec(rows=3, cols=2)
    cfg = SamplingConfig(n_conductance=1, n_vectors=4, seed=2, solver="sweep")
    g, v = draw(spec, cfg, 0)
    exact = nodal.column_currents(spec, g, v)
    worst = np.max(np.abs(exact), axis=1)
    k_big = int(np.argmax(worst))
    bound = 0.5 * (worst[k_big] + np.max(np.delete(worst, k_big)))  # only sample k_big is above
    k_stuck = (k_big + 1) % 4

    real = ngspice.solve_probed

    def solve(spec_, g_, v_, probes):
        i, failed, values = real(spec_, g_, v_, probes)
        failed = failed.copy()
        failed[k_stuck] = True
        return i, failed, values  # ngspice's non-converged point keeps finite (wrong) numbers

    monkeypatch.setattr("spice.simulate.ngspice.solve_probed", solve)
    with caplog.at_level(logging.ERROR, logger="spice.simulate"):
        shard = simulate_shard(spec, cfg, 0, progress=False, check=ngspice.CircuitCheck(1.0, bound))
    expected_failed = np.zeros(4, dtype=bool)
    expected_failed[[k_big, k_stuck]] = True
    np.testing.assert_array_equal(shard.failed, expected_failed)
    assert np.isnan(shard.i_a[expected_failed]).all()
    np.testing.assert_allclose(shard.i_a[~expected_failed], exact[~expected_failed], rtol=1e-7)
    assert shard.failure_reason.dtype.kind == "S" and shard.failure_reason.shape == (4,)
    assert shard.failure_reason[k_stuck] == b"did not converge after all convergence aids"
    assert shard.failure_reason[k_big].startswith(b"implausible: |I| ")
    assert set(shard.failure_reason[~expected_failed].tolist()) == {b""}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["2 of 4 samples failed (1 did not converge after all convergence aids, 1 implausible); "
                      "they are marked in /failed with /failure_reason"]
