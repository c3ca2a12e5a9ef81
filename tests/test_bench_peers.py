"""bench/peers.py without the peers' environment: every peer is a missing row with its reason, the
peers' subprocess protocol runs (in this interpreter, where no peer is installed), and the figures of
the xbarchar rows agree with an independent computation on the same ngspice samples.

No wall-clock time is asserted.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def bench():
    """bench/peers.py imported as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_peers", REPO / "bench" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module  # dataclasses look their module up while the script executes
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_peers", None)


@pytest.fixture(autouse=True)
def restore_threads_and_alarm():
    """The bench limits BLAS/OpenMP and torch to one thread and installs a SIGALRM handler in its own
    process; give the rest of the test session back what it had."""
    import signal

    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    torch_threads = torch.get_num_threads()
    pools = {(p["user_api"], p["num_threads"]) for p in threadpool_info()}
    handler = signal.getsignal(signal.SIGALRM)
    yield
    torch.set_num_threads(torch_threads)
    for user_api, n in pools:
        threadpool_limits(limits=n, user_api=user_api)
    signal.signal(signal.SIGALRM, handler)


def _tiny_case(bench, rows=4, cols=3, n_g=2, n_v=5, seed=0):
    rng = np.random.default_rng(seed)
    spec = {"rows": rows, "cols": cols, "r_driver_ohm": 0.0, "r_sense_ohm": 0.0, "r_wire_row_ohm": 0.0,
            "r_wire_col_ohm": 5.0, "g_on_s": 5e-5, "g_off_s": 5e-6, "v_read_max_v": 0.2, "v_read_min_v": 0.0}
    g_s = rng.uniform(5e-6, 5e-5, (n_g, rows, cols))
    g_index = np.repeat(np.arange(n_g), n_v)
    v_v = rng.uniform(0.0, 0.2, (n_g * n_v, rows))
    i_a = np.einsum("nr,nrc->nc", v_v, g_s[g_index])
    return {"spec": spec, "g_s": g_s, "g_index": g_index, "v_v": v_v, "i_a": i_a,
            "full_scale_a": 5e-5 * 0.2 * rows}


def test_missing_environment_gives_a_missing_row_per_peer_and_array(bench, tmp_path):
    case_data = {"a": _tiny_case(bench), "b": _tiny_case(bench, seed=1)}
    rows, preds, meta = bench.run_peers(case_data, tmp_path / "no-such-env" / "python", timeout_s=60,
                                        min_seconds=0.0)
    assert {(r.model, r.case) for r in rows} == {(k, c) for k in bench.PEERS for c in case_data}
    assert all(r.status == "missing" for r in rows)
    assert all("make peers" in r.reason and "no-such-env" in r.reason for r in rows)
    assert preds == {} and meta == {}


def test_worker_reports_uninstalled_peers_with_the_import_error(bench):
    """The project's own interpreter has none of the peers: the worker runs and names each failed import."""
    case_data = {"a": _tiny_case(bench)}
    rows, _, meta = bench.run_peers(case_data, sys.executable, timeout_s=120, min_seconds=0.0)
    by_model = {r.model: r for r in rows}
    assert set(by_model) == set(bench.PEERS)
    for key, row in by_model.items():
        try:  # a peer that happens to be installed here may run; one that is not must say why
            __import__({"badcrossbar": "badcrossbar.compute", "crosssim": "simulator",
                        "crosssim_fixed": "simulator", "crosssim_tight": "simulator"}.get(key, "aihwkit"))
        except ImportError:
            assert row.status == "missing", key
            assert "import" in row.reason and "failed" in row.reason, row.reason
    assert "aihwkit" in meta["versions"] and "CrossSim" in meta["versions"]


