"""Read power of the SPICE stage (/p_w and its parts), checked against independent computations: the ideal
formula, the nodal solver's element-by-element dissipation, and ngspice's own source currents."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch

from dnn.mvm import IdealTileMVM, PoweredTileMVM, TransferTileMVM
from spice import netlist, ngspice, nodal, power
from spice.circuit import CircuitError, spec_from_config
from spice.cli import main as spice_main
from spice.io import read_dataset, summary
from spice.sampling import SamplingConfig
from spice.simulate import simulate_shard
from spice.tile import DEFAULT_T_READ_S, Tile, TileError
from tests.conftest import CIRCUITS

IDEAL_ENDS = {"r_driver_ohm": 0.0, "r_sense_ohm": 0.0, "r_wire_row_ohm": 0.0, "r_wire_col_ohm": 0.0}


def ideal_w(v_v: np.ndarray, g_s: np.ndarray) -> np.ndarray:
    """sum over cells of v_r^2 G_rc per sample (W)."""
    return np.einsum("nr,nrc->n", v_v ** 2, g_s)


@pytest.mark.parametrize("solver", ["auto", "sweep"])
def test_ideal_linear_array_draws_sum_v2g(make_spec, solver):
    """Ideal ends, no wire resistance: every watt is the cells', v^2 G, on both solver paths."""
    spec = make_spec(rows=6, cols=5, v_read_min_v=-0.2, **IDEAL_ENDS)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=2, n_vectors=8, seed=3, solver=solver), 0,
                           progress=False)
    assert not shard.failed.any() and set(shard.solver.tolist()) == {b"superposition" if solver == "auto" else b"sweep"}
    expected = ideal_w(shard.v_v, shard.g_s[shard.g_index])
    np.testing.assert_allclose(shard.p_w, expected, rtol=1e-9, atol=0)
    np.testing.assert_allclose(shard.p_parts_w[:, 0], expected, rtol=1e-9, atol=0)
    assert np.all(shard.p_parts_w[:, 1:] == 0.0)


@pytest.mark.parametrize("solver", ["auto", "sweep"])
def test_with_wires_driver_and_sense_the_power_is_every_elements_dissipation(make_spec, solver):
    """p_w and each part against the nodal solver's independent element-by-element sum, to 1e-6."""
    spec = make_spec(rows=6, cols=5, r_driver_ohm=500.0, r_sense_ohm=300.0, r_wire_row_ohm=20.0,
                     r_wire_col_ohm=30.0, v_read_min_v=-0.1)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=2, n_vectors=8, seed=4, solver=solver), 0,
                           progress=False)
    assert not shard.failed.any()
    for k in range(2):
        rows = shard.g_index == k
        p_src, parts = nodal.element_powers(spec, shard.g_s[k], shard.v_v[rows])
        np.testing.assert_allclose(shard.p_w[rows], p_src, rtol=1e-6, atol=0)
        np.testing.assert_allclose(shard.p_parts_w[rows], parts, rtol=0, atol=1e-6 * p_src.max())
        # the nodal reference conserves energy itself, and every part matters here
        np.testing.assert_allclose(parts.sum(1), p_src, rtol=1e-9)
        assert np.all(parts.mean(0) > 1e-4 * p_src.mean())
    assert np.max(power.residuals(shard.p_w, shard.p_parts_w)) < power.CONSERVATION_RTOL
    ideal = ideal_w(shard.v_v, shard.g_s[shard.g_index])
    assert np.max(np.abs(ideal - shard.p_w) / shard.p_w) > 0.05  # the ideal formula misses the loading


def direct_source_power_w(spec, g: np.ndarray, v_v: np.ndarray) -> np.ndarray:
    """sum_r v_r I(vin_r): each vector solved alone with DC row sources, their branch currents from ngspice."""
    out = []
    for v in v_v:
        names = [f"vin{r}#branch" for r in range(spec.rows)]
        text = netlist.build_netlist(spec, g, v[None], ngspice.info().has_klu)
        assert all(f"vin{r} in{r} 0" in text for r in range(spec.rows))
        currents = ngspice.run_netlist(text, "op", names)
        out.append(-sum(v[r] * float(np.atleast_1d(currents[name])[0]) for r, name in enumerate(names)))
    return np.array(out)


