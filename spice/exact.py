"""Exact solve of a crossbar with non-linear cells, batched over tiles and input vectors (torch, float64).

The independent reference of the DNN stage's "exact" mode for the shipped non-linear cells: the sinh
memristor of ``data/circuits/memristor_sinh.cir`` (``I = g/b sinh(b V)``), the 1T1R cell of
``data/circuits/one_t_one_r.cir`` (a resistor ``1/g`` in series with a level-1 NMOS whose gate is
held at the spec's ``v_gate_v``) and the passive 1S1R cell of ``data/circuits/one_s_one_r.cir`` (a
selector of two antiparallel diodes in series with ``1/g``), with the array's default driver and sense
resistors (wire, driver and sense resistances; ``r_sense_ohm = 0`` is a virtual ground) or the op-amp
TIA sense of ``data/circuits/tia_sense.cir`` (:func:`sense_resistance_ohm`). It shares no code with the
surrogate package and none with :mod:`spice.netlist`: it reads the cell's element lines itself
(:func:`cell_model`, :func:`sense_resistance_ohm`) and refuses, with :class:`UnsupportedCircuitError`,
any circuit whose cell, driver or sense it cannot solve (use the SPICE-in-the-loop tile mode, :mod:`spice.inloop`, for those).

Equations. With cell currents ``I[r, c]`` (A, row node to column node) the resistor ladders are
linear, and a node voltage is a Green's-function sum of the cell currents (no node elimination):

    a[r, c] = v[r] - sum_c' (r_driver + r_wire_row (min(c, c') + 1)) I[r, c']    (row node of cell r, c)
    s[r, c] = sum_r' (r_sense + r_wire_col (rows - max(r, r'))) I[r', c]          (column node of cell r, c)

and ``I[r, c] = f(a[r, c], s[r, c]; g[r, c])`` is the cell's I-V relation. The output of column c
is the current into its sense element, ``sum_r I[r, c]``. Both sums are applied in O(rows x cols)
by cumulative sums.

Solver. One sweep is a chord-Newton step on every row line (column voltages fixed) followed by one
on every column line (row voltages fixed); each line's Jacobian ``1 + R_line diag(dI/dV)`` is taken
at the small-signal point (v = 0) and inverted once per tile at construction (the "linear
factorization" of the tile). Sweeps are accelerated by Anderson mixing; a vector has converged when
its largest node-voltage step is below ``rel_tol`` of its largest input voltage. Vectors that do not
converge are retried alone with damped (unaccelerated) sweeps, then by source stepping; a vector
that still fails raises :class:`ArrayConvergenceError` naming its tile and vector (never dropped).

Cells with an internal node (1T1R, 1S1R) carry its voltage from sweep to sweep: each sweep takes one
local Newton step per cell from the previous value (instead of solving it to convergence at every
evaluation, ~6 steps each, twice per sweep), the column lines see the row step through dI/da, and a vector
has converged when the internal steps are below the tolerance too; the final currents solve the internal
node to ``inner_rel_tol``. Large sweeps run through ``torch.compile`` (one fused loop instead of ~60
passes over memory). Measured on the 1S1R 16x16 tile: ``bench/bench_exact.py --compare``
(``bench/exact_speed.json``). Progress of long solves: :data:`PROGRESS`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spice.circuit import CircuitError, CircuitSpec
from xbarchar.progress import Progress

log = logging.getLogger(__name__)

SPICE_GMIN_S = 1e-12
"""ngspice's default minimum conductance across every junction (option ``gmin``)."""
THERMAL_VOLTAGE_V = 1.38064852e-23 * 300.15 / 1.6021766208e-19
"""kT/q at ngspice's nominal temperature (27 C), with ngspice's constants."""
DEFAULT_JUNCTION_IS_A = 1e-14
"""Level-1 MOSFET bulk junction saturation current when the model card gives none (ngspice default)."""
DEFAULT_DIODE_IS_A = 1e-14
"""Diode saturation current when the model card gives none (ngspice default)."""


SMALL_SIGNAL_FRACTION = 1e-6
"""Input of the small-signal solves, as a fraction of v_read_max_v."""


WORK_DTYPE = torch.float32
"""Precision of the chord corrections and of the Anderson history. Both only choose the next iterate:
residuals, steps, the convergence test and the answer are float64, so the fixed point (the solution of
the float64 equations) does not depend on it."""


ANDERSON_RIDGE = 1e-6
"""Ridge added to the unit-diagonal normal equations of the Anderson step (above float32 round-off)."""


class UnsupportedCircuitError(CircuitError):
    """The exact non-linear solver cannot solve this circuit (the message names the file and line)."""


class ArrayConvergenceError(RuntimeError):
    """A Newton solve did not converge after every retry; the message names the tile and vector."""


# ----------------------------------------------------------------------------- progress
PROGRESS = Progress(stage="exact solve", unit="tile-vectors", logger=log, enabled=None)
"""The process's one progress record (the exact and the SPICE-in-the-loop solvers advance it): a bar on a
terminal, a log line every ~20 s otherwise, nothing under ``--no-progress`` or ``--quiet``; :meth:`~xbarchar.progress.Progress.expect` sets the total and
names the stage (e.g. 'calibration', 'BN adaptation', 'evaluation')."""


# ----------------------------------------------------------------------------- cell models
def _series_root(residual: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, tol_v: float, max_iter: int
                 ) -> torch.Tensor:
    """Per cell, the root in [lo, hi] of a residual h(x) that decreases in x (the internal node of a cell with
    an element in series): safeguarded Newton. ``residual(x)`` -> (h, -dh/dx > 0). The bracket shrinks
    to the side of the root that the sign of h shows; a Newton step that leaves it bisects instead.
    Stops when no cell moved by more than ``tol_v`` (V) or after ``max_iter`` steps."""
    for _ in range(max_iter):
        h, slope = residual(x)
        above = h > 0  # the root lies above x
        lo = torch.where(above, x, lo)
        hi = torch.where(above, hi, x)
        x_new = x + h / slope
        x_new = torch.where((x_new >= lo) & (x_new <= hi), x_new, 0.5 * (lo + hi))  # NaN bisects too
        done = float(torch.max(torch.abs(x_new - x))) <= tol_v if x.numel() else True
        x = x_new
        if done:
            break
    return x


