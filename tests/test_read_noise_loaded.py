"""Per-read noise of cells loaded by the array (dnn.noise.loaded_read_noise_*), against conductances redrawn
for every read and solved exactly (spice.exact.ArraySolver), and through a crossbar layer."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from dnn import evaluate as dnn_evaluate
from dnn.config import CrossbarConfig
from dnn.layers import CrossbarLinear
from dnn.mvm import NoisePhysics, SolverTileMVM, TransferTileMVM
from dnn.noise import chord_polynomial, loaded_noise_maps, loaded_read_noise_std
from spice import exact, nodal
from spice.circuit import spec_from_config
from tests.conftest import CIRCUITS

F64 = torch.float64


def _spec(**extra):
    entry = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 16, "cols": 12, "r_driver_ohm": 1000.0,
             "r_wire_row_ohm": 5.0, "r_wire_col_ohm": 5.0, "r_sense_ohm": 1000.0, **extra}
    return spec_from_config("t", entry)


def _problem(spec, n_vectors=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    g = spec.g_off_s + (spec.g_on_s - spec.g_off_s) * torch.rand(1, spec.rows, spec.cols, generator=gen, dtype=F64)
    v = spec.v_read_max_v * torch.rand(1, n_vectors, spec.rows, generator=gen, dtype=F64)
    return g, v * (torch.rand(v.shape, generator=gen, dtype=F64) >= 0.3), gen


def _redrawn_std(spec, g, v, sigma, draws, gen):
    """Column-current std over `draws` reads of each vector, every read with its own conductances."""
    solver = exact.ArraySolver(spec, exact.cell_model(spec), g)
    factor = 1.0 + sigma * torch.randn((1, v.shape[1] * draws) + tuple(g.shape[1:]), generator=gen, dtype=F64)
    i = solver.currents(v.repeat_interleave(draws, 1), factor)[0]
    return i.reshape(v.shape[1], draws, -1).std(1), solver


def _transfer(solver, spec, g):
    return solver.currents(torch.eye(spec.rows, dtype=F64)[None] * spec.v_read_max_v)[0] / spec.v_read_max_v


def _chord(solver, spec):
    eye = torch.eye(spec.rows, dtype=F64)[None]
    return chord_polynomial(lambda u: solver.currents(eye * u) / u, spec.v_read_max_v)


@pytest.mark.parametrize("netlist, extra", [("resistive.cir", {}), ("memristor_sinh.cir", {"v_read_max_v": 0.2}),
                                            ("memristor_sinh.cir", {"v_read_max_v": 0.5})])
def test_loaded_noise_follows_redrawn_conductances(netlist, extra):
    """The 1 kOhm driver and sense load the cells: redrawn conductances spread the column currents less
    than the unloaded approximation says (~1.25x at 16x12); the loaded one is within 10% (median), and
    within 6% with the 5th-95th percentile band inside 25% for the sinh cell at 0.5 V, whose share of
    the current grows with the voltage it reads (the chord polynomial; without it, 10% too high)."""
    spec = _spec(netlist=str(CIRCUITS / netlist), **extra)
    g, v, gen = _problem(spec)
    sigma = 0.1
    reference, solver = _redrawn_std(spec, g, v, sigma, 300, gen)
    t = _transfer(solver, spec, g)
    unloaded = sigma * ((v[0] ** 2) @ (t * t)).sqrt()
    chord = _chord(solver, spec)
    assert (chord is None) == (netlist == "resistive.cir")
    maps = loaded_noise_maps(t[None], g, spec.r_driver_ohm, spec.r_sense_ohm, chord)
    loaded = loaded_read_noise_std(v, solver.currents(v), maps, sigma)[0]
    keep = reference > 0.05 * reference.max()
    assert float((unloaded / reference)[keep].median()) > 1.15
    ratio = (loaded / reference)[keep]
    assert abs(float(ratio.median()) - 1.0) < 0.1
    if extra.get("v_read_max_v") == 0.5:
        no_chord = loaded_read_noise_std(v, solver.currents(v), loaded_noise_maps(t[None], g, spec.r_driver_ohm,
                                                                                  spec.r_sense_ohm), sigma)[0]
        assert abs(float(ratio.median()) - 1.0) < 0.06
        assert float(ratio.quantile(0.05)) > 0.75 and float(ratio.quantile(0.95)) < 1.25
        assert float((no_chord / reference)[keep].median()) > float(ratio.median()) + 0.05


def test_chord_polynomial_of_a_sinh_cell():
    """Without driver, sense and wires, each cell reads its row voltage: (T(u) / T(v_max))^2 of the sinh
    cell is (sinh(b u) / (b u))^2 / (sinh(b v_max) / (b v_max))^2, which the fit follows within 3%."""
    spec = _spec(netlist=str(CIRCUITS / "memristor_sinh.cir"), v_read_max_v=0.5, r_driver_ohm=0.0, r_sense_ohm=0.0,
                 r_wire_row_ohm=0.0, r_wire_col_ohm=0.0)
    g, _, _ = _problem(spec)
    q0, q2, q4 = _chord(exact.ArraySolver(spec, exact.cell_model(spec), g), spec)
    b = exact.cell_model(spec).b_per_v
    u = torch.linspace(0.05, 0.5, 10, dtype=F64)
    chord = lambda x: torch.sinh(b * x) / (b * x)  # noqa: E731
    expected = (chord(u) / chord(torch.tensor(0.5, dtype=F64))) ** 2
    fitted = q0[0, 3, 2] + q2[0, 3, 2] * u**2 + q4[0, 3, 2] * u**4
    torch.testing.assert_close(fitted, expected, rtol=0.03, atol=0)


def test_without_driver_and_sense_loaded_noise_is_the_unloaded_one():
    """No driver or sense resistance: each cell reads its row voltage and the loaded noise equals
    sigma sqrt(sum_i (v_i T_ij)^2) with the wire-aware transfer matrix."""
    spec = _spec(r_driver_ohm=0.0, r_sense_ohm=0.0)
    g, v, _ = _problem(spec)
    t = torch.as_tensor(nodal.transfer_matrix(spec, g[0].numpy()))[None]
    i = torch.bmm(v, t)
    maps = loaded_noise_maps(t, g, 0.0, 0.0)
    std = loaded_read_noise_std(v, i, maps, 0.2)
    torch.testing.assert_close(std, 0.2 * torch.bmm(v * v, t * t).sqrt(), rtol=1e-6, atol=0)


def test_loaded_noise_is_zero_without_input_and_scales_with_sigma():
    spec = _spec()
    g, v, _ = _problem(spec)
    t = torch.as_tensor(nodal.transfer_matrix(spec, g[0].numpy()))[None]
    maps = loaded_noise_maps(t, g, spec.r_driver_ohm, spec.r_sense_ohm)
    i = torch.bmm(v, t)
    assert torch.equal(loaded_read_noise_std(torch.zeros_like(v), torch.zeros_like(i), maps, 0.1),
                       torch.zeros_like(i))
    torch.testing.assert_close(loaded_read_noise_std(v, i, maps, 0.3), 3 * loaded_read_noise_std(v, i, maps, 0.1))


def test_loaded_noise_std_is_the_direct_sum_over_cells():
    """The folded form (row rise and the expanded square, in float32) against the definition summed cell by
    cell in float64: sigma sqrt(sum_i w_ij^2 (a_i - s_j)^2), a_i = (v_i + r_d sum_k g_ik s_k) / (1 + r_d sum_k g_ik).
    float32 terms of either sign cancel in the expanded square: a tolerance of a few hundred float32 eps."""
    spec = _spec()
    g, v, _ = _problem(spec, n_vectors=16)
    t = torch.as_tensor(nodal.transfer_matrix(spec, g[0].numpy()))[None]
    i = torch.bmm(v, t)
    maps = loaded_noise_maps(t, g, spec.r_driver_ohm, spec.r_sense_ohm)
    folded = loaded_read_noise_std(v.float(), i.float(), dataclasses.replace(
        maps, w_sq=maps.w_sq.float(), w_col=maps.w_col.float(), row_rise=maps.row_rise.float(),
        row_scale=maps.row_scale.float()), 0.2)
    g64, v64, i64 = g.double(), v.double(), i.double()
    s = spec.r_sense_ohm * i64
    a = (v64 + spec.r_driver_ohm * torch.einsum("tbc,trc->tbr", s, g64)) / (1 + spec.r_driver_ohm * g64.sum(-1))[:, None]
    w_sq = maps.w_sq.double()
    direct = 0.2 * torch.einsum("trc,tbrc->tbc", w_sq, (a[..., :, None] - s[..., None, :]) ** 2).sqrt()
    torch.testing.assert_close(folded.double(), direct, rtol=300 * torch.finfo(torch.float32).eps, atol=0)


@dataclasses.dataclass(frozen=True)
class LoadedLinearTile(TransferTileMVM):
    """The exact linear tile, stating its driver and sense resistances (as a transfer surrogate does)."""

    lines: tuple[float, float] = (0.0, 0.0)

    def line_resistances_ohm(self):
        return self.lines


@pytest.mark.parametrize("sigma", [0.1, 0.4])
def test_layer_per_read_noise_of_a_loaded_tile_model_is_the_redrawn_spread(sigma):
    """Through a crossbar layer (one 16x12 tile, no ADC): per-read noise of a tile model that states its
    line resistances has the spread of redrawn conductances solved exactly; without them, it is larger.
    At sigma 0.4 with clip_conductances on (the default), the redraws are still not clipped to the
    programmable range: a cell at g_off reads below it as often as above, as the modelled noise says."""
    torch.manual_seed(0)
    spec = _spec()
    tile = dict(rows=spec.rows, cols=spec.cols, g_off_s=spec.g_off_s, g_on_s=spec.g_on_s,
                v_read_max_v=spec.v_read_max_v)

    def transfer(g):
        return torch.stack([torch.as_tensor(nodal.transfer_matrix(spec, x)) for x in g]).numpy()

    solver_fn = lambda g_s: exact.ArraySolver(spec, exact.cell_model(spec), g_s)  # noqa: E731
    models = {"redrawn": TransferTileMVM(**tile, transfer_fn=transfer, noisy_solver_fn=solver_fn),
              "loaded": LoadedLinearTile(**tile, transfer_fn=transfer, lines=(spec.r_driver_ohm, spec.r_sense_ohm)),
              "unloaded": TransferTileMVM(**tile, transfer_fn=transfer)}
    lin = nn.Linear(16, 6, bias=False).double()
    cfg = CrossbarConfig(analog_layers="all", adc_bits=0, read_noise_sigma=sigma, read_noise_mode="per_read", seed=2)
    x = torch.rand(1, 16, dtype=F64).expand(1500, 16).contiguous()
    with torch.no_grad():
        std = {k: CrossbarLinear.from_float(lin, cfg, m, name="fc")(x).std(0) for k, m in models.items()}
    ratio = {k: float((std[k] / std["redrawn"]).median()) for k in ("loaded", "unloaded")}
    assert cfg.clip_conductances and abs(ratio["loaded"] - 1.0) < 0.07, ratio
    assert ratio["unloaded"] > 1.1, ratio


@dataclasses.dataclass(frozen=True)
class StatedSolverTile(SolverTileMVM):
    """An exact non-linear tile read without redraws, stating line resistances and, optionally, the
    circuit's physics for its noise inputs (as ``dnn.evaluate.surrogate_tile_model`` attaches them)."""

    lines: tuple[float, float] = (0.0, 0.0)
    noise_physics: NoisePhysics | None = None

    def line_resistances_ohm(self):
        return self.lines


