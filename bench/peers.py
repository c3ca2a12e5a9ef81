"""Peers side by side: aihwkit's IR-drop models, badcrossbar and CrossSim against xbarchar on one ngspice ground truth.

Usage::

    make peers                                   # once: the peers' own environment, .venv-peers
    python -m bench.peers --json bench/peers.json    # 35 minutes on a loaded, shared 2-core machine
    python -m bench.peers --quick                # 16x16 and 32x32 arrays, tiny training (< 2 minutes)

Run it from the repository root (``python bench/peers.py`` works too).

One command, one run. For every array (column wires only, row and column wires, the Paper-1 array at
64x64 and 128x128) the run

1. simulates a training set and a held-out test set with ngspice (xbarchar's own SPICE stage,
   ``spice.simulate.simulate_shard``: the exact transfer matrix by superposition, checked for
   linearity per matrix);
2. trains xbarchar's surrogate designs (``transfer``, ``mlp``) on the training set;
3. hands the held-out matrices and vectors to the peers, which run in their own environment
   (``.venv-peers``, see ``make peers``) in a subprocess of this script (``--worker``), arrays
   exchanged as .npz: their pins (aihwkit needs torch 2.10) never touch the project's ``.venv``;
4. scores every model against ngspice on the same held-out samples (RMS and worst error relative to
   the full-scale current g_on * v_max * rows, :func:`surrogate.fidelity.metrics`) and times it on
   one thread (BLAS, OpenMP and torch limited to 1).

Speed columns, both in input vectors (MVMs) per second on one thread over the whole held-out set:
``MVM/s`` includes all per-matrix work (programming the tile, a surrogate's bind, a solver's
factorization), amortized over the vectors of each matrix; ``MVM/s programmed`` counts only the
per-vector work once the matrix is in place (the same number for solvers that have no such split).

A peer that is not installed, or fails to import, is reported as a missing row with the reason; a
peer that raises on one array is a failed row with the reason; the others still run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench.peers")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                  "NUMEXPR_NUM_THREADS": "1"}


# ===================================================================== arrays (cases)
@dataclass(frozen=True)
class Case:
    """One array of the comparison: a circuit config entry (``spice.circuit.spec_from_config``)."""

    name: str
    label: str
    entry: dict[str, Any]
    short: str = ""
    """Column heading of the table."""


def cases(quick: bool = False) -> list[Case]:
    """The arrays compared: 64x64 (16x16 with ``quick``) and a 128x128 Paper-1 array (32x32 with ``quick``).

    All use Paper 1's devices (g_on 50 uS, ON/OFF 10, inputs 0-0.2 V); resistances of 0 are ideal
    drivers (voltage sources) and ideal sense (virtual ground).
    """
    n, big = (16, 32) if quick else (64, 128)
    ideal_periphery = {"r_driver_ohm": 0.0, "r_sense_ohm": 0.0}
    return [
        Case("col_wires", f"{n}x{n}, column wires 5 Ω only (ideal drivers and sense)",
             {"preset": "paper1_64_w5", "rows": n, "cols": n, **ideal_periphery, "r_wire_row_ohm": 0.0},
             f"A {n}² col wires"),
        Case("row_col_wires", f"{n}x{n}, row and column wires 5 Ω (ideal drivers and sense)",
             {"preset": "paper1_64_w5", "rows": n, "cols": n, **ideal_periphery}, f"B {n}² row+col wires"),
        Case(f"paper1_{n}", f"{n}x{n} Paper-1 array (1 kΩ driver and sense, 5 Ω wires)",
             {"preset": "paper1_64_w5", "rows": n, "cols": n}, f"C {n}² Paper-1"),
        Case(f"paper1_{big}", f"{big}x{big} Paper-1 array (1 kΩ driver and sense, 5 Ω wires)",
             {"preset": "paper1_128_w5", "rows": big, "cols": big}, f"D {big}² Paper-1"),
    ]


@dataclass(frozen=True)
class Budget:
    """Sizes of one array's datasets and training (per array size)."""

    n_train_g: int
    """Conductance matrices simulated for training (15% of them for early stopping)."""
    n_test_g: int
    """Held-out conductance matrices (another seed)."""
    n_vectors: int
    """Input vectors per conductance matrix (train and test)."""
    epochs: int
    """Upper bound on training epochs of each xbarchar design."""
    mlp_hidden: int = 500


def budget(rows: int, quick: bool) -> Budget:
    if quick:
        return Budget(n_train_g=6, n_test_g=2, n_vectors=32, epochs=3, mlp_hidden=32)
    if rows <= 64:
        return Budget(n_train_g=20, n_test_g=4, n_vectors=256, epochs=60)
    return Budget(n_train_g=12, n_test_g=4, n_vectors=256, epochs=40)


# ===================================================================== rows and peers
@dataclass(frozen=True)
class Model:
    """A row of the table: who computes the MVM, and which parts of the circuit it models."""

    key: str
    label: str
    kind: str
    """'reference' (ngspice, exact solves), 'xbarchar' or 'peer'."""
    models: str
    """What it models, in a few words (the README states the full mapping)."""
    ignores: Callable[[dict[str, float]], str] = field(default=lambda spec: "", compare=False)
    """Which parts of a given array (its spec dict) it cannot represent ('' = none)."""


def _ignored(spec: dict[str, float], row_wires: bool, col_wires: bool, driver: bool, sense: bool) -> str:
    missing = []
    if not row_wires and spec["r_wire_row_ohm"] > 0:
        missing.append("row wires")
    if not col_wires and spec["r_wire_col_ohm"] > 0:
        missing.append("column wires")
    if not driver and spec["r_driver_ohm"] > 0:
        missing.append("driver")
    if not sense and spec["r_sense_ohm"] > 0:
        missing.append("sense")
    return ", ".join(missing)