@dataclass(frozen=True)
class LinearCell:
    """Resistive cell ``R row col {1/g}``: solved exactly by :func:`spice.nodal.transfer_matrix`, and by
    :class:`ArraySolver` where each vector reads its own conductances (per-read noise)."""

    kind: str = "linear"

    def current(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor) -> torch.Tensor:
        """Cell current (A)."""
        return g_s * (a_v - s_v)

    def small_signal_s(self, g_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dI/da, -dI/ds) (S)."""
        return g_s, g_s


@dataclass(frozen=True)
class SinhCell:
    """Memristor ``I = g/b sinh(b V)`` (A) with ``b_per_v`` (1/V); dI/dV = g at 0 V."""

    b_per_v: float
    kind: str = "sinh"

    def currents(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cell current (A) and its derivatives w.r.t. the row and column node voltages (S)."""
        x = self.b_per_v * (a_v - s_v)
        i = g_s / self.b_per_v * torch.sinh(x)
        di = g_s * torch.cosh(x)
        return i, di, -di

    def current(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor) -> torch.Tensor:
        """Cell current (A) only."""
        x = a_v - s_v
        x *= self.b_per_v
        torch.sinh(x, out=x)
        x *= g_s
        x /= self.b_per_v
        return x

    def small_signal_s(self, g_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dI/da, -dI/ds) at zero bias (S)."""
        return g_s, g_s


class _SeriesCell:
    """What a cell with an element in series with ``1/g`` derives from its ``currents``
    (row node a, column node s -> current and its derivatives), solved per cell, and from its
    ``local`` equation (the internal node between the resistor and the element)."""

    def currents(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor, u_v: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def local(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor) -> tuple[
            Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], torch.Tensor, torch.Tensor]:
        """(residual, lo, hi): the internal node's equation ``h(u) = g (d - u) - I_element(u)`` (A) with
        ``-dh/du`` (S), decreasing in u, whose root lies in [lo, hi] (V); d = a - s."""
        raise NotImplementedError

    def start_v(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor) -> torch.Tensor:
        """A first estimate of the internal node voltage u (V), inside the bracket of :meth:`local`."""
        raise NotImplementedError

    def step(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor, u_v: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One Newton step on the internal node from ``u_v`` (clamped to the bracket): (u, cell current
        ``g (d - u)`` at the new u (A), dI/da at the old u (S)). Warm-started from the previous sweep's u,
        one step is second-order accurate in the change of the cell voltage since that sweep."""
        residual, lo, hi = self.local(g_s, a_v, s_v)
        h, slope = residual(u_v)
        u_new = torch.minimum(torch.maximum(u_v + h / slope, lo), hi)
        g = g_s.expand_as(a_v)
        return u_new, g * (a_v - s_v - u_new), g - g * g / slope

    def current(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor) -> torch.Tensor:
        """Cell current (A) only."""
        return self.currents(g_s, a_v, s_v)[0]

    def small_signal_s(self, g_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dI/da, -dI/ds) at zero bias (S): the series of g and the element's zero-bias conductance."""
        zero = torch.zeros_like(g_s)
        _, di_da, di_ds = self.currents(g_s, zero, zero)
        return di_da, -di_ds