def test_layer_per_read_noise_inputs_come_from_the_circuits_physics():
    """Sinh cell at 0.5 V through a crossbar layer: a tile model that misstates its line resistances
    (1 ohm each: barely loaded) gets noise well off the redrawn spread; with the circuit's physics
    attached (``noise_physics``, what a surrogate of a cell that spice.exact solves gets), the one-row
    responses and the resistances come from the exact solve and the spread is within 12% (median of six
    outputs of one input vector; the chord polynomial is a fit)."""
    torch.manual_seed(0)
    spec = _spec(netlist=str(CIRCUITS / "memristor_sinh.cir"), v_read_max_v=0.5)
    tile = dict(rows=spec.rows, cols=spec.cols, g_off_s=spec.g_off_s, g_on_s=spec.g_on_s,
                v_read_max_v=spec.v_read_max_v)
    solver_fn = lambda g_s: exact.ArraySolver(spec, exact.cell_model(spec), g_s)  # noqa: E731
    physics = dnn_evaluate.noise_physics(spec)
    assert physics is not None and physics.source == "spice.exact sinh"
    assert (physics.r_driver_ohm, physics.r_sense_ohm) == (spec.r_driver_ohm, spec.r_sense_ohm)
    models = {"redrawn": SolverTileMVM(**tile, solver_fn=solver_fn),
              "misstated": StatedSolverTile(**tile, solver_fn=solver_fn, noisy_reads=False, lines=(1.0, 1.0)),
              "physics": StatedSolverTile(**tile, solver_fn=solver_fn, noisy_reads=False, lines=(1.0, 1.0),
                                          noise_physics=physics)}
    lin = nn.Linear(16, 6, bias=False).double()
    cfg = CrossbarConfig(analog_layers="all", adc_bits=0, read_noise_sigma=0.1, read_noise_mode="per_read", seed=2)
    x = torch.rand(1, 16, dtype=F64).expand(1500, 16).contiguous()
    with torch.no_grad():
        std = {k: CrossbarLinear.from_float(lin, cfg, m, name="fc")(x).std(0) for k, m in models.items()}
    ratio = {k: float((std[k] / std["redrawn"]).median()) for k in ("misstated", "physics")}
    assert abs(ratio["physics"] - 1.0) < 0.12, ratio
    assert abs(ratio["misstated"] - 1.0) > 0.3, ratio


@pytest.mark.parametrize("netlist, expected", [("resistive.cir", None), ("tia_sense.cir", None),
                                               ("one_t_one_r.cir", "spice.exact 1t1r"),
                                               ("one_s_one_r.cir", "spice.exact 1s1r")])
def test_noise_physics_only_for_non_linear_cells_the_exact_solver_knows(netlist, expected):
    """Linear cells keep the surrogate's own (fitted) transfer matrix; a circuit spice.exact cannot solve
    keeps the surrogate's inputs too."""
    extra = {"v_gate_v": 1.8} if netlist == "one_t_one_r.cir" else {}
    physics = dnn_evaluate.noise_physics(_spec(netlist=str(CIRCUITS / netlist), **extra))
    assert (physics.source if physics else None) == expected


def test_no_noise_physics_for_a_cell_the_exact_solver_cannot_solve(tmp_path):
    path = tmp_path / "diode_cell.cir"
    path.write_text(".subckt cell row col params: g=1e-5\nR1 row mid {1/g}\nD1 mid col dmod\n.ends cell\n"
                    ".model dmod d is=1e-9\n")
    assert dnn_evaluate.noise_physics(_spec(netlist=str(path))) is None
