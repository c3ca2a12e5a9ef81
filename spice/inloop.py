"""SPICE in the loop: ngspice itself solves every MVM of a DNN's crossbar tiles (any circuit file).

For small evaluations only: one multi-vector ngspice run (a DC sweep, :func:`spice.ngspice.solve`)
per tile per call, ~100 vectors/s at 64x64 with KLU on this kind of machine, thousands of times slower
than the exact solvers of :mod:`spice.exact` and :mod:`spice.nodal`. Every call logs its cost, and every
tile advances :data:`spice.exact.PROGRESS` (a bar on a terminal, a log line every ~20 s otherwise). A
vector ngspice cannot solve, or whose currents are not physically possible for the circuit, raises
:class:`InLoopError` naming the tile and vector.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from spice import ngspice
from spice.circuit import CircuitSpec
from spice.exact import PROGRESS

log = logging.getLogger(__name__)

SMALL_SIGNAL_FRACTION = 1e-3
"""Input of the small-signal solves (gradients only), as a fraction of v_read_max_v."""


class InLoopError(RuntimeError):
    """ngspice failed on, or gave an implausible answer for, one or more vectors of a tile."""


class SpiceArray:
    """The tiles ``g_s`` [T, rows, cols] (S) of circuit ``spec``, solved by ngspice on every call.

    ``check`` is :func:`spice.ngspice.check_circuit`'s result for ``spec`` (bounds the currents).
    """

    def __init__(self, spec: CircuitSpec, g_s: torch.Tensor, check: ngspice.CircuitCheck) -> None:
        if g_s.ndim != 3 or tuple(g_s.shape[1:]) != (spec.rows, spec.cols):
            raise ValueError(f"g_s has shape {tuple(g_s.shape)}; expected [T, {spec.rows}, {spec.cols}]")
        self.spec, self.check = spec, check
        self.g_s = g_s.detach().cpu().to(torch.float64).numpy()
        self.seconds = 0.0
        self.vectors = 0

    def currents(self, v_v: torch.Tensor) -> torch.Tensor:
        """Column currents [T, B, cols] (A) for row voltages ``v_v`` [T, B, rows] (V): one ngspice run per tile."""
        spec = self.spec
        if v_v.ndim != 3 or v_v.shape[0] != len(self.g_s) or v_v.shape[2] != spec.rows:
            raise ValueError(f"v_v has shape {tuple(v_v.shape)}; expected [{len(self.g_s)}, B, {spec.rows}]")
        v = v_v.detach().cpu().to(torch.float64).numpy()
        t0 = time.perf_counter()
        out = np.empty(v.shape[:2] + (spec.cols,))
        for t, (g, vt) in enumerate(zip(self.g_s, v, strict=True)):
            if vt.shape[0] == 0:
                continue
            i_a, failed = ngspice.solve(spec, g, vt)
            reasons = np.where(failed, "did not converge", ngspice.implausible_samples(i_a, self.check, vt))
            bad = np.flatnonzero(reasons != "")
            if bad.size:
                shown = ", ".join(f"vector {k}: {reasons[k]}" for k in bad[:5])
                raise InLoopError(f"ngspice in the loop, circuit file {spec.netlist_path or spec.name}: tile {t}, "
                                  f"{bad.size} vector(s) failed ({shown}{', ...' if bad.size > 5 else ''})")
            out[t] = i_a
            PROGRESS.advance(vt.shape[0], f"ngspice, tile {t + 1} of {len(self.g_s)}, {vt.shape[0]} vectors of "
                                          f"{spec.rows}x{spec.cols}")
        seconds = time.perf_counter() - t0
        self.seconds += seconds
        self.vectors += v.shape[0] * v.shape[1]
        log.info("ngspice in the loop: %d tiles x %d vectors of %dx%d in %.2f s (%.0f vectors/s; %.1f s so far)",
                 v.shape[0], v.shape[1], spec.rows, spec.cols, seconds, v.shape[0] * v.shape[1] / max(seconds, 1e-9),
                 self.seconds)
        return torch.as_tensor(out, dtype=torch.float64, device=v_v.device)

    def small_signal_transfer(self) -> torch.Tensor:
        """dI/dV at zero input [T, rows, cols] (A/V): central differences of rows pairs of tiny inputs."""
        rows = self.spec.rows
        dv = SMALL_SIGNAL_FRACTION * self.spec.v_read_max_v
        eye = torch.eye(rows, dtype=torch.float64) * dv
        basis = torch.cat([eye, -eye]).expand(len(self.g_s), 2 * rows, rows)
        i = self.currents(basis)
        return (i[:, :rows] - i[:, rows:]) / (2 * dv)


def spice_array_fn(spec: CircuitSpec):
    """``g_s -> SpiceArray``, after ngspice has run a 2x2 copy of the circuit in a child process (a
    circuit file it rejects raises :class:`spice.circuit.CircuitError` here, not in the DNN loop)."""
    check = ngspice.check_circuit(spec)

    def bind(g_s: torch.Tensor) -> SpiceArray:
        return SpiceArray(spec, g_s, check)

    return bind
