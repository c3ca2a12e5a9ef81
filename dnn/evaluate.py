"""The evaluation engine: a trained model on crossbar tiles, per mitigation method, over seeds.

``python -m dnn evaluate`` and ``bench/bench_dnn.py`` both call this module; the CLI only parses
arguments, builds settings, calls :func:`evaluate_methods` and saves an
:class:`dnn.results.EvaluationResult`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from xbarchar.progress import Progress

from .checkpoint import SeedRecord
from .config import CrossbarConfig
from .convert import convert_to_crossbar
from .datasets import DatasetSplit
from .diagnostics import layer_pc2
from .energy import first_images, measure_energy
from .layers import calibrate_adc
from .mitigation import apply_method, method_variants
from .mvm import IdealTileMVM, NoisePhysics, SolverTileMVM, TileMVM, TransferTileMVM
from .results import MethodResult
from .settings import EvaluationSettings, starting_method
from .train import evaluate, make_loader

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- tile models
def tile_model_info(kind: str, mvm: TileMVM, **details: Any) -> dict[str, Any]:
    """A tile model's description for the result: its kind, its tile's fields (``Tile.to_dict``) and
    ``details`` (how it computes)."""
    return {"kind": kind, **mvm.tile.to_dict(), **details}


def ideal_tile_model(rows: int, cols: int, g_off_s: float, g_on_s: float, v_read_max_v: float
                     ) -> tuple[TileMVM, dict[str, Any]]:
    """i = v @ G on a tile of that size and range, and its description for the result."""
    mvm = IdealTileMVM(rows, cols, g_off_s, g_on_s, v_read_max_v)
    return mvm, tile_model_info("ideal", mvm)


def exact_tile_model(spec: Any, on_solve: Callable[[int, float], None] | None = None
                     ) -> tuple[TileMVM, dict[str, Any]]:
    """Exact array physics of circuit ``spec``, picked from its cell (``spice.exact.cell_model``).

    Linear resistive cell: one ``spice.nodal.transfer_matrix`` per tile at bind (:class:`TransferTileMVM`).
    The op-amp TIA sense of ``data/circuits/tia_sense.cir`` enters both solvers as its input resistance
    (``spice.exact.sense_resistance_ohm``).
    sinh, level-1 1T1R or diode-selector 1S1R cell: ``spice.exact.ArraySolver``, whose per-tile line factorizations are
    computed at bind and which solves the non-linear array for every input vector
    (:class:`SolverTileMVM`; gradients straight-through, see there). Any other cell, a custom
    driver or another sense subcircuit raises ``spice.exact.UnsupportedCircuitError`` naming the circuit file
    and pointing to :func:`spice_tile_model`. ``on_solve(tiles, seconds)`` is told the cost of every
    bind (benchmarks count it).

    With per-read noise (``read_noise_mode: per_read``) both read conductances redrawn for every
    input vector, solved exactly by ``spice.exact.ArraySolver`` (``bind_noisy``): the reference that the
    transfer-matrix noise of the other tile models approximates.

    The model's ``tile`` is the circuit's (``spec.tile``) with the sense resistance the solvers use, valid
    for row voltages of either sign.
    """
    from spice.exact import ArraySolver, LinearCell, cell_model, sense_resistance_ohm
    from spice.nodal import input_admittance, power_quadratic_forms, transfer_matrix

    cell = cell_model(spec)
    r_sense_ohm = sense_resistance_ohm(spec)  # the TIA sense: its virtual-ground input resistance
    tile = dataclasses.replace(spec.tile, r_sense_ohm=r_sense_ohm)  # the array both solvers solve
    if isinstance(cell, LinearCell):

        def transfer(g_s: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            out = np.stack([transfer_matrix(linear_spec, g) for g in g_s])
            if on_solve is not None:
                on_solve(len(g_s), time.perf_counter() - t0)
            return out

        linear_spec = spec if r_sense_ohm == spec.r_sense_ohm else dataclasses.replace(spec, r_sense_ohm=r_sense_ohm)
        def admittance(g_s: np.ndarray) -> np.ndarray:  # the read power's exact quadratic form v^T Y v
            return np.stack([input_admittance(linear_spec, g) for g in g_s])

        def power_forms(g_s: np.ndarray) -> np.ndarray:  # where it goes: v^T Q_part v per part
            return np.stack([power_quadratic_forms(linear_spec, g) for g in g_s])

        linear = TransferTileMVM.of(tile, transfer_fn=transfer, noisy_solver_fn=lambda g_s: ArraySolver(spec, cell, g_s),
                                    admittance_fn=admittance, power_forms_fn=power_forms)
        return linear, tile_model_info("exact", linear, cell=cell.kind, solver="nodal transfer matrix")

    def solver(g_s: torch.Tensor) -> ArraySolver:
        t0 = time.perf_counter()
        out = ArraySolver(spec, cell, g_s)
        if on_solve is not None:
            on_solve(len(g_s), time.perf_counter() - t0)
        return out

    newton = SolverTileMVM.of(tile, solver_fn=solver)
    return newton, tile_model_info("exact", newton, cell=cell.kind, solver="Newton (spice.exact)")


def spice_tile_model(spec: Any) -> tuple[TileMVM, dict[str, Any]]:
    """ngspice in the loop (``spice.inloop``): any circuit file, every MVM solved by ngspice.

    For small evaluations only (one ngspice run per tile per forward; each logs its cost). A 2x2 copy of
    the circuit is checked by ngspice in a child process first.
    """
    from spice.inloop import spice_array_fn

    mvm = SolverTileMVM.of(spec.tile, solver_fn=spice_array_fn(spec), noisy_reads=False)
    return mvm, tile_model_info("spice", mvm, solver="ngspice in the loop")


def surrogate_tile_model(path: str | Path, spec: Any | None) -> tuple[TileMVM, dict[str, Any]]:
    """A surrogate file (checked against ``spec`` when given) and its description for the result."""
    from surrogate.io import load_surrogate

    mvm = load_surrogate(path, expect_spec=spec)
    info = tile_model_info("surrogate", mvm, path=str(path))
    physics = noise_physics(spec) if spec is not None else None
    if physics is not None:
        mvm.noise_physics = physics
        info["noise_physics"] = physics.source
    return mvm, info


def noise_physics(spec: Any) -> NoisePhysics | None:
    """The exact solve of ``spec``'s array for the per-read noise of its non-linear cells
    (:class:`dnn.mvm.NoisePhysics`), or None: a linear cell (a surrogate's one-row responses are its own
    fitted transfer matrix) or a circuit ``spice.exact`` cannot solve (the noise model then takes its
    inputs from the surrogate)."""
    from spice.exact import ArraySolver, LinearCell, UnsupportedCircuitError, cell_model, sense_resistance_ohm

    try:
        cell = cell_model(spec)
        r_sense_ohm = sense_resistance_ohm(spec)
    except UnsupportedCircuitError as e:
        logger.info("per-read noise inputs from the surrogate: %s", e)
        return None
    if isinstance(cell, LinearCell):
        return None
    return NoisePhysics(solver_fn=lambda g_s: ArraySolver(spec, cell, g_s), r_driver_ohm=spec.r_driver_ohm,
                        r_sense_ohm=r_sense_ohm, source=f"spice.exact {cell.kind}")


# ----------------------------------------------------------------------------- methods
def calibration_loader(data: DatasetSplit, n: int | None, batch_size: int, seed: int) -> Any:
    """Seeded subset of ``n`` training images (all when None) that every mitigation method uses."""
    ds: Any = data.train
    if n is not None and n < len(ds):
        idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
        ds = Subset(ds, idx.tolist())
    return make_loader(ds, batch_size, shuffle=True, seed=seed)


def method_kwargs(settings: EvaluationSettings, method: str, max_batches: int | None, progress: bool,
                  rank: int | None = None) -> dict[str, Any]:
    """Keyword arguments of ``dnn.mitigation.apply_method`` for ``method`` (``rank``: lora/vera's)."""
    train = {"max_batches": max_batches, "progress": progress}
    adapt = asdict(settings.bn_adapt)
    if method == "bn_adapt":
        return adapt
    if method in ("bn_finetune", "adapt_finetune"):
        return {"adapt": adapt, "finetune": {**asdict(settings.bn_finetune), **train},
                "safeguard": asdict(settings.safeguard)}
    if method == "drift_compensation":
        return asdict(settings.drift_compensation)
    if method in ("lora", "vera"):
        adapter = {k: v for k, v in asdict(getattr(settings, method)).items() if k not in ("param_budget_x_bn", "ranks")}
        return {"adapter": {**adapter, "rank": rank}, "adapt": adapt, "safeguard": asdict(settings.safeguard), **train}
    if method == "retrain":
        return {**asdict(settings.retrain), **train, "adapt": adapt}
    return {}


def start_of(settings: EvaluationSettings, method: str) -> str:
    """The method ``method`` starts from (``dnn.settings.starting_method``) under these settings."""
    block = {"adapt_finetune": "bn_finetune"}.get(method, method)
    return starting_method(method, getattr(getattr(settings, block, None), "reestimate_stats", True))


def evaluate_methods(model: nn.Module, data: DatasetSplit, mvm: TileMVM, cfg: CrossbarConfig,
                     settings: EvaluationSettings, device: torch.device, batch_size: int = 64,
                     eval_batch_size: int = 256, max_batches: int | None = None, progress: bool = True,
                     scenario: str = "", done_seeds: dict[int, SeedRecord] | None = None,
                     on_seed_done: Callable[[int, SeedRecord], None] | None = None
                     ) -> tuple[float, dict[str, MethodResult]]:
    """Software accuracy and, per method, accuracy over every seed x test pass.

    Per seed: the model is converted with ``cfg`` (seeded: noise and drift draws), the ADC range is
    calibrated when ``cfg.adc_range`` is 'calibrated', then each method runs on its own copy with the
    seeded calibration subset and is tested ``eval_draws`` times (new read-noise draws each pass).
    ``progress`` shows the scenario (its name for messages), seed and method running and the time left
    of the whole evaluation (:class:`xbarchar.progress.Progress`).

    ``done_seeds`` (seed -> record, :mod:`dnn.checkpoint`) are seeds an interrupted run of the same
    evaluation finished: taken as they are, not run again. ``on_seed_done(seed, record)`` is called after
    each seed that runs (the CLI saves it), with the record of its runs (and the PC2 diagnostic of the
    first seed).
    """
    test_loader = make_loader(data.test, eval_batch_size)
    software = evaluate(model, test_loader, device)
    variants = method_variants(settings, convert_to_crossbar(model, cfg, mvm))  # layer shapes only
    runs: dict[str, list[dict[str, Any]]] = {v.label: [] for v in variants}
    pc2: dict[str, dict[str, float]] = {}
    x_diag = next(iter(test_loader))[0][:128].to(device)  # PC2 diagnostic batch
    energy: dict[str, dict[str, Any]] = {}  # per method, first seed (dnn.energy)
    x_energy = first_images(test_loader, settings.energy.n_images, device) if settings.energy.enabled else None
    n_seeds = len(settings.seeds)
    bar = Progress(n_seeds * len(variants) * settings.eval_draws, f"scenario {scenario or 'default'}",
                   "test pass", enabled=progress, logger=logger)
    with bar:
        for i, seed in enumerate(settings.seeds):
            where = f"scenario {scenario or 'default'}, seed {i + 1}/{n_seeds} ({seed})"
            if done_seeds and all(m in done_seeds.get(int(seed), {}).get("runs", {}) for m in runs):
                record = done_seeds[int(seed)]
                for method in runs:
                    runs[method].append(record["runs"][method])
                for method, values in record["pc2"].items():
                    pc2.setdefault(method, values)
                for method, values in record.get("energy", {}).items():
                    energy.setdefault(method, values)
                bar.advance(len(runs) * settings.eval_draws, f"{where}: from the partial results")
                continue
            seed_runs: dict[str, dict[str, Any]] = {}
            seed_pc2: dict[str, dict[str, float]] = {}
            seed_energy: dict[str, dict[str, Any]] = {}
            bar.set_stage(f"{where}, conversion")
            base = convert_to_crossbar(model, cfg.replace(seed=int(seed)), mvm)
            calib = calibration_loader(data, settings.calibration_samples, batch_size, int(seed))
            calibrate_adc(base.to(device), calib, device=device)  # adc_range 'calibrated' only; else a no-op
            for variant in variants:
                method = variant.label
                bar.set_stage(f"{where}, {method}")
                m = copy.deepcopy(base)
                calib_v = calib if variant.calibration_images == settings.calibration_samples else \
                    calibration_loader(data, variant.calibration_images, batch_size, int(seed))
                m, cost, n_trained = apply_method(variant.method, m, calib_v, device, seed=int(seed),
                                                  **method_kwargs(settings, variant.method, max_batches, progress,
                                                                  variant.rank))
                accs = []
                for draw in range(settings.eval_draws):
                    accs.append(evaluate(m, test_loader, device))
                    bar.advance(1, f"{method} test pass {draw + 1}/{settings.eval_draws}: accuracy {accs[-1]:.4f}")
                runs[method].append({"accuracy": statistics.fmean(accs), "draws": accs, "wall_s": cost.wall_s,
                                     "peak_mem_mb": cost.peak_memory_bytes / 2**20, "trainable_params": n_trained,
                                     "memory_kind": cost.memory_kind, "method": variant.method,
                                     "rank": variant.rank, "param_budget_x_bn": list(variant.budgets_x_bn),
                                     "bytes_per_chip": cost.bytes_per_chip,
                                     "calibration_images": cost.calibration_images,
                                     "start_method": start_of(settings, variant.method), **cost.details})
                logger.info("seed %s %s: accuracy %.4f (software %.4f)", seed, method,
                            runs[method][-1]["accuracy"], software)
                seed_runs[method] = runs[method][-1]
                if method not in pc2:  # first seed
                    pc2[method] = seed_pc2[method] = layer_pc2(model, m, x_diag)
                if x_energy is not None and method not in energy:  # first seed
                    energy[method] = seed_energy[method] = measure_energy(m, x_energy, settings.energy)
            if on_seed_done is not None:
                on_seed_done(int(seed), {"runs": seed_runs, "pc2": seed_pc2, "energy": seed_energy})
    results = {}
    for method, rs in runs.items():
        accs = [a for r in rs for a in r["draws"]]  # every seed x evaluation draw
        results[method] = MethodResult(
            accuracy_mean=statistics.fmean(accs),
            accuracy_std=statistics.pstdev(accs) if len(accs) > 1 else 0.0,
            accuracies=accs, accuracy_per_seed=[r["accuracy"] for r in rs],
            trainable_params=rs[0]["trainable_params"],
            wall_s=statistics.fmean(r["wall_s"] for r in rs),
            peak_mem_mb=statistics.fmean(r["peak_mem_mb"] for r in rs), memory_kind=rs[0]["memory_kind"],
            pc2_per_layer=pc2[method],
            pc2_mean=statistics.fmean(pc2[method].values()) if pc2[method] else float("nan"),
            energy=energy.get(method, {}),
            **method_cost_fields(rs),
        )
    return software, results


def method_cost_fields(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The cost fields of :class:`dnn.results.MethodResult` from one variant's per-seed runs."""
    first = runs[0]
    return {"method": first["method"], "rank": first["rank"], "param_budget_x_bn": list(first["param_budget_x_bn"]),
            "bytes_per_chip": int(runs[0]["bytes_per_chip"]), "calibration_images": int(runs[0]["calibration_images"]),
            "safeguard": [r["safeguard"] for r in runs if "safeguard" in r],
            "start_method": str(first.get("start_method", ""))}