@pytest.mark.parametrize("wires", [(5.0, 5.0), (0.0, 5.0), (5.0, 0.0)], ids=["both", "column-only", "row-only"])
def test_a_sinh_array_against_ngspices_own_source_currents(make_spec, wires):
    """A non-linear cell: the swept (Norton-driven) solve's power equals sum v I(source) measured directly."""
    spec = make_spec(netlist=str(CIRCUITS / "memristor_sinh.cir"), rows=5, cols=4, r_driver_ohm=1000.0,
                     r_sense_ohm=1000.0, r_wire_row_ohm=wires[0], r_wire_col_ohm=wires[1], v_read_max_v=0.6)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=1, n_vectors=6, seed=5), 0, progress=False)
    assert shard.solver.tolist() == [b"sweep"] and not shard.failed.any()
    direct = direct_source_power_w(spec, shard.g_s[0], shard.v_v)
    np.testing.assert_allclose(shard.p_w, direct, rtol=1e-6, atol=0)
    assert np.max(power.residuals(shard.p_w, shard.p_parts_w)) < power.CONSERVATION_RTOL
    # the sinh cell draws more than its small-signal conductance says at 0.6 V
    linear = dataclasses.replace(spec, netlist_path=str(CIRCUITS / "resistive.cir"),
                                 netlist_text=(CIRCUITS / "resistive.cir").read_text())
    assert np.all(shard.p_w > nodal.element_powers(linear, shard.g_s[0], shard.v_v)[0])
    assert "Kirchhoff" in power.probes_for(spec, 6).cells_from


def test_a_sample_whose_energy_does_not_balance_is_failed(make_spec, monkeypatch):
    """A node voltage off by 1 mV (a solve that is not a solution): source power != dissipation."""
    spec = make_spec(rows=4, cols=3)
    real = ngspice.solve_probed

    def solve(spec_, g_, v_, probes):
        i, failed, values = real(spec_, g_, v_, probes)
        values = values.copy()
        values[1, list(probes(len(v_))).index("a0_1")] += 1e-3
        return i, failed, values

    monkeypatch.setattr("spice.simulate.ngspice.solve_probed", solve)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=1, n_vectors=3, solver="sweep"), 0, progress=False)
    assert shard.failed.tolist() == [False, True, False]
    assert shard.failure_reason[1].startswith(b"energy: source power ") and b"sum of dissipations" in shard.failure_reason[1]
    assert np.isnan(shard.p_w[1]) and np.isnan(shard.i_a[1]).all() and np.isfinite(shard.p_w[[0, 2]]).all()


def test_the_dataset_file_carries_power_with_units_and_part_names(tmp_path):
    circuit = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 4, "cols": 3, "t_read_s": 5e-9}
    path = tmp_path / "d.h5"
    assert spice_main(["simulate", "--circuit", json.dumps(circuit), "--sampling", '{"n_conductance": 2, "n_vectors": 4}',
                       "--out", str(path), "--quiet"]) == 0
    ds = read_dataset(path)
    with h5py.File(path) as f:
        assert f.attrs["format_version"] == 4
        assert f["p_w"].attrs["units"] == "W" and f["p_parts_w"].attrs["units"] == "W"
        assert f["p_parts_w"].attrs["parts"] == "cells,row_wires,col_wires,driver,sense"
        assert f.attrs["power_cells_from"].startswith("g dV^2")
    assert ds.spec.t_read_s == 5e-9 and ds.p_w.shape == (8,) and ds.p_parts_w.shape == (8, 5)
    for k in range(2):
        rows = ds.g_index == k
        np.testing.assert_allclose(ds.p_w[rows], nodal.element_powers(ds.spec, ds.g_s[k], ds.v_v[rows])[0], rtol=1e-6)
    assert "energy per read at t_read_s = 5e-09 s" in summary(path)