@dataclass(frozen=True)
class OneTOneRCell(_SeriesCell):
    """Resistor ``1/g`` from the row to the drain of a level-1 (Shichman-Hodges) NMOS whose source and
    bulk are the column node and whose gate is at ``v_gate_v``; ngspice's MOS1 DC equations: drain and
    source swap when vds < 0, drain-bulk junction ``is_a (exp(vbd/vt) - 1) + gmin vbd``."""

    v_gate_v: float
    vto_v: float
    beta_a_per_v2: float
    """kp * W / (L - 2 LD)."""
    lambda_per_v: float
    is_a: float = DEFAULT_JUNCTION_IS_A
    gmin_s: float = SPICE_GMIN_S
    kind: str = "1t1r"
    inner_rel_tol: float = 1e-15
    """Drain voltage solved to this fraction of the largest cell voltage (V/V)."""
    inner_max_iter: int = 60

    def _channel(self, u: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Drain-to-source channel current (A) for vds = u, vgs = w, and its derivatives d/du, d/dw (S)."""
        fwd = u >= 0
        vds = torch.where(fwd, u, -u)
        vgst = torch.where(fwd, w, w - u) - self.vto_v
        arg = 1.0 + self.lambda_per_v * vds
        beta = self.beta_a_per_v2
        on = vgst > 0
        sat = vgst <= vds
        cd = torch.where(sat, 0.5 * beta * vgst * vgst * arg, beta * vds * (vgst - 0.5 * vds) * arg)
        d_vgst = torch.where(sat, beta * vgst * arg, beta * vds * arg)
        d_vds = torch.where(sat, 0.5 * beta * vgst * vgst * self.lambda_per_v,
                            beta * (vgst - vds) * arg + beta * vds * (vgst - 0.5 * vds) * self.lambda_per_v)
        zero = torch.zeros_like(cd)
        cd, d_vgst, d_vds = (torch.where(on, x, zero) for x in (cd, d_vgst, d_vds))
        ids = torch.where(fwd, cd, -cd)
        d_du = torch.where(fwd, d_vds, d_vgst + d_vds)
        d_dw = torch.where(fwd, d_vgst, -d_vgst)
        return ids, d_du, d_dw

    def _junction(self, vbd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bulk-to-drain junction current (A) and conductance (S), as ngspice's MOS1 computes them."""
        vt = THERMAL_VOLTAGE_V
        e = torch.exp(torch.clamp(vbd / vt, max=709.0))
        deep = vbd <= -3.0 * vt
        i = torch.where(deep, self.gmin_s * vbd - self.is_a, self.is_a * (e - 1.0) + self.gmin_s * vbd)
        gd = torch.where(deep, torch.full_like(vbd, self.gmin_s), self.is_a * e / vt + self.gmin_s)
        return i, gd

    def local(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor) -> tuple[
            Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], torch.Tensor, torch.Tensor]:
        """The drain equation ``g (d - u) = Ids(u, vgs) - Ibd(-u)`` with ``u`` = vds, ``d`` = a - s,
        vgs = v_gate - s; the root lies in [0, d]."""
        g_s = g_s.expand_as(a_v)
        d = a_v - s_v
        w = self.v_gate_v - s_v
        zero = torch.zeros_like(d)

        def residual(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            ids, d_du, _ = self._channel(u, w)
            ibd, gbd = self._junction(-u)
            return g_s * (d - u) - ids + ibd, g_s + d_du + gbd

        return residual, torch.minimum(d, zero), torch.maximum(d, zero)

    def start_v(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor) -> torch.Tensor:
        """The series-resistor estimate of vds, or the linear-region root where the channel is on."""
        g_s = g_s.expand_as(a_v)
        d = a_v - s_v
        vgst = self.v_gate_v - s_v - self.vto_v
        g_ch0 = self.beta_a_per_v2 * torch.clamp(vgst, min=0.0) + self.gmin_s
        u = d * g_s / (g_s + g_ch0)
        # linear region, either direction (drain and source swapped when d < 0 give the same equation):
        # g (d - u) = beta u (vgst - u / 2) without lambda and junction, a quadratic whose root starts
        # Newton next to the answer (one step to converge instead of ~four)
        b = self.beta_a_per_v2 * vgst + g_s
        u_lin = 2.0 * g_s * d / (b + torch.sqrt(torch.clamp(b * b - 2.0 * self.beta_a_per_v2 * g_s * d, min=0.0)))
        u = torch.where((vgst > 0) & (u_lin <= vgst), u_lin, u)
        zero = torch.zeros_like(d)
        return torch.minimum(torch.maximum(u, torch.minimum(d, zero)), torch.maximum(d, zero))

    def currents(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor, u_v: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cell current (A) and its derivatives w.r.t. the row and column node voltages (S).

        The drain voltage is solved per cell (:func:`_series_root` from ``u_v``, by default
        :meth:`start_v`, in the bracket [0, cell voltage] where the root lies, see :meth:`local`).
        """
        residual, lo, hi = self.local(g_s, a_v, s_v)
        g_s = g_s.expand_as(a_v)
        d = a_v - s_v
        w = self.v_gate_v - s_v
        u = self.start_v(g_s, a_v, s_v) if u_v is None else torch.minimum(torch.maximum(u_v, lo), hi)
        u = _series_root(residual, u, lo, hi,
                         self.inner_rel_tol * float(torch.max(torch.abs(d))) if d.numel() else 0.0, self.inner_max_iter)
        ids, d_du, d_dw = self._channel(u, w)
        _, gbd = self._junction(-u)
        big_h = g_s + d_du + gbd
        i = g_s * (d - u)
        di_da = g_s * (1.0 - g_s / big_h)
        di_ds = -g_s * (big_h + d_dw - g_s) / big_h
        return i, di_da, di_ds


@dataclass(frozen=True)
class OneSOneRCell(_SeriesCell):
    """Passive 1S1R cell: a selector of two antiparallel diodes in series with the resistor ``1/g`` (either
    order). Each diode follows ngspice's DC diode equations (``DIOload``, no series resistance, breakdown
    or capacitance, at the nominal 27 C): with ``vte = n kT/q``,

        vd >= -3 vte:  I = is (exp(vd/vte) - 1) + gmin vd
        vd <  -3 vte:  I = -is (1 + (3 vte / (e vd))^3) + gmin vd    (ngspice's reverse region)

    so the pair passes ``D(x) - D(-x)`` (about ``2 is sinh(x/vte)``) at selector voltage x."""

    is_a: float
    """Saturation current of each diode (A)."""
    n: float
    """Emission coefficient of each diode."""
    gmin_s: float = SPICE_GMIN_S
    kind: str = "1s1r"
    inner_rel_tol: float = 1e-15
    """Selector voltage solved to this fraction of the largest cell voltage (V/V)."""
    inner_max_iter: int = 60

    def _selector(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Current (A) of the antiparallel pair at voltage x, ``D(x) - D(-x)``, and its conductance (S).

        Odd in x; with y = |x| and E = exp(y/vte) the forward diode passes ``is (E - 1) + gmin y``, the
        reverse one ``is (1/E - 1) - gmin y`` up to y = 3 vte and ``-is (1 - c) - gmin y`` beyond, with
        c = (3 vte / (e y))^3 (ngspice's reverse region, conductance ``3 is c / y + gmin``)."""
        vte = self.n * THERMAL_VOLTAGE_V
        y = torch.abs(x)
        e = torch.exp(torch.clamp(y / vte, max=709.0))
        rev = y > 3.0 * vte
        y_rev = torch.where(rev, y, 3.0 * vte)
        c = (3.0 * vte / (math.e * y_rev)) ** 3
        q = torch.where(rev, c, 1.0 / e)
        r = torch.where(rev, 3.0 * c / y_rev, 1.0 / (e * vte))
        p = self.is_a * (e - q) + 2.0 * self.gmin_s * y
        gp = self.is_a * (e / vte + r) + 2.0 * self.gmin_s
        return torch.copysign(p, x), gp

    def local(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor) -> tuple[
            Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], torch.Tensor, torch.Tensor]:
        """The selector equation ``g (d - x) = P(x)`` with ``d`` = a - s and P the pair's current; the
        root lies in [0, d] (conductances g > 0)."""
        g_s = g_s.expand_as(a_v)
        d = a_v - s_v
        zero = torch.zeros_like(d)

        def residual(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p, gp = self._selector(x)
            return g_s * (d - x) - p, g_s + gp

        return residual, torch.minimum(d, zero), torch.maximum(d, zero)

    def start_v(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor) -> torch.Tensor:
        """One Newton step on the current from i = g d (the resistor alone), with the pair taken as
        2 is sinh(x/vte): i/g + vte asinh(i / (2 is)) = d is concave in i, so the step lands just below the
        root's current, within a few mV of its selector voltage (then six steps to 1e-15 V at reads to 1 V)."""
        g_s = g_s.expand_as(a_v)
        d = a_v - s_v
        zero = torch.zeros_like(d)
        vte = self.n * THERMAL_VOLTAGE_V
        u = g_s * d / (2.0 * self.is_a)
        i = g_s * d - vte * torch.asinh(u) / (1.0 / g_s + vte / (2.0 * self.is_a * torch.sqrt(1.0 + u * u)))
        return torch.minimum(torch.maximum(d - i / g_s, torch.minimum(d, zero)), torch.maximum(d, zero))

    def currents(self, g_s: torch.Tensor, a_v: torch.Tensor, s_v: torch.Tensor, u_v: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cell current (A) and its derivatives w.r.t. the row and column node voltages (S).

        The selector voltage x is solved per cell (:func:`_series_root` from ``u_v``, by default
        :meth:`start_v`, bracket [0, cell voltage], see :meth:`local`).
        """
        residual, lo, hi = self.local(g_s, a_v, s_v)
        g_s = g_s.expand_as(a_v)
        d = a_v - s_v
        x = self.start_v(g_s, a_v, s_v) if u_v is None else torch.minimum(torch.maximum(u_v, lo), hi)
        x = _series_root(residual, x, lo, hi,
                         self.inner_rel_tol * float(torch.max(torch.abs(d))) if d.numel() else 0.0, self.inner_max_iter)
        _, gp = self._selector(x)
        di = g_s * gp / (g_s + gp)
        return g_s * (d - x), di, -di


CellModel = LinearCell | SinhCell | OneTOneRCell | OneSOneRCell


# ----------------------------------------------------------------------------- reading the circuit file
_SUFFIX = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "mil": 25.4e-6, "m": 1e-3, "u": 1e-6, "n": 1e-9,
           "p": 1e-12, "f": 1e-15}
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(meg|mil|[tgkmunpf])?[a-z]*$", re.IGNORECASE)


def spice_number(text: str) -> float | None:
    """A SPICE number with its scale suffix (``2u`` -> 2e-6, ``1meg`` -> 1e6); None if it is not one."""
    m = _NUMBER.match(text.strip())
    if m is None:
        return None
    return float(m.group(1)) * _SUFFIX.get((m.group(2) or "").lower(), 1.0)


_ASSIGNMENT = re.compile(r"(\w+)\s*=\s*(\{[^}]*\}|[^\s()]+)")


def _assignments(text: str) -> dict[str, str]:
    return {k.lower(): v for k, v in _ASSIGNMENT.findall(text)}


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _model_card(model_text: str) -> tuple[str, dict[str, float | None]]:
    """(device type, {parameter: number}) of a ``.model`` card's text after its name (``d (is=1n n=1.5)``);
    a value that is not a number, and any word that is not ``name=value``, map to None."""
    m = re.match(r"\s*(\w+)", model_text)
    mtype, rest = (m.group(1).lower(), model_text[m.end():]) if m else ("", model_text)
    values: dict[str, float | None] = {k: spice_number(v.strip("{}")) for k, v in _assignments(rest).items()}
    values.update({w.lower(): None for w in _ASSIGNMENT.sub(" ", rest).replace("(", " ").replace(")", " ").split()})
    return mtype, values


_HINT = ("; the exact non-linear solver knows the resistive, sinh, level-1 1T1R and diode-selector 1S1R cells "
         "with the default driver, and a resistor or the op-amp TIA as sense: evaluate this circuit with ngspice in "
         "the loop instead "
         "(`python -m dnn evaluate --mvm spice`, small evaluations only)")


def _read_subckts(spec: CircuitSpec):
    """({name: header line}, {name: [(line number, element line)]}, {model name: (line number, text)}) of the
    circuit file, as :mod:`spice.circuit` parsed it; a dot command other than .subckt/.ends/.model raises."""
    source = spec.netlist_path or f"<{spec.name}>"
    for line in spec.vetted_lines():
        first = line.text.split()[0].lower()
        if first.startswith(".") and first not in (".subckt", ".ends", ".model"):
            raise UnsupportedCircuitError(f"circuit file {source}, line {line.line_number}: '{first}' is not "
                                          f"read by the exact solver{_HINT}")
    subckts = spec.subckts()
    headers = {name: sub.header for name, sub in subckts.items()}
    bodies = {name: [(line.line_number, line.text) for line in sub.body
                     if not line.text.split()[0].startswith(".")] for name, sub in subckts.items()}
    models = {name: (line.line_number, " ".join(line.text.split()[2:])) for name, line in spec.models().items()}
    return headers, bodies, models


def sense_resistance_ohm(spec: CircuitSpec) -> float:
    """The resistance (ohm) from each column's sense input to ground that the exact solvers use.

    The default sense: ``spec.r_sense_ohm``. The op-amp transimpedance amplifier of
    ``data/circuits/tia_sense.cir`` (``R in out {r}`` and ``E out 0 0 in A``): its input sits at
    ``i r / (1 + A)``, a resistor ``r_sense_ohm / (1 + A)`` to ground (the column current still flows
    through the feedback resistor). Any other sense subcircuit raises :class:`UnsupportedCircuitError`.
    """
    if "sense" not in spec.subckts():
        return spec.r_sense_ohm
    source = spec.netlist_path or f"<{spec.name}>"
    headers, bodies, _models = _read_subckts(spec)
    body = bodies["sense"]
    pin = spec.subckts()["sense"].pins[0]
    r_el = [w.lower().split() for _n, w in body if w[0] in "rR"]
    e_el = [w.lower().split() for _n, w in body if w[0] in "eE"]
    if len(body) == 2 and len(r_el) == 1 and len(e_el) == 1 and len(r_el[0]) == 4 and len(e_el[0]) == 6:
        (_r, r_a, r_b, r_val), (_e, e_out, e_ref, e_p, e_n, e_gain) = r_el[0], e_el[0]
        gain = spice_number(e_gain)
        if (r_a == pin and r_b == e_out and _compact(r_val) == "{r}" and e_ref == "0" and e_p == "0" and e_n == pin
                and gain is not None and gain > 0):
            return spec.r_sense_ohm / (1.0 + gain)
    number = body[0][0] if body else headers["sense"].line_number
    raise UnsupportedCircuitError(f"circuit file {source}, line {number}: custom '.subckt sense' cannot be solved "
                                  f"exactly (only 'R in out {{r}}' with 'E out 0 0 in <gain>' is known){_HINT}")


def cell_model(spec: CircuitSpec) -> CellModel:
    """The cell of ``spec``'s circuit file as a model the exact solvers handle.

    Recognized cells: one ``R row col {1/g}`` (:class:`LinearCell`); one
    ``B row col I={g/b*sinh(b*V(row,col))}`` with ``b`` a number or a subcircuit parameter
    (:class:`SinhCell`); ``R row mid {1/g}`` with ``M mid gate col col <nmos level=1 model>``
    (:class:`OneTOneRCell`); ``R`` ``{1/g}`` from one pin to an internal node and two antiparallel diodes of
    one ``d`` model (only ``is``, ``n``, ``rs = 0``) from there to the other pin (:class:`OneSOneRCell`).
    Anything else, a custom driver, and a sense subcircuit other than the TIA
    (:func:`sense_resistance_ohm`) raise
    :class:`UnsupportedCircuitError` naming the circuit file (and the line) and the SPICE-in-the-loop mode.
    """
    source = spec.netlist_path or f"<{spec.name}>"
    if "driver" in spec.subckts():
        raise UnsupportedCircuitError(f"circuit file {source}: custom '.subckt driver' cannot be solved "
                                      f"exactly{_HINT}")
    sense_resistance_ohm(spec)  # raises for a sense subcircuit other than the TIA
    headers, bodies, models = _read_subckts(spec)
    header, body = headers["cell"], bodies["cell"]
    pins = spec.subckts()["cell"].pins
    row, col = pins[0], pins[1]
    gate = pins[2] if len(pins) == 3 else None
    params = _assignments(header.text.split(":", 1)[1] if "params:" in header.text.lower() else "")

    def refuse(number: int, why: str) -> UnsupportedCircuitError:
        return UnsupportedCircuitError(f"circuit file {source}, line {number}: {why}{_HINT}")

    elements = []
    for number, text in body:
        words = text.split()
        kind = words[0][0].lower()
        if kind not in "rbmd":
            raise refuse(number, f"cell element '{words[0]}' (type '{kind}') is not a known cell part")
        elements.append((number, kind, [w.lower() for w in words[1:]], text))
    kinds = sorted(k for _n, k, _w, _t in elements)
    if kinds == ["r"] and gate is None:
        number, _k, words, _t = elements[0]
        if words[:2] not in ([row, col], [col, row]) or _compact(" ".join(words[2:])) != "{1/g}":
            raise refuse(number, "a resistive cell must be 'R1 row col {1/g}'")
        return LinearCell()
    if kinds == ["b"] and gate is None:
        number, _k, words, text = elements[0]
        expr = _compact(text.split(None, 3)[3]) if len(text.split()) > 3 else ""
        m = re.fullmatch(r"i=\{g/(\w+|[\d.e+-]+)\*sinh\(\1\*v\((\w+),(\w+)\)\)\}", expr)
        if m is None or words[:2] != [row, col] or (m.group(2), m.group(3)) != (row, col):
            raise refuse(number, "a sinh cell must be 'B1 row col I={g/b*sinh(b*V(row,col))}'")
        b_text = params.get(m.group(1), m.group(1))
        b = spice_number(b_text)
        if b is None or not b > 0:
            raise refuse(number, f"sinh cell: b = {b_text!r} is not a positive number")
        return SinhCell(b_per_v=b)
    if kinds == ["m", "r"] and gate is not None:
        r_el = next(e for e in elements if e[1] == "r")
        m_el = next(e for e in elements if e[1] == "m")
        rn, _k, rw, _t = r_el
        mn, _k, mw, mt = m_el
        if rw[0] != row or _compact(" ".join(rw[2:])) != "{1/g}":
            raise refuse(rn, "a 1T1R cell's resistor must be 'R1 row mid {1/g}'")
        mid = rw[1]
        if len(mw) < 5 or mw[:4] != [mid, gate, col, col]:
            raise refuse(mn, "a 1T1R cell's transistor must be 'M1 mid gate col col <model> W=.. L=..'")
        inst = _assignments(" ".join(mt.split()[6:]))
        unknown = set(inst) - {"w", "l"}
        if unknown:
            raise refuse(mn, f"transistor instance parameter(s) {sorted(unknown)} are not supported")
        w_m, l_m = spice_number(inst.get("w", "100u")), spice_number(inst.get("l", "100u"))
        if mw[4] not in models:
            raise refuse(mn, f"model '{mw[4]}' is not defined in the circuit file")
        model_line, model_text = models[mw[4]]
        mtype, values = _model_card(model_text)
        allowed = {"level", "vto", "kp", "lambda", "ld", "is", "gamma"}
        bad = sorted(k for k, v in values.items() if k not in allowed or v is None)
        if mtype != "nmos" or values.get("level", 1.0) != 1.0 or values.get("gamma", 0.0) != 0.0 or bad:
            raise refuse(model_line, "the 1T1R transistor must be a level-1 nmos with only vto, kp, lambda, ld, "
                                     f"is (gamma 0){'; unsupported: ' + ', '.join(bad) if bad else ''}")
        if "kp" not in values or w_m is None or l_m is None:
            raise refuse(model_line, "the 1T1R transistor needs kp on its model card and numeric W and L")
        l_eff = l_m - 2.0 * values.get("ld", 0.0)
        return OneTOneRCell(v_gate_v=spec.v_gate_v, vto_v=values.get("vto", 0.0),
                            beta_a_per_v2=values["kp"] * w_m / l_eff, lambda_per_v=values.get("lambda", 0.0),
                            is_a=values.get("is", DEFAULT_JUNCTION_IS_A))
    if "d" in kinds:
        return _one_s_one_r(elements, models, row, col, gate, refuse)
    number = elements[0][0] if elements else header.line_number
    raise refuse(number, f"cell made of {kinds or 'nothing'} is not a known cell")


def _one_s_one_r(elements, models, row: str, col: str, gate: str | None, refuse) -> OneSOneRCell:
    """The 1S1R cell of a cell body with diodes (``elements``: (line number, kind, lower-case words after the
    name, text)): a resistor ``{1/g}`` from one pin to an internal node, and two antiparallel diodes of one
    model from that node to the other pin. Anything else raises through ``refuse(line number, why)``."""
    shape = ("a 1S1R cell is two antiparallel diodes of one model in series with the resistor, e.g. "
             "'D1 row mid <model>', 'D2 mid row <model>', 'R1 mid col {1/g}' (or the resistor on the row side)")
    diodes = [e for e in elements if e[1] == "d"]
    resistors = [e for e in elements if e[1] == "r"]
    if len(diodes) != 2 or len(resistors) != 1 or len(elements) != 3 or gate is not None:
        number, _k, _w, text = diodes[0]
        raise refuse(number, f"cell element '{text.split()[0]}': {shape}")
    rn, _k, rw, _t = resistors[0]
    pins = (row, col)
    ends = rw[:2]
    inner = [n for n in ends if n not in pins and n != "0"]
    if len(rw) < 3 or _compact(" ".join(rw[2:])) != "{1/g}" or len(inner) != 1 or not set(ends) & set(pins):
        raise refuse(rn, f"the resistor must be '{{1/g}}' between one pin and an internal node: {shape}")
    mid = inner[0]
    other = col if row in ends else row
    for dn, _k, dw, dt in diodes:
        if len(dw) != 3:
            raise refuse(dn, f"diode '{dt.split()[0]}': instance parameters (area, m, temp, off ...) are not "
                             f"supported; {shape}")
    if sorted(tuple(dw[:2]) for _n, _k, dw, _t in diodes) != sorted([(mid, other), (other, mid)]):
        raise refuse(diodes[0][0], f"the diodes must be antiparallel between '{mid}' and '{other}': {shape}")
    model_names = {dw[2] for _n, _k, dw, _t in diodes}
    if len(model_names) != 1:
        raise refuse(diodes[1][0], f"both diodes must use one model: {shape}")
    name = model_names.pop()
    if name not in models:
        raise refuse(diodes[0][0], f"model '{name}' is not defined in the circuit file")
    model_line, model_text = models[name]
    mtype, values = _model_card(model_text)
    bad = sorted(k for k, v in values.items() if k not in ("is", "n", "rs") or v is None)
    if (mtype != "d" or bad or values.get("rs", 0.0) != 0.0 or not values.get("is", 1.0) > 0
            or not values.get("n", 1.0) > 0):
        raise refuse(model_line, "the 1S1R selector's diodes need a 'd' model with only is > 0, n > 0 and rs = 0 "
                                 f"(no series resistance, capacitance or breakdown){'; unsupported: ' + ', '.join(bad) if bad else ''}")
    return OneSOneRCell(is_a=values.get("is", DEFAULT_DIODE_IS_A), n=values.get("n", 1.0))


# ----------------------------------------------------------------------------- the batched solver
@dataclass(frozen=True)
class NewtonOptions:
    """Convergence settings of :class:`ArraySolver` (one source of truth for their defaults)."""

    rel_tol: float = 1e-11
    """Converged when the largest node-voltage step is below this fraction of the largest |input| (V/V)."""
    max_iter: int = 200
    """Accelerated sweeps before a vector is retried."""
    anderson_depth: int = 5
    """Anderson history (sweeps); 0: plain sweeps."""
    anderson_after: int = 6
    """Plain sweeps before the Anderson history starts: an array whose sweeps contract fast (e.g. the 1S1R
    selector at 16x16, ~10 sweeps either way) converges without paying for the history."""
    damping: float = 0.5
    """Relaxation factor of the first retry (unaccelerated sweeps)."""
    retry_max_iter: int = 2000
    source_steps: int = 8
    """Source-stepping stages of the last retry (inputs scaled by k/source_steps)."""
    warm_internal: bool = True
    """Cells with an internal node (1T1R, 1S1R): every sweep takes one Newton step on each cell's internal
    node from the previous sweep's value, and a vector has converged when those steps are below the
    tolerance too (the answer then solves the cell equations to ``inner_rel_tol``). False: the internal
    node is solved to convergence at every cell evaluation (several times slower; the same answer)."""
    compile_min_cells: int | None = 2**18
    """Warm sweeps of at least this many cells x vectors x tiles run through ``torch.compile`` (fused
    loops, ~10x faster than eager; compiled once per process, ~10-40 s); None: always eager."""
    chunk_cells: int = 2**20
    """Vectors are solved in chunks of at most this many cells x vectors x tiles: small enough for the
    working arrays to stay mostly in cache (2 shared cores, 64x64 tiles: 2^19-2^20 measured faster than
    2^21, by up to 2x; the figures are noisy)."""


@dataclass(frozen=True)
class Ladders:
    """The resistor ladders of the array: driver and row-wire segments, sense and column-wire segments (ohm)."""

    r_driver_ohm: float
    r_wire_row_ohm: float
    r_sense_ohm: float
    r_wire_col_ohm: float

    def row_drop(self, i_a: torch.Tensor) -> torch.Tensor:
        """Voltage drop (V) from the row input to every row node, for cell currents [..., R, C] (A)."""
        total = i_a.sum(-1, keepdim=True)
        drop = self.r_driver_ohm * total
        if self.r_wire_row_ohm:
            seg = total - torch.cumsum(i_a, -1) + i_a  # current of the wire segment into node c
            drop = drop + self.r_wire_row_ohm * torch.cumsum(seg, -1)
        return drop

    def col_rise(self, i_a: torch.Tensor) -> torch.Tensor:
        """Voltage (V) of every column node above ground, for cell currents [..., R, C] (A)."""
        seg = torch.cumsum(i_a, -2)  # current of the wire segment below node r
        total = seg[..., -1:, :]
        rise = self.r_sense_ohm * total
        if self.r_wire_col_ohm:
            rise = rise + self.r_wire_col_ohm * (seg.sum(-2, keepdim=True) - torch.cumsum(seg, -2) + seg)
        return rise


def warm_sweep(cell: _SeriesCell, ladders: Ladders, v: torch.Tensor, x: torch.Tensor, g: torch.Tensor,
               m_row_t: torch.Tensor, m_col_t: torch.Tensor, u: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sweep of :class:`ArraySolver` for a series cell with warm internal nodes: one local Newton step on
    every cell's internal node from ``u`` [T, B, R, C] (V), a chord step on every row line, then on every
    column line (which sees the row step through dI/da). Returns (step [T, B, 2, R, C] of the row and
    column node voltages x (V), the new u, the largest node or internal step per vector [T, B] (V))."""
    a, s = x[:, :, 0], x[:, :, 1]
    u_new, i, di_da = cell.step(g, a, s, u)
    fa = ladders.row_drop(i) + a - v[..., None]
    da = torch.matmul(fa.transpose(1, 2).to(m_row_t.dtype), m_row_t).transpose(1, 2).to(x.dtype)
    fs = ladders.col_rise(i - di_da * da) - s
    ds = torch.matmul(fs.permute(0, 3, 1, 2).to(m_col_t.dtype), m_col_t).permute(0, 2, 3, 1).to(x.dtype)
    step = torch.stack((-da, ds), 2)
    biggest = torch.maximum(step.abs().flatten(2).amax(-1), (u_new - u).abs().flatten(2).amax(-1))
    return step, u_new, biggest


_COMPILED_WARM_SWEEP: list = []


def _compiled_warm_sweep():
    """:func:`warm_sweep` through ``torch.compile`` (fused loops; one compile per process and circuit), or
    None where it cannot be compiled here (then the sweeps run eagerly, with the same answer)."""
    if not _COMPILED_WARM_SWEEP:
        try:
            _COMPILED_WARM_SWEEP.append(torch.compile(warm_sweep, dynamic=True))
        except Exception as e:  # noqa: BLE001 - no compiler here: eager sweeps
            log.warning("exact solve: torch.compile unavailable (%s); sweeps run eagerly", e)
            _COMPILED_WARM_SWEEP.append(None)
    return _COMPILED_WARM_SWEEP[0]


class ArraySolver:
    """Column currents of T tiles with conductances ``g_s`` [T, rows, cols] (S) for input vectors
    ``v_v`` [T, B, rows] (V): :meth:`currents` -> [T, B, cols] (A). float64 on ``g_s``'s device.

    The per-line chord Jacobians are inverted here, once per tile.
    """

    def __init__(self, spec: CircuitSpec, cell: CellModel, g_s: torch.Tensor,
                 options: NewtonOptions | None = None) -> None:
        if g_s.ndim != 3 or tuple(g_s.shape[1:]) != (spec.rows, spec.cols):
            raise ValueError(f"g_s has shape {tuple(g_s.shape)}; expected [T, {spec.rows}, {spec.cols}]")
        self.spec, self.cell, self.options = spec, cell, options or NewtonOptions()
        self.g_s = g_s.detach().to(torch.float64)
        self.source = spec.netlist_path or f"<{spec.name}>"
        dev = self.g_s.device
        rows, cols = spec.rows, spec.cols
        c = torch.arange(cols, device=dev, dtype=torch.float64)
        r = torch.arange(rows, device=dev, dtype=torch.float64)
        r_row = spec.r_driver_ohm + spec.r_wire_row_ohm * (torch.minimum(c[:, None], c[None, :]) + 1.0)
        self.r_sense_ohm = sense_resistance_ohm(spec)
        self.ladders = Ladders(spec.r_driver_ohm, spec.r_wire_row_ohm, self.r_sense_ohm, spec.r_wire_col_ohm)
        r_col = self.r_sense_ohm + spec.r_wire_col_ohm * (rows - torch.maximum(r[:, None], r[None, :]))
        d_a, d_s = cell.small_signal_s(self.g_s)  # [T, R, C]
        eye_c = torch.eye(cols, device=dev, dtype=torch.float64)
        eye_r = torch.eye(rows, device=dev, dtype=torch.float64)
        # row line r of tile t: (1 + R_row diag(d_a[t, r])) ; column line c: (1 + R_col diag(d_s[t, :, c]))
        # stored transposed (to multiply row vectors from the right) in the working precision
        self.m_row = torch.linalg.inv(eye_c + r_row * d_a[:, :, None, :]).transpose(-1, -2).to(WORK_DTYPE).contiguous()
        self.m_col = torch.linalg.inv(eye_r + r_col * d_s.transpose(1, 2)[:, :, None, :]).transpose(-1, -2).to(
            WORK_DTYPE).contiguous()
        self.iterations: list[int] = []

    # ------------------------------------------------------------------ ladders
    def _row_drop(self, i_a: torch.Tensor) -> torch.Tensor:
        """Voltage drop (V) from the row input to every row node, for cell currents [..., R, C]."""
        return self.ladders.row_drop(i_a)

    def _col_rise(self, i_a: torch.Tensor) -> torch.Tensor:
        """Voltage (V) of every column node above ground, for cell currents [..., R, C]."""
        return self.ladders.col_rise(i_a)

    @property
    def _warm(self) -> bool:
        """Sweeps carry the cells' internal node voltages (a series cell, ``NewtonOptions.warm_internal``)."""
        return self.options.warm_internal and isinstance(self.cell, _SeriesCell)

    def _sweep(self, v, x, g, m_row_t, m_col_t):
        """One chord-Newton step on every row line, then on every column line, from state x [T, B, 2, R, C]
        (row and column node voltages), the cells solved to convergence. Returns the step [T, B, 2, R, C] (V)."""
        a, s = x[:, :, 0], x[:, :, 1]
        fa = self._row_drop(self.cell.current(g, a, s)) + a  # [T, B, R, C]
        fa -= v[..., None]
        da = torch.matmul(fa.transpose(1, 2).to(WORK_DTYPE), m_row_t).transpose(1, 2)
        fs = self._col_rise(self.cell.current(g, a - da.to(x.dtype), s)) - s
        ds = torch.matmul(fs.permute(0, 3, 1, 2).to(WORK_DTYPE), m_col_t).permute(0, 2, 3, 1)  # s_new = s + ds
        step = torch.empty_like(x)
        step[:, :, 0] = da
        step[:, :, 0].neg_()
        step[:, :, 1] = ds
        return step

    # ------------------------------------------------------------------ iteration
    def _iterate(self, v, x, g, m_row, m_col, accelerate: bool, omega: float, max_iter: int):
        """Sweeps (Anderson-accelerated, or relaxed by ``omega``) from state x [T, B, 2, R, C].

        Returns (x, converged [T, B], sweeps, internal node voltages or None). Converged vectors are
        frozen. With warm internal nodes (:attr:`_warm`) a vector has converged when its internal node
        step is below the tolerance too."""
        opt = self.options
        v_max = v.abs().amax(-1)
        conv = v_max == 0  # zero input: zero state
        x = torch.where(conv[..., None, None, None], torch.zeros_like(x), x)
        u = self.cell.start_v(g, x[:, :, 0], x[:, :, 1]) if self._warm else None
        sweep = warm_sweep
        if u is not None and opt.compile_min_cells is not None and x.numel() // 2 >= opt.compile_min_cells:
            sweep = _compiled_warm_sweep() or warm_sweep
        tol = opt.rel_tol * v_max
        shape = x.shape
        depth = opt.anderson_depth
        hist_dx = hist_df = gram = None
        prev_x = prev_f = None
        k = 0
        for k in range(1, max_iter + 1):
            if u is None:
                f = self._sweep(v, x, g, m_row, m_col)
                step = f.abs().flatten(2).amax(-1)  # [T, B]; NaN when the sweep broke down
            else:
                f, u_new, step = sweep(self.cell, self.ladders, v, x, g, m_row, m_col, u)
                u_new = torch.nan_to_num(u_new, nan=0.0, posinf=0.0, neginf=0.0)
                u = torch.where(conv[..., None, None], u, u_new) if bool(conv.any()) else u_new
            newly = (step <= tol) & ~conv
            if accelerate and k > opt.anderson_after:
                k_a = k - opt.anderson_after  # sweeps since the history started
                ff = f.flatten(2)
                if prev_f is not None:
                    if hist_df is None:
                        hist_dx = x.new_zeros(shape[:2] + (depth, ff.shape[-1]), dtype=WORK_DTYPE)
                        hist_df = torch.zeros_like(hist_dx)
                        gram = x.new_zeros(shape[:2] + (depth, depth), dtype=WORK_DTYPE)
                    j = (k_a - 2) % depth
                    hist_dx[:, :, j] = x.flatten(2) - prev_x
                    hist_df[:, :, j] = ff - prev_f
                    row = torch.matmul(hist_df, hist_df[:, :, j, :, None])[..., 0]
                    gram[:, :, j, :] = row
                    gram[:, :, :, j] = row
                prev_x, prev_f = x.flatten(2), ff
                x_new = x + f
                if hist_df is not None:
                    used = min(k_a - 1, depth)
                    x_new = x_new - self._anderson(hist_dx[:, :, :used], hist_df[:, :, :used],
                                                   gram[:, :, :used, :used], ff.to(WORK_DTYPE)).reshape(shape)
            else:
                x_new = x + (omega if not accelerate else 1.0) * f
            if not bool(torch.isfinite(step).all()):
                x_new = torch.nan_to_num(x_new, nan=0.0, posinf=0.0, neginf=0.0)
            x = torch.where(conv[..., None, None, None], x, x_new) if bool(conv.any()) else x_new
            conv = conv | newly
            if bool(conv.all()):
                break
        return x, conv, k, u

    @staticmethod
    def _anderson(d_x, d_f, gram, f):
        """Anderson (type II) correction ``(dX + dF) gamma``, gamma = argmin |f - dF gamma| (normal
        equations with columns scaled to unit norm and a ridge of ``ANDERSON_RIDGE``; a singular or
        non-finite system gives gamma = 0, a plain sweep)."""
        norm = torch.sqrt(torch.clamp(torch.diagonal(gram, dim1=-2, dim2=-1), min=1e-30))  # [T, B, m]
        gram_n = gram / (norm[..., :, None] * norm[..., None, :])
        gram_n = gram_n + ANDERSON_RIDGE * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        rhs = torch.matmul(d_f, f[..., None])[..., 0] / norm
        gamma, info = torch.linalg.solve_ex(gram_n, rhs[..., None])
        gamma = torch.where((info == 0)[..., None, None], gamma, torch.zeros_like(gamma))[..., 0] / norm
        gamma = torch.nan_to_num(gamma, nan=0.0, posinf=0.0, neginf=0.0)[..., None, :]  # [T, B, 1, m]
        out = torch.matmul(gamma, d_x)
        out += torch.matmul(gamma, d_f)
        return out[..., 0, :]

    # ------------------------------------------------------------------ public
    def currents(self, v_v: torch.Tensor, g_factor: torch.Tensor | None = None) -> torch.Tensor:
        """Column currents [T, B, cols] (A) for row voltages ``v_v`` [T, B, rows] (V).

        ``g_factor`` [T, B, rows, cols] (optional) multiplies the conductances for each vector alone: a read
        of conductances that differ from read to read (read noise), solved with the tile's chord
        Jacobians at the programmed conductances."""
        spec, opt = self.spec, self.options
        t_count = self.g_s.shape[0]
        if v_v.ndim != 3 or v_v.shape[0] != t_count or v_v.shape[2] != spec.rows:
            raise ValueError(f"v_v has shape {tuple(v_v.shape)}; expected [{t_count}, B, {spec.rows}]")
        expected = (t_count, v_v.shape[1], spec.rows, spec.cols)
        if g_factor is not None and tuple(g_factor.shape) != expected:
            raise ValueError(f"g_factor has shape {tuple(g_factor.shape)}; expected {list(expected)}")
        v = v_v.detach().to(device=self.g_s.device, dtype=torch.float64)
        n_b = v.shape[1]
        per_vector = max(1, t_count * spec.rows * spec.cols)
        chunk = max(1, opt.chunk_cells // per_vector)
        out = []
        for start in range(0, n_b, chunk):
            vc = v[:, start:start + chunk]
            g = self.g_s[:, None]
            if g_factor is not None:
                g = g * g_factor[:, start:start + chunk].to(device=v.device, dtype=torch.float64)
            x = torch.zeros(vc.shape[:2] + (2, spec.rows, spec.cols), dtype=torch.float64, device=v.device)
            x[:, :, 0] = vc[..., None]  # row nodes start at their inputs, column nodes at ground
            x, conv, k, u = self._iterate(vc, x, g, self.m_row, self.m_col, opt.anderson_depth > 0, 1.0, opt.max_iter)
            self.iterations.append(k)
            if not bool(conv.all()):
                x = self._retry(vc, x, conv, start, g)
            if u is None:
                i = self.cell.current(g, x[:, :, 0], x[:, :, 1])
            else:  # the internal nodes solved to convergence from the last sweep's
                assert isinstance(self.cell, _SeriesCell)
                i = self.cell.currents(g, x[:, :, 0], x[:, :, 1], u)[0]
            out.append(i.sum(-2))
            PROGRESS.advance(vc.shape[0] * vc.shape[1], f"{t_count} tiles x {n_b} vectors of {spec.rows}x{spec.cols}")
        return torch.cat(out, 1) if out else torch.zeros(t_count, 0, spec.cols, dtype=torch.float64,
                                                          device=v.device)

    def small_signal_transfer(self) -> torch.Tensor:
        """dI/dV at zero input [T, rows, cols] (A/V): one solve per row at a tiny input
        (``SMALL_SIGNAL_FRACTION`` of v_read_max_v, where the cells are linear to ~1e-12)."""
        rows = self.spec.rows
        dv = SMALL_SIGNAL_FRACTION * self.spec.v_read_max_v
        eye = torch.eye(rows, dtype=torch.float64, device=self.g_s.device) * dv
        return self.currents(eye.expand(self.g_s.shape[0], rows, rows)) / dv

    def _retry(self, v, x, conv, offset: int, g_all) -> torch.Tensor:
        """Damped sweeps from zero, then source stepping, for the vectors that did not converge (batched per
        tile; ``g_all`` [T, 1 or B, R, C] the conductances the chunk was solved with); raises
        :class:`ArrayConvergenceError` naming every vector that still fails."""
        opt = self.options
        failed = []
        for t in sorted(set((~conv).nonzero()[:, 0].tolist())):
            idx = (~conv[t]).nonzero()[:, 0]
            vt = v[t:t + 1, idx]
            g = g_all[t:t + 1] if g_all.shape[1] == 1 else g_all[t:t + 1, idx]
            m_row, m_col = self.m_row[t:t + 1], self.m_col[t:t + 1]
            x0 = torch.zeros_like(x[t:t + 1, idx])
            xs, ok, _, _ = self._iterate(vt, x0, g, m_row, m_col, False, opt.damping, opt.retry_max_iter)
            if not bool(ok.all()):  # source stepping for those still failing
                rest = (~ok[0]).nonzero()[:, 0]
                xr, ok_r = x0[:, rest], None
                g_rest = g if g.shape[1] == 1 else g[:, rest]
                for stage in range(1, opt.source_steps + 1):
                    xr, ok_r, _, _ = self._iterate(vt[:, rest] * (stage / opt.source_steps), xr, g_rest, m_row, m_col,
                                                False, opt.damping, opt.retry_max_iter)
                    if not bool(ok_r.all()):
                        break
                xs[:, rest] = xr
                ok[:, rest] = ok_r
            good = idx[ok[0]]
            x[t, good] = xs[0, ok[0]]
            if good.numel():
                log.warning("exact solve of %s: tile %d, vector(s) %s converged only after retries", self.source, t,
                            ", ".join(str(offset + int(b)) for b in good[:10]) + (", ..." if good.numel() > 10 else ""))
            failed += [(t, offset + int(b)) for b in idx[~ok[0]]]
        if failed:
            shown = ", ".join(f"tile {t} vector {b}" for t, b in failed[:10])
            raise ArrayConvergenceError(
                f"exact non-linear solve of circuit file {self.source} ({self.spec.rows}x{self.spec.cols}): "
                f"{len(failed)} vector(s) did not converge after {opt.max_iter} accelerated sweeps, damped "
                f"sweeps and {opt.source_steps}-stage source stepping ({shown}{', ...' if len(failed) > 10 else ''})")
        return x


def column_currents(spec: CircuitSpec, g_s, v_v, options: NewtonOptions | None = None):
    """numpy convenience: column currents [n_vectors, cols] (A) of one array ``g_s`` [rows, cols] (S)
    for ``v_v`` [n_vectors, rows] (V), with the cell of ``spec`` (sinh, 1T1R or 1S1R)."""
    import numpy as np

    cell = cell_model(spec)
    if isinstance(cell, LinearCell):
        from spice.nodal import column_currents as linear

        return linear(spec, g_s, v_v)
    g = torch.as_tensor(np.asarray(g_s, dtype=float))[None]
    v = torch.as_tensor(np.atleast_2d(np.asarray(v_v, dtype=float)))[None]
    return ArraySolver(spec, cell, g, options).currents(v)[0].numpy()