def test_worker_keeps_going_past_a_missing_and_a_raising_peer(bench, tmp_path, monkeypatch):
    """In-process worker with stand-in peers: one fails to import, one raises on every array, one runs."""

    class Missing(bench.Peer):
        def load(self):
            raise bench.PeerMissing("stand-in: `import nothing` failed")

    class Raises(bench.Peer):
        def load(self):
            pass

        def predictor(self, spec):
            raise RuntimeError("stand-in: cannot map this array")

    class Ideal(bench.Peer):
        def load(self):
            pass

        def predictor(self, spec):
            return (*bench.ideal_predictor(), "v @ G")

    monkeypatch.setattr(bench, "peer_adapters",
                        lambda: {"aihwkit_ir_drop": Missing(), "badcrossbar": Raises(), "crosssim": Ideal()})
    case_data = {"a": _tiny_case(bench), "b": _tiny_case(bench, seed=1)}
    bench.write_cases(tmp_path / "in.npz", case_data)
    assert bench.worker(tmp_path / "in.npz", tmp_path / "out.npz", min_seconds=0.0) == 0
    rows, preds, _ = bench.read_results(tmp_path / "out.npz")
    status = {(r.model, r.case): (r.status, r.reason) for r in rows}
    assert status[("aihwkit_ir_drop", "a")] == ("missing", "stand-in: `import nothing` failed")
    assert status[("badcrossbar", "b")] == ("failed", "RuntimeError: stand-in: cannot map this array")
    assert status[("crosssim", "a")][0] == status[("crosssim", "b")][0] == "ok"
    assert np.allclose(preds["crosssim/b"], case_data["b"]["i_a"], rtol=1e-12, atol=0)


def test_run_predictor_and_score_match_an_independent_computation(bench):
    d = _tiny_case(bench, rows=6, cols=5, n_g=3, n_v=7)
    truth = d["i_a"] * (1.0 - 0.01 * np.arange(5))  # a stand-in ground truth: 0-4% lower per column
    prepare, apply = bench.ideal_predictor()
    pred, timing = bench.run_predictor(prepare, apply, d["g_s"], d["g_index"], d["v_v"], 5, min_seconds=0.0)
    assert timing["n_done"] == len(d["v_v"]) and timing["mvm_per_s"] > 0
    row = bench.score(bench.Row("ideal", "a", "ok"), pred, truth, d["full_scale_a"])
    err = d["i_a"] - truth  # d["i_a"] is v @ G, computed with einsum when the case was made
    assert math.isclose(row.rel_rms_fs, float(np.sqrt(np.mean(err ** 2))) / d["full_scale_a"], rel_tol=1e-9)
    assert math.isclose(row.worst_abs_fs, float(np.abs(err).max()) / d["full_scale_a"], rel_tol=1e-9)


def test_time_budget_leaves_unreached_matrices_unpredicted(bench):
    d = _tiny_case(bench, n_g=3)
    pred, timing = bench.run_predictor(*bench.ideal_predictor(), d["g_s"], d["g_index"], d["v_v"], 3,
                                       min_seconds=0.0, budget_s=0.0)
    done = np.all(np.isfinite(pred), axis=1)
    assert timing["n_done"] == done.sum() == 5  # the first matrix only
    assert np.array_equal(done, d["g_index"] == 0)


@pytest.mark.spice
def test_quick_run_on_one_array_without_peers(bench, tmp_path):
    """A real run (ngspice, training) on the smallest array: the ideal row equals v @ G against the
    ngspice currents computed here again, the transfer surrogate beats it, and the peers are missing rows."""
    result = bench.run(quick=True, peers_python=tmp_path / "none" / "python", peers_timeout_s=60, min_seconds=0.0,
                       only_cases=["col_wires"], designs=("transfer",))
    rows = {r["model"]: r for r in result["rows"]}
    assert {"ideal", "transfer", "nodal", "ngspice"} <= set(rows)
    assert all(rows[k]["status"] == "missing" and rows[k]["reason"] for k in bench.PEERS)

    from spice import ngspice
    from spice.circuit import spec_from_config

    case = next(c for c in bench.cases(quick=True) if c.name == "col_wires")
    spec = spec_from_config(case.name, case.entry, base_dir=REPO)
    b = bench.budget(spec.rows, quick=True)
    test_ds, _ = bench.simulate(spec, b.n_test_g, b.n_vectors, seed=1001, check=ngspice.check_circuit(spec))
    ideal = np.einsum("nr,nrc->nc", test_ds.v_v, test_ds.g_s[test_ds.g_index])
    expected = np.sqrt(np.mean((ideal - test_ds.i_a) ** 2)) / (spec.g_on_s * spec.v_read_max_v * spec.rows)
    assert math.isclose(rows["ideal"]["rel_rms_fs"], expected, rel_tol=1e-9)
    assert rows["nodal"]["rel_rms_fs"] < 1e-9
    assert rows["transfer"]["rel_rms_fs"] < rows["ideal"]["rel_rms_fs"]
    assert "missing" in result["table_markdown"] and "make peers" in result["table_markdown"]