def test_a_changed_power_value_breaks_the_integrity_record(tmp_path):
    circuit = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 3, "cols": 2}
    path = tmp_path / "d.h5"
    assert spice_main(["simulate", "--circuit", json.dumps(circuit), "--sampling", '{"n_conductance": 1, "n_vectors": 2}',
                       "--out", str(path), "--quiet"]) == 0
    with h5py.File(path, "r+") as f:
        f["p_w"][0] = f["p_w"][0] * 2.0
    from spice.io import DatasetFileError

    with pytest.raises(DatasetFileError, match="d.h5"):
        read_dataset(path)


def test_tia_sense_power_is_conserved(make_spec):
    """A sense subcircuit (op-amp TIA, virtual ground): its power is V(s) i, and the balance holds."""
    spec = make_spec(netlist=str(CIRCUITS / "tia_sense.cir"), rows=4, cols=3)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=1, n_vectors=4, seed=1), 0, progress=False)
    assert not shard.failed.any()
    assert np.max(power.residuals(shard.p_w, shard.p_parts_w)) < power.CONSERVATION_RTOL
    assert np.all(np.abs(shard.p_parts_w[:, 4]) < 1e-3 * shard.p_w)  # the virtual ground takes ~nothing


# ------------------------------------------------------------------ quadratic forms and the tile protocol
def test_input_admittance_and_part_forms_match_the_element_sums(make_spec):
    spec = make_spec(rows=5, cols=4, r_driver_ohm=300.0, r_sense_ohm=200.0, r_wire_row_ohm=10.0, r_wire_col_ohm=7.0)
    rng = np.random.default_rng(0)
    g = rng.uniform(spec.g_off_s, spec.g_on_s, (5, 4))
    v = rng.uniform(-0.2, 0.2, (7, 5))
    p_src, parts = nodal.element_powers(spec, g, v)
    y = nodal.input_admittance(spec, g)
    q = nodal.power_quadratic_forms(spec, g)
    np.testing.assert_allclose(np.einsum("nr,rs,ns->n", v, y, v), p_src, rtol=1e-9)
    np.testing.assert_allclose(np.einsum("nr,prs,ns->np", v, q, v), parts, rtol=1e-9, atol=1e-9 * p_src.max())
    np.testing.assert_allclose(y, y.T, rtol=0, atol=1e-12 * np.abs(y).max())


def test_tile_models_bind_power(make_spec):
    spec = make_spec(rows=5, cols=4)
    rng = np.random.default_rng(1)
    g = torch.tensor(rng.uniform(spec.g_off_s, spec.g_on_s, (2, 5, 4)))
    v = torch.tensor(rng.uniform(-0.2, 0.2, (2, 3, 5)))
    ideal = IdealTileMVM.of(spec.tile)
    assert isinstance(ideal, PoweredTileMVM) and ideal.power_model == "ideal v^2 G"
    np.testing.assert_allclose(ideal.bind_power(g)(v).numpy(), torch.einsum("tbr,trc->tb", v ** 2, g).numpy(), rtol=1e-12)
    exact = TransferTileMVM.of(spec.tile, transfer_fn=lambda gs: np.stack([nodal.transfer_matrix(spec, x) for x in gs]),
                               admittance_fn=lambda gs: np.stack([nodal.input_admittance(spec, x) for x in gs]))
    assert isinstance(exact, PoweredTileMVM) and exact.power_model == "exact nodal"
    p = exact.bind_power(g)(v)
    assert p.shape == (2, 3)
    for t in range(2):
        np.testing.assert_allclose(p[t].numpy(), nodal.element_powers(spec, g[t].numpy(), v[t].numpy())[0], rtol=1e-9)
    without = TransferTileMVM.of(spec.tile, transfer_fn=lambda gs: gs)
    with pytest.raises(ValueError, match="no admittance function"):
        without.bind_power(g)