PEERS: dict[str, Model] = {
    "aihwkit_ir_drop": Model(
        "aihwkit_ir_drop", "aihwkit `IOParameters.ir_drop` (C++ tile)", "peer",
        "steady-state first-order drop along the output line",
        lambda s: _ignored(s, row_wires=False, col_wires=True, driver=False, sense=False)),
    "aihwkit_irdrop_t": Model(
        "aihwkit_irdrop_t", "aihwkit `TorchInferenceRPUConfigIRDropT`", "peer",
        "PWM-read tile, time-stepped Thevenin solve of the output line",
        lambda s: _ignored(s, row_wires=False, col_wires=True, driver=False, sense=False)),
    "badcrossbar": Model(
        "badcrossbar", "badcrossbar `compute` (exact nodal solve)", "peer",
        "row and column wires, ideal sources and ground",
        lambda s: _ignored(s, row_wires=True, col_wires=True, driver=False, sense=False)),
    "crosssim": Model(
        "crosssim", "CrossSim parasitic solver (as shipped, defaults)", "peer",
        "row and column wires, terminal resistances, iterative solve",
        lambda s: _ignored(s, row_wires=True, col_wires=True, driver=True, sense=True)),
    "crosssim_fixed": Model(
        "crosssim_fixed", "CrossSim parasitic solver, row terminal on the first segment", "peer",
        "as above, driver resistance placed where the circuit has it",
        lambda s: _ignored(s, row_wires=True, col_wires=True, driver=True, sense=True)),
    "crosssim_tight": Model(
        "crosssim_tight", "CrossSim parasitic solver, row terminal fixed, tolerance 1e-9", "peer",
        "as above, Verr_th_mvm 1e-9, up to 1,000 iterations",
        lambda s: _ignored(s, row_wires=True, col_wires=True, driver=True, sense=True)),
}
XBARCHAR: dict[str, Model] = {
    "ngspice": Model("ngspice", "ngspice (ground truth: superposition sweep)", "reference", "the full circuit"),
    "nodal": Model("nodal", "xbarchar exact nodal solve (`spice.nodal`, scipy)", "reference",
                   "the full circuit (linear cells)"),
    "ideal": Model("ideal", "ideal v·G", "xbarchar", "no parasitics",
                   lambda s: _ignored(s, row_wires=False, col_wires=False, driver=False, sense=False)),
    "transfer": Model("transfer", "xbarchar `transfer` surrogate", "xbarchar", "learned from ngspice data"),
    "mlp": Model("mlp", "xbarchar `mlp` surrogate (GENIEx)", "xbarchar", "learned from ngspice data"),
}
ROW_ORDER = ("ideal", "transfer", "mlp", "aihwkit_ir_drop", "aihwkit_irdrop_t", "badcrossbar", "crosssim",
             "crosssim_fixed", "crosssim_tight", "nodal", "ngspice")
PEER_DISTRIBUTIONS = {"aihwkit": "aihwkit", "badcrossbar": "badcrossbar", "crosssim": "CrossSim", "torch": "torch",
                      "numpy": "numpy", "scipy": "scipy"}


@dataclass
class Row:
    """One measured (or missing) row: a model on one array."""

    model: str
    case: str
    status: str
    """'ok'; 'missing' (not installed or fails to import); 'failed' (raised on this array)."""
    reason: str = ""
    rel_rms_fs: float = float("nan")
    worst_abs_fs: float = float("nan")
    mvm_per_s: float = float("nan")
    mvm_per_s_programmed: float = float("nan")
    ignores: str = ""
    """Parts of this array the model cannot represent (it ran without them)."""
    note: str = ""


# ===================================================================== timing (shared by both sides)
def run_predictor(prepare: Callable[[np.ndarray], Any], apply: Callable[[Any, np.ndarray], np.ndarray],
                  g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray, cols: int,
                  min_seconds: float = 1.0, max_repeats: int = 5,
                  budget_s: float = float("inf")) -> tuple[np.ndarray, dict[str, float]]:
    """Predict every held-out sample and time it.

    ``prepare(g [rows, cols] S)`` is the per-matrix work (programming, bind, factorization),
    ``apply(state, v [n, rows] V) -> i [n, cols] A`` the per-vector work. One warm-up call on two
    vectors of the first matrix, then whole passes over the test set until ``min_seconds`` have
    passed (at most ``max_repeats``). A first pass that has run ``budget_s`` stops after the
    matrix it is on: the samples of the matrices it did not reach stay NaN. Returns the
    predictions, ``mvm_per_s`` (all work), ``mvm_per_s_programmed`` (per-vector work only) and
    ``n_done`` (samples predicted).
    """
    matrices = [k for k in range(len(g_s)) if np.any(g_index == k)]
    apply(prepare(g_s[matrices[0]]), v_v[np.flatnonzero(g_index == matrices[0])[:2]])
    out = np.full((len(v_v), cols), np.nan)
    t_prepare = t_apply = 0.0
    repeats = n_done = 0
    start = time.perf_counter()
    while True:
        for k in matrices:
            idx = np.flatnonzero(g_index == k)
            t0 = time.perf_counter()
            state = prepare(g_s[k])
            t1 = time.perf_counter()
            out[idx] = apply(state, v_v[idx])
            t2 = time.perf_counter()
            t_prepare += t1 - t0
            t_apply += t2 - t1
            n_done += len(idx)
            if repeats == 0 and t2 - start >= budget_s:
                break
        repeats += 1
        if n_done < repeats * len(v_v) or time.perf_counter() - start >= min_seconds or repeats >= max_repeats:
            break
    return out, {"mvm_per_s": n_done / (t_prepare + t_apply), "mvm_per_s_programmed": n_done / max(t_apply, 1e-12),
                 "repeats": repeats, "n_done": min(n_done, len(v_v))}