# ------------------------------------------------------------------ t_read_s and wire capacitance
def test_t_read_s_default_and_record():
    tile = Tile(rows=2, cols=2, g_off_s=1e-6, g_on_s=1e-5, v_read_min_v=0.0, v_read_max_v=0.2, r_driver_ohm=0.0,
                r_sense_ohm=0.0, r_wire_row_ohm=0.0, r_wire_col_ohm=0.0)
    assert tile.t_read_s == DEFAULT_T_READ_S == 10e-9
    record = tile.to_dict()
    assert Tile.from_dict(record) == tile
    older = {k: v for k, v in record.items() if k != "t_read_s"}  # a record written before the field
    assert Tile.from_dict(older).t_read_s == DEFAULT_T_READ_S
    assert Tile.from_dict({**record, "t_read_s": 2e-9}).t_read_s == 2e-9
    for bad in (0.0, -1e-9, "1e-9", True, float("nan")):
        with pytest.raises(TileError, match="t_read_s"):
            Tile.from_dict({**record, "t_read_s": bad})
    assert IdealTileMVM.of(dataclasses.replace(tile, t_read_s=3e-9)).t_read_s == 3e-9


@pytest.mark.parametrize("key, value", [("t_read_s", 0), ("t_read_s", -1e-9), ("t_read_s", "10ns"),
                                        ("t_read_s", None), ("c_wire_row_f", -1e-15), ("c_wire_col_f", "1fF")])
def test_a_bad_read_time_or_capacitance_names_the_key(key, value):
    entry = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 2, "cols": 2, key: value}
    with pytest.raises(CircuitError, match=f"circuit 'c': {key} must be a number"):
        spec_from_config("c", entry)


@pytest.mark.e2e
@pytest.mark.parametrize("key, value, needle", [
    ("t_read_s", 0, "circuits.tiny.t_read_s: 0 is less than or equal to the minimum of 0"),
    ("t_read_s", "10ns", "circuits.tiny.t_read_s: '10ns' is not of type 'number'"),
    ("c_wire_row_f", -1e-15, "circuits.tiny.c_wire_row_f: -1e-15 is less than the minimum of 0"),
], ids=["t-read-zero", "t-read-string", "c-negative"])
def test_snakemake_dry_run_refuses_a_bad_read_time_or_capacitance(tmp_path, key, value, needle):
    import copy

    import yaml

    from tests.test_trust_config_workflow import TEST_CONFIG, assert_refused, dry_run

    config = copy.deepcopy(TEST_CONFIG)
    config["circuits"]["tiny"][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert_refused(dry_run(path, "--replace-workflow-config"), needle)


def test_a_driver_subcircuit_gets_the_power_flowing_into_it(make_spec, tmp_path):
    """A driver subcircuit (here a plain resistor in one): the source current is its branch current, the
    driver's power what flows into it; the same numbers as the built-in driver resistor."""
    path = tmp_path / "drv.cir"
    path.write_text((CIRCUITS / "resistive.cir").read_text()
                    + "\n.subckt driver in out params: r=1e3\nR1 in out {r}\n.ends driver\n")
    cfg = SamplingConfig(n_conductance=1, n_vectors=5, seed=2, solver="sweep")
    custom = simulate_shard(make_spec(netlist=str(path)), cfg, 0, progress=False)
    plain = simulate_shard(make_spec(), cfg, 0, progress=False)
    assert power.probes_for(make_spec(netlist=str(path)), 5).source_branch
    assert not custom.failed.any()
    np.testing.assert_allclose(custom.p_w, plain.p_w, rtol=1e-8)
    np.testing.assert_allclose(custom.p_parts_w, plain.p_parts_w, rtol=1e-7, atol=1e-12 * plain.p_w.max())


@pytest.mark.parametrize("cell, extra", [("one_t_one_r.cir", {"v_gate_v": 1.8}), ("one_s_one_r.cir", {})])
def test_non_linear_cells_conserve_energy(make_spec, cell, extra):
    """Cells whose current comes from Kirchhoff's law along the row wire: the balance holds on real solves."""
    spec = make_spec(netlist=str(CIRCUITS / cell), rows=4, cols=3, v_read_max_v=0.6, **extra)
    shard = simulate_shard(spec, SamplingConfig(n_conductance=2, n_vectors=4, seed=3), 0, progress=False)
    assert not shard.failed.any() and "row wire" in power.probes_for(spec, 4).cells_from
    assert np.nanmax(power.residuals(shard.p_w, shard.p_parts_w)) < power.CONSERVATION_RTOL
    assert np.all(shard.p_parts_w >= 0)