def limit_threads() -> None:
    """One thread for BLAS/OpenMP pools already loaded (threadpoolctl) and for torch, where present."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # the environment variables set for the worker still apply
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


# ===================================================================== the peers (worker side)
class PeerMissing(Exception):
    """The peer is not installed or fails to import: a missing row with this reason."""


class Peer:
    """A peer's adapter: ``load`` imports it (raising :class:`PeerMissing`), ``predictor`` maps an array onto it."""

    distributions: tuple[str, ...] = ()

    def load(self) -> None:
        raise NotImplementedError

    def predictor(self, spec: dict[str, float]) -> tuple[Callable, Callable, str]:
        """(prepare, apply, note) for one array, in SI units (see :func:`run_predictor`)."""
        raise NotImplementedError

    def sample_limit(self, spec: dict[str, float]) -> tuple[int, int] | None:
        """(matrices, vectors per matrix) to run on this array when the whole held-out set would take
        too long (None: all of it)."""
        return None


def _import(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure (ABI mismatch, missing library) is a missing row
        raise PeerMissing(f"{what}: `import {module}` failed: {type(exc).__name__}: {exc}") from exc


class AihwkitIrDrop(Peer):
    """aihwkit's C++ inference tile with ``IOParameters.ir_drop`` and every other non-ideality off.

    Mapping: weights W = G / g_on (so |w| = 1 is g_on), inputs x = V / v_max, output y = W x, read as
    i = y g_on v_max; ``ir_drop = 1`` and ``ir_drop_g_ratio = 1 / (R_wire_col g_on)`` (the wire
    conductance between two cells over g_on). No input/output quantization, noise, bounds or
    noise/bound management; no weight scaling; weights set directly (never programmed, so no
    programming noise or drift).
    """

    distributions = ("aihwkit", "torch")

    def load(self) -> None:
        self.torch = _import("torch", "aihwkit needs torch")
        _import("aihwkit", "aihwkit")
        _import("aihwkit.simulator.rpu_base", "aihwkit's C++ tile (rpu_base)")
        self.nn = _import("aihwkit.nn", "aihwkit")
        self.configs = _import("aihwkit.simulator.configs", "aihwkit")
        self.params = _import("aihwkit.simulator.parameters", "aihwkit")

    def _io(self, spec: dict[str, float]):
        p = self.params
        return p.IOParameters(
            is_perfect=False, inp_res=-1.0, out_res=-1.0, inp_noise=0.0, out_noise=0.0, inp_bound=1.0,
            out_bound=-1.0, w_noise=0.0, bound_management=p.BoundManagementType.NONE,
            noise_management=p.NoiseManagementType.NONE, ir_drop=1.0,
            ir_drop_g_ratio=1.0 / (max(spec["r_wire_col_ohm"], 1e-12) * spec["g_on_s"]),
        )

    def rpu_config(self, spec: dict[str, float]):
        cfg = self.configs.InferenceRPUConfig()
        cfg.forward = self._io(spec)
        cfg.mapping.max_input_size = int(spec["rows"])
        cfg.mapping.max_output_size = int(spec["cols"])
        cfg.mapping.weight_scaling_omega = 0.0
        cfg.drift_compensation = None
        return cfg

    def predictor(self, spec: dict[str, float]):
        torch = self.torch
        rows, cols = int(spec["rows"]), int(spec["cols"])
        g_on, v_max = spec["g_on_s"], spec["v_read_max_v"]
        layer = self.nn.AnalogLinear(rows, cols, bias=False, rpu_config=self.rpu_config(spec))
        layer.eval()

        def prepare(g: np.ndarray):
            layer.set_weights(torch.as_tensor((g / g_on).T, dtype=torch.float32))
            return layer

        def apply(lay, v: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                y = lay(torch.as_tensor(v / v_max, dtype=torch.float32))
            return y.double().numpy() * g_on * v_max

        return prepare, apply, "float32 C++ tile"


class AihwkitIrDropT(Peer):
    """aihwkit's time-stepped IR-drop tile (``TorchInferenceRPUConfigIRDropT``), pure torch.

    Its circuit: inputs are pulse-width modulated (8-bit PWM, ``ir_drop_time_step_resolution_scale``
    1: 128 time steps) at a fixed 0.2 V amplitude around a 0.4 V idle line, weights are a pair of
    devices (G+ at +0.2 V, G- at -0.2 V), each output line is integrated by an ADC held at
    ``ir_drop_v_read``, with wire resistance ``ir_drop_rs`` between cells along the output line
    only; even outputs are read at one end, odd outputs at the other. Mapping: G+ = G, G- = 0
    (``SinglePairConductanceConverter(g_max = g_on in uS, g_min = 0)``), ``ir_drop_rs`` = R_wire_col,
    ``ir_drop_segments`` = rows (one per cell, exact), ``max_input_size`` = rows (no padding),
    ``ir_drop_v_read`` = 0.4 V (the idle line: no offset current), ADC quantization, output noise and
    quantization off. Our arrays sense every column at the same end, so each array column is placed
    on an even output (the odd outputs hold no device except one g_on cell that fixes the weight
    scale) and only even outputs are read: twice the outputs of the array are computed.
    """

    distributions = ("aihwkit", "torch")

    def load(self) -> None:
        self.torch = _import("torch", "aihwkit needs torch")
        _import("aihwkit", "aihwkit")
        self.nn = _import("aihwkit.nn", "aihwkit")
        self.configs = _import("aihwkit.simulator.configs", "aihwkit")
        self.params = _import("aihwkit.simulator.parameters", "aihwkit")
        self.pcm = _import("aihwkit.inference.noise.pcm", "aihwkit")
        self.conductance = _import("aihwkit.inference.converter.conductance", "aihwkit")

    def rpu_config(self, spec: dict[str, float]):
        p = self.params
        rows = int(spec["rows"])
        cfg = self.configs.TorchInferenceRPUConfigIRDropT()
        io = cfg.forward
        io.is_perfect = False
        io.inp_res = 1.0 / 254.0
        io.out_res = -1.0
        io.inp_noise = 0.0
        io.out_noise = 0.0
        io.out_bound = -1.0
        io.w_noise = 0.0
        io.bound_management = p.BoundManagementType.NONE
        io.noise_management = p.NoiseManagementType.NONE
        io.ir_drop = 1.0
        io.ir_drop_rs = float(spec["r_wire_col_ohm"])
        io.ir_drop_segments = rows
        io.ir_drop_v_read = 0.4
        io.adc_quantization = False
        cfg.mapping.max_input_size = rows
        cfg.mapping.max_output_size = 2 * int(spec["cols"])
        cfg.mapping.weight_scaling_omega = 0.0
        converter = self.conductance.SinglePairConductanceConverter(g_max=spec["g_on_s"] * 1e6, g_min=0.0)
        cfg.noise_model = self.pcm.PCMLikeNoiseModel(g_converter=converter)
        cfg.drift_compensation = None
        return cfg

    def predictor(self, spec: dict[str, float]):
        torch = self.torch
        rows, cols = int(spec["rows"]), int(spec["cols"])
        g_on, v_max = spec["g_on_s"], spec["v_read_max_v"]
        layer = self.nn.AnalogLinear(rows, 2 * cols, bias=False, rpu_config=self.rpu_config(spec))
        layer.eval()

        def prepare(g: np.ndarray):
            w = np.zeros((2 * cols, rows))
            w[0::2] = (g / g_on).T
            w[1, 0] = 1.0  # one g_on device on a discarded odd output: the converter scales max |w| to g_on
            layer.set_weights(torch.as_tensor(w, dtype=torch.float32))
            return layer

        # Its torch path holds [vectors, rows, outputs, time steps] tensors: feed ~5e7 elements at a time.
        chunk = max(1, int(5e7 // (rows * 2 * cols * 128)))

        def apply(lay, v: np.ndarray) -> np.ndarray:
            out = []
            with torch.no_grad():
                for start in range(0, len(v), chunk):
                    y = lay(torch.as_tensor(v[start:start + chunk] / v_max, dtype=torch.float32))
                    out.append(y[:, 0::2].double().numpy())
            return np.concatenate(out) * g_on * v_max

        note = "8-bit PWM inputs; even outputs only"
        return prepare, apply, note


class Badcrossbar(Peer):
    """badcrossbar's exact nodal solve (``badcrossbar.compute``): word lines driven by ideal voltage
    sources through one wire segment, bit lines grounded (ideal) through one segment below the last
    device; resistances R = 1 / G; ``r_i_word_line`` = R_wire_row, ``r_i_bit_line`` = R_wire_col.
    It has no driver or sense resistance. One sparse factorization per matrix solves all its vectors
    (multiple right-hand sides)."""

    distributions = ("badcrossbar",)

    def load(self) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImportWarning)  # its plotting half needs cairo: not installed
            self.compute = _import("badcrossbar.compute", "badcrossbar").compute
        logging.getLogger("badcrossbar").setLevel(logging.WARNING)
        logging.getLogger().setLevel(logging.WARNING)  # it configures the root logger at INFO on import

    def predictor(self, spec: dict[str, float]):
        compute = self.compute

        def apply(g: np.ndarray, v: np.ndarray) -> np.ndarray:
            solution = compute(v.T, 1.0 / g, r_i_word_line=spec["r_wire_row_ohm"],
                               r_i_bit_line=spec["r_wire_col_ohm"], node_voltages=False, all_currents=False)
            return np.asarray(solution.currents.output, dtype=float).reshape(len(v), -1)

        return (lambda g: g), apply, "float64; factorization per call"


class CrossSim(Peer):
    """CrossSim's parasitic-resistance circuit solver (``NoninterleavedInputSourceArray``: the
    current is sourced by the input line, one device per weight), called directly on the array.

    Mapping: matrix = G^T / g_on ([outputs, inputs], conductances normalized by Rmin = 1 / g_on),
    inputs x = V / v_max, currents i = I g_on v_max; ``Rp_row`` = R_wire_row, ``Rp_col`` =
    R_wire_col, ``Rp_row_terminal`` = R_driver, ``Rp_col_terminal`` = R_sense (its outputs are held
    at virtual ground behind the terminal resistance, which is the same circuit as a sense resistor
    to ground). Successive under-relaxation until the largest cell-voltage error is below
    ``Verr_th_mvm`` (normalized input units; default 1e-3); when it does not converge in
    ``Niters_max_parasitics`` (100) iterations it starts again with the relaxation factor times 0.98.

    CrossSim 3.2.0 adds the row terminal resistance to ``Rp_in_mat[:, 0]`` (the input-line segments
    of the first input), while its input-line drops accumulate along axis 0, whose first segment is
    ``Rp_in_mat[0, :]``: the driver resistance lands on the wrong segments (checked against the
    closed form of a driver-only array: error ~ the ideal model's; with the terminal on ``[0, :]``,
    3.8e-5 of full scale, the solver's tolerance). ``fixed_terminal`` presets the solver's
    resistance matrices that way (it builds them only when they are unset); ``tight`` also lowers
    the tolerance to 1e-9 with up to 1,000 iterations. Both start the relaxation factor at 0.1 on
    arrays with terminal resistances: from CrossSim's default of 1 the solver does not converge
    there and backs off by 2% per attempt of up to 100 iterations (measured on 8 vectors of a
    64x64 Paper-1 array: no answer within 150 s from 1, 4 s from 0.5, 0.04 s from 0.2; 128x128:
    2 s from 0.2 after one back-off, 0.3 s from 0.1). The as-shipped row keeps every default.
    """

    distributions = ("CrossSim",)

    def __init__(self, fixed_terminal: bool = False, tight: bool = False) -> None:
        self.fixed_terminal = fixed_terminal
        self.tight = tight

    def load(self) -> None:
        self.simulator = _import("simulator", "CrossSim")
        self.arrays = _import("simulator.circuits.array", "CrossSim")
        _import("simulator.backend", "CrossSim").ComputeBackend(use_gpu=False)  # numpy backend (AnalogCore does this)

    def params(self, spec: dict[str, float]):
        params = self.simulator.CrossSimParameters()
        params.xbar.device.Rmin = 1.0 / spec["g_on_s"]
        params.xbar.device.Rmax = 1.0 / spec["g_off_s"]
        par = params.xbar.array.parasitics
        par.enable = True
        par.Rp_row = float(spec["r_wire_row_ohm"])
        par.Rp_col = float(spec["r_wire_col_ohm"])
        par.Rp_row_terminal = float(spec["r_driver_ohm"])
        par.Rp_col_terminal = float(spec["r_sense_ohm"])
        params.simulation.hide_convergence_msg = True
        if self.tight:
            params.simulation.Verr_th_mvm = 1e-9
            params.simulation.Niters_max_parasitics = 1000
        if self.fixed_terminal and (spec["r_driver_ohm"] > 0 or spec["r_sense_ohm"] > 0):
            params.simulation.relaxation_gamma = 0.1
        return params

    def sample_limit(self, spec: dict[str, float]) -> tuple[int, int] | None:
        if not self.fixed_terminal and spec["r_driver_ohm"] > 0:
            return 1, 8  # minutes per matrix at 64x64: relaxation retries from gamma = 1 (see the class doc)
        if self.tight and spec["r_driver_ohm"] > 0:
            return 2, 64
        return None

    def predictor(self, spec: dict[str, float]):
        g_on, v_max = spec["g_on_s"], spec["v_read_max_v"]
        params = self.params(spec)
        rows, cols = int(spec["rows"]), int(spec["cols"])

        def prepare(g: np.ndarray):
            solver = self.arrays.NoninterleavedInputSourceArray(params)
            if self.fixed_terminal:
                solver.Rp_in_mat = np.full((cols, rows), solver.Rp_row_norm)
                solver.Rp_in_mat[0, :] += solver.Rp_row_terminal_norm
                solver.Rp_out_mat = np.full((cols, rows), solver.Rp_col_norm)
                solver.Rp_out_mat[:, -1] += solver.Rp_col_terminal_norm
            return solver, np.ascontiguousarray((g / g_on).T)

        def apply(state, v: np.ndarray) -> np.ndarray:
            solver, matrix = state
            out = solver.iterative_solve(matrix, np.ascontiguousarray((v / v_max).T))  # [inputs, batch] in
            return np.asarray(out).T * g_on * v_max  # [outputs, batch] out

        return prepare, apply, "float64; one batched solve per matrix"


def peer_adapters() -> dict[str, Peer]:
    return {"aihwkit_ir_drop": AihwkitIrDrop(), "aihwkit_irdrop_t": AihwkitIrDropT(), "badcrossbar": Badcrossbar(),
            "crosssim": CrossSim(), "crosssim_fixed": CrossSim(fixed_terminal=True),
            "crosssim_tight": CrossSim(fixed_terminal=True, tight=True)}


def distribution_versions(names) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


class PeerTimeout(Exception):
    """A peer ran past its hard time limit on one array."""


def _alarm(signum, frame):
    raise PeerTimeout


def worker(in_path: Path, out_path: Path, only: list[str] | None = None, min_seconds: float = 1.0,
           budget_s: float = 60.0) -> int:
    """Peers side: run every peer on every array of ``in_path``; write predictions and statuses to ``out_path``."""
    signal.signal(signal.SIGALRM, _alarm)
    limit_threads()
    data = np.load(in_path, allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    results: dict[str, Any] = {"rows": [], "versions": {}, "python": sys.version.split()[0]}
    arrays: dict[str, np.ndarray] = {}
    for key, peer in peer_adapters().items():
        if only and key not in only:
            continue
        try:
            peer.load()
        except PeerMissing as exc:
            for case in meta["cases"]:
                results["rows"].append({"model": key, "case": case, "status": "missing", "reason": str(exc)})
            continue
        limit_threads()
        for case, spec in meta["cases"].items():
            g_s, g_index, v_v = data[f"{case}/g_s"], data[f"{case}/g_index"], data[f"{case}/v_v"]
            sel = np.arange(len(v_v))
            limit = peer.sample_limit(spec)
            if limit is not None:
                n_g, n_v = limit
                sel = np.concatenate([np.flatnonzero(g_index == k)[:n_v] for k in range(min(n_g, len(g_s)))])
            t0 = time.perf_counter()
            signal.alarm(max(1, int(2 * budget_s)))  # a peer stuck on one matrix is stopped: a failed row
            try:
                prepare, apply, note = peer.predictor(spec)
                pred, timing = run_predictor(prepare, apply, g_s, g_index[sel], v_v[sel], int(spec["cols"]),
                                             min_seconds, budget_s=budget_s)
            except PeerTimeout:
                results["rows"].append({"model": key, "case": case, "status": "failed", "reason":
                                        f"no answer for {len(sel)} vectors of {len(np.unique(g_index[sel]))} "
                                        f"matrix within {2 * budget_s:.0f} s (2 x --peer-budget)"})
                continue
            except Exception as exc:  # noqa: BLE001 - one failing array is a failed row, the others still run
                results["rows"].append({"model": key, "case": case, "status": "failed",
                                        "reason": f"{type(exc).__name__}: {exc}"[:500]})
                continue
            finally:
                signal.alarm(0)
            full = np.full((len(v_v), int(spec["cols"])), np.nan)
            full[sel] = pred
            arrays[f"{key}/{case}"] = full
            results["rows"].append({"model": key, "case": case, "status": "ok", "note": note,
                                    "seconds": time.perf_counter() - t0, **timing})
            print(f"peer {key} on {case}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    results["versions"] = distribution_versions(PEER_DISTRIBUTIONS.values())
    np.savez(out_path, meta=np.array(json.dumps(results)), **arrays)
    return 0


# ===================================================================== the run (project side)
def spec_dict(spec) -> dict[str, float]:
    """The numbers of a CircuitSpec a peer needs (json-able)."""
    keys = ("rows", "cols", "r_driver_ohm", "r_sense_ohm", "r_wire_row_ohm", "r_wire_col_ohm", "g_on_s", "g_off_s",
            "v_read_max_v", "v_read_min_v")
    return {k: getattr(spec, k) for k in keys}


def run_peers(case_data: dict[str, dict[str, Any]], peers_python: Path, timeout_s: float, min_seconds: float,
              only: list[str] | None = None, budget_s: float = 60.0) -> tuple[list[Row], dict[str, np.ndarray], dict[str, Any]]:
    """Run the peers in their own environment (a subprocess); every peer that cannot run is a missing row."""
    keys = [k for k in PEERS if not only or k in only]

    def all_missing(reason: str) -> tuple[list[Row], dict, dict]:
        return [Row(k, c, "missing", reason) for k in keys for c in case_data], {}, {}

    if not Path(peers_python).exists():
        return all_missing(f"peers environment not found ({peers_python}); create it with `make peers`")
    with tempfile.TemporaryDirectory(prefix="xbarchar-peers-") as tmp:
        in_path, out_path = Path(tmp) / "cases.npz", Path(tmp) / "peers.npz"
        write_cases(in_path, case_data)
        cmd = [str(peers_python), str(Path(__file__).resolve()), "--worker", str(in_path), str(out_path),
               "--min-seconds", str(min_seconds), "--peer-budget", str(budget_s)] + [a for k in (only or []) for a in ("--only", k)]
        env = {**os.environ, **ONE_THREAD_ENV, "PYTHONWARNINGS": "ignore"}
        env.pop("PYTHONPATH", None)
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return all_missing(f"the peers' run took longer than {timeout_s:.0f} s (--peers-timeout)")
        except OSError as exc:
            return all_missing(f"cannot start {peers_python}: {exc}")
        for line in proc.stderr.splitlines():
            if line.startswith("peer "):
                log.info("%s", line)
        if proc.returncode != 0 or not out_path.exists():
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            return all_missing(f"the peers' environment failed (exit {proc.returncode}): {tail}"[:500])
        return read_results(out_path)


def write_cases(path: Path, case_data: dict[str, dict[str, Any]]) -> None:
    """The held-out arrays for the peers' worker: per array its spec, matrices, vectors and matrix index."""
    arrays = {f"{c}/{name}": d[name] for c, d in case_data.items() for name in ("g_s", "g_index", "v_v")}
    meta = {"cases": {c: d["spec"] for c, d in case_data.items()}}
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def read_results(path: Path) -> tuple[list[Row], dict[str, np.ndarray], dict[str, Any]]:
    """Rows, predictions (A, keyed 'peer/array') and versions written by :func:`worker`."""
    out = np.load(path, allow_pickle=False)
    result = json.loads(str(out["meta"]))
    preds = {name: out[name] for name in out.files if name != "meta"}
    rows = []
    for r in result["rows"]:
        row = Row(r["model"], r["case"], r["status"], r.get("reason", ""), note=r.get("note", ""))
        if row.status == "ok":
            row.mvm_per_s, row.mvm_per_s_programmed = r["mvm_per_s"], r["mvm_per_s_programmed"]
        rows.append(row)
    return rows, preds, {"versions": result["versions"], "python": result["python"]}


def simulate(spec, n_g: int, n_vectors: int, seed: int, check):
    """An in-memory ngspice dataset (``spice.simulate.simulate_shard``) and its wall time (s)."""
    from spice.io import SpiceDataset
    from spice.sampling import SamplingConfig
    from spice.simulate import simulate_shard

    cfg = SamplingConfig(n_conductance=n_g, n_vectors=n_vectors, v_zero_fraction=0.3, seed=seed)
    t0 = time.perf_counter()
    r = simulate_shard(spec, cfg, 0, progress=False, check=check)
    seconds = time.perf_counter() - t0
    if r.failed.any():
        raise RuntimeError(f"{spec.name}: {int(r.failed.sum())} ngspice samples failed")
    ds = SpiceDataset(spec=spec, attrs={}, **r.arrays())
    return ds, seconds


def ideal_predictor():
    return (lambda g: g), (lambda g, v: v @ g)


def nodal_predictor(spec):
    from spice import nodal

    return (lambda g: nodal.transfer_matrix(spec, g)), (lambda t, v: v @ t)


def surrogate_predictor(model):
    import torch

    dtype = model.param_dtype

    def prepare(g: np.ndarray):
        with torch.no_grad():
            return model.bind(torch.as_tensor(g[None], dtype=dtype))

    def apply(f, v: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return f(torch.as_tensor(v[None], dtype=dtype))[0].double().numpy()

    return prepare, apply


def score(row: Row, pred: np.ndarray, true_a: np.ndarray, full_scale_a: float) -> Row:
    from surrogate.fidelity import metrics

    m = metrics(pred, true_a, full_scale_a)
    row.rel_rms_fs, row.worst_abs_fs = m["rel_rms_fs"], m["worst_abs_fs"]
    return row


def project_versions() -> dict[str, str]:
    import PySpice
    import torch

    from spice import ngspice
    from spice.io import package_version

    info = ngspice.info()
    return {"xbarchar": package_version(), "ngspice": f"{info.version} ({'KLU' if info.has_klu else 'no KLU'})",
            "PySpice": PySpice.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def run(quick: bool, peers_python: Path, peers_timeout_s: float, min_seconds: float, seed: int = 0,
        only_cases: list[str] | None = None, only_peers: list[str] | None = None, peer_budget_s: float = 60.0,
        designs: tuple[str, ...] = ("transfer", "mlp")) -> dict[str, Any]:
    """The whole comparison; returns the json-able result (rows, cases, versions, table)."""
    import torch

    from spice import ngspice
    from spice.circuit import spec_from_config
    from surrogate.data import split_dataset
    from surrogate.train import TrainParams, train

    t_start = time.perf_counter()
    rows: list[Row] = []
    case_data: dict[str, dict[str, Any]] = {}
    case_info: dict[str, Any] = {}
    models: dict[str, dict[str, Any]] = {}
    for case in cases(quick):
        if only_cases and case.name not in only_cases:
            continue
        spec = spec_from_config(case.name, case.entry, base_dir=REPO)
        b = budget(spec.rows, quick)
        check = ngspice.check_circuit(spec)
        train_ds, train_s = simulate(spec, b.n_train_g, b.n_vectors, seed=seed + 1, check=check)
        test_ds, test_s = simulate(spec, b.n_test_g, b.n_vectors, seed=seed + 1001, check=check)
        log.info("%s: ngspice %d + %d matrices x %d vectors in %.1f + %.1f s", case.name, b.n_train_g,
                 b.n_test_g, b.n_vectors, train_s, test_s)
        fs = spec.g_on_s * spec.v_read_max_v * spec.rows
        case_data[case.name] = {"spec": spec_dict(spec), "g_s": test_ds.g_s, "g_index": test_ds.g_index,
                                "v_v": test_ds.v_v, "i_a": test_ds.i_a, "full_scale_a": fs}
        case_info[case.name] = {"label": case.label, "short": case.short, "spec": spec_dict(spec), "full_scale_a": fs,
                                "budget": dataclasses.asdict(b), "ngspice_train_s": train_s,
                                "ngspice_test_s": test_s, "n_test_samples": int(len(test_ds.v_v))}
        rows.append(Row("ngspice", case.name, "ok", rel_rms_fs=0.0, worst_abs_fs=0.0,
                        mvm_per_s=len(test_ds.v_v) / test_s, mvm_per_s_programmed=len(test_ds.v_v) / test_s,
                        note=f"superposition: rows+1 solves per matrix, then {b.n_vectors} vectors"))
        splits = split_dataset(train_ds, val_fraction=0.15, test_fraction=0.0, seed=seed,
                               path=f"<{spec.name} training set in memory>")
        models[case.name] = {}
        for design in designs:
            params = TrainParams(design=design, epochs=b.epochs, hidden=b.mlp_hidden, seed=seed)
            torch.set_num_threads(1)  # ngspice's OpenMP build resets the process's thread count
            result = train(splits, params, progress=False)
            models[case.name][design] = result.model
            case_info[case.name][f"train_{design}_s"] = result.history["train_seconds"]
            log.info("%s: trained %s in %.1f s", case.name, design, result.history["train_seconds"])

    # Peers: their own environment, one subprocess for every peer and array.
    peer_rows, peer_preds, peer_meta = run_peers(case_data, peers_python, peers_timeout_s, min_seconds, only_peers,
                                                peer_budget_s)

    limit_threads()
    torch.set_num_threads(1)
    for name, d in case_data.items():
        spec = spec_from_config(name, next(c.entry for c in cases(quick) if c.name == name), base_dir=REPO)
        predictors = {"ideal": ideal_predictor(), "nodal": nodal_predictor(spec)}
        predictors.update({design: surrogate_predictor(m) for design, m in models[name].items()})
        for key, (prepare, apply) in predictors.items():
            pred, timing = run_predictor(prepare, apply, d["g_s"], d["g_index"], d["v_v"], spec.cols, min_seconds)
            row = Row(key, name, "ok", mvm_per_s=timing["mvm_per_s"],
                      mvm_per_s_programmed=timing["mvm_per_s_programmed"],
                      ignores=XBARCHAR[key].ignores(d["spec"]))
            rows.append(score(row, pred, d["i_a"], d["full_scale_a"]))
    for row in peer_rows:
        d = case_data[row.case]
        row.ignores = PEERS[row.model].ignores(d["spec"])
        if row.status == "ok":
            pred = peer_preds[f"{row.model}/{row.case}"]
            done = np.all(np.isfinite(pred), axis=1)
            score(row, pred[done], d["i_a"][done], d["full_scale_a"])
            if not done.all():
                row.note += f"; scored on {int(done.sum())} of {len(done)} held-out samples"
        rows.append(row)

    order = {k: i for i, k in enumerate(ROW_ORDER)}
    case_order = {c: i for i, c in enumerate(case_data)}
    rows.sort(key=lambda r: (case_order[r.case], order[r.model]))
    versions = {"project": project_versions(), "peers": peer_meta.get("versions", {}),
                "peers_python": peer_meta.get("python", "")}
    return {
        "quick": quick, "seed": seed, "min_seconds": min_seconds, "cases": case_info,
        "rows": [dataclasses.asdict(r) for r in rows], "versions": versions,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "table_markdown": table(rows, case_info), "total_seconds": time.perf_counter() - t_start,
    }


# ===================================================================== report
def _fmt(x: float, digits: int = 2) -> str:
    if x != x:  # NaN
        return "–"
    return "0" if x == 0 else f"{x:.{digits}e}"


def _rate(x: float) -> str:
    if x != x:
        return "–"
    return f"{x:.3g}"


def label(key: str) -> str:
    return (PEERS.get(key) or XBARCHAR[key]).label


def table(rows: list[Row], case_info: dict[str, Any]) -> str:
    """One markdown table, a model per line and per array two cells: error and speed; notes below it.

    Error cell: RMS error / full scale (worst sample / full scale); speed cell: MVM/s with all
    per-matrix work / MVM/s once the matrix is programmed (one number when they agree to 5%).
    † the model ran without parts of this array it cannot represent; ‡ scored on part of the
    held-out samples; missing and failed rows give their reason below the table.
    """
    case_names = sorted(case_info, key=lambda c: case_info[c]["short"])
    models = [k for k in ROW_ORDER if any(r.model == k for r in rows)]
    by = {(r.model, r.case): r for r in rows}
    head = ["model"]
    for c in case_names:
        head += [f"{case_info[c]['short']}: RMS / FS (worst)", "MVM/s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|---:|" * len(case_names)]
    notes: list[str] = []
    ignored: dict[tuple[str, str], list[str]] = {}
    for m in models:
        cells = [label(m)]
        for c in case_names:
            r = by.get((m, c))
            if r is None:
                cells += ["", ""]
            elif r.status != "ok":
                cells += [r.status, ""]
                notes.append(f"- {label(m)}, {case_info[c]['short']}: {r.status}: {r.reason}")
            else:
                dagger = bool(r.ignores) and m != "ideal"
                marks = (" †" if dagger else "") + (" ‡" if "scored on" in r.note else "")
                fid = "reference" if m == "ngspice" else f"{_fmt(r.rel_rms_fs)} ({_fmt(r.worst_abs_fs, 1)})"
                a, b = r.mvm_per_s, r.mvm_per_s_programmed
                speed = _rate(a) if abs(b - a) <= 0.05 * a else f"{_rate(a)} / {_rate(b)}"
                cells += [fid + marks, speed]
                if dagger:
                    ignored.setdefault((m, r.ignores), []).append(case_info[c]["short"].split()[0])
                if "scored on" in r.note:
                    notes.append(f"- ‡ {label(m)}, {case_info[c]['short']}: {r.note.split('; ')[-1]}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- † {label(m)}: ran without the {what} ({', '.join(where)})" for (m, what), where in ignored.items()
             ] + notes
    arrays = "; ".join(f"{case_info[c]['short']} = {case_info[c]['label']}" for c in case_names)
    return "\n".join(lines + ["", f"Arrays: {arrays}.", ""] + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16x16 and 32x32 arrays, tiny datasets and training")
    parser.add_argument("--json", default="", help="write the measurements here")
    parser.add_argument("--peers-python", default=str(DEFAULT_PEERS_PYTHON),
                        help="python of the peers' environment (default .venv-peers/bin/python; `make peers`)")
    parser.add_argument("--peers-timeout", type=float, default=3600.0, help="seconds allowed for all peers")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time each model for at least this long")
    parser.add_argument("--peer-budget", type=float, default=60.0,
                        help="a peer that has run this many seconds on one array stops after the matrix it is on "
                             "(and is stopped at twice this)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", action="append", default=None, help="only this array (repeatable)")
    parser.add_argument("--only", action="append", default=None, help="only this peer (repeatable)")
    parser.add_argument("--from-json", default="", help="print the table of a saved run (its --json) and exit")
    parser.add_argument("--worker", nargs=2, metavar=("IN_NPZ", "OUT_NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.worker:
        return worker(Path(args.worker[0]), Path(args.worker[1]), args.only, args.min_seconds, args.peer_budget)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        for case in cases(saved["quick"]):  # runs saved before the table had short headings
            if case.name in saved["cases"]:
                saved["cases"][case.name].setdefault("short", case.short)
        print(table([Row(**r) for r in saved["rows"]], saved["cases"]))
        return 0
    for name in ("spice", "surrogate", "PySpice"):
        logging.getLogger(name).setLevel(logging.WARNING)
    result = run(args.quick, Path(args.peers_python), args.peers_timeout, args.min_seconds, args.seed,
                 args.case, args.only, args.peer_budget)
    print(result["table_markdown"])
    v = result["versions"]
    print("\nversions: " + ", ".join(f"{k} {x}" for k, x in v["project"].items())
          + "; peers (python " + v["peers_python"] + "): " + ", ".join(f"{k} {x}" for k, x in v["peers"].items()))
    print(f"total {result['total_seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
