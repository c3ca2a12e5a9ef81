"""Closed-form surrogate on the cell's own I-V, measured by ngspice: design ``cell_iv``.

Before the fit, ngspice sweeps one cell of the circuit (:func:`spice.ngspice.measure_cell_iv`) across the
voltage span at ``iv_levels`` conductances from g_off to g_on. The table i(g, v) is factored by SVD into
``n_basis`` functions of the cell voltage phi_k(v) and coefficients c_k(g): ``i(g, v) ~ sum_k c_k(g) phi_k(v)``.
For the shipped selector cell (1S1R, 1 V) rank 3 is within ~1e-5 of its largest current, where the best cubic
in v misses by ~5e-3: the basis follows an exponential that the powers of v cannot.

The cells read through the array's sense resistance (effective value r_s: the best of a grid around the circuit's
on the training data, as the transfer design's prior). Per vector, the column node rises with the column current,
linearized with the cell's own I-V: ``I_j = P_j / (1 + r_s D_j)``, ``P = sum_k phi_k(v) @ c_k(G)``, ``D = sum_k
phi_k'(v) @ c_k(G)`` over the first ``gain_basis`` functions (:data:`GAIN_BASIS`). (The row nodes' sag through the
driver, one more step of the same kind, changed the error on 1S1R 32x32 by 2% and cost a lookup per tile; it is
left out.) The features of (vector, column) are ``(phi_k(v) @ (c_k(G) * M_m))_c / (1 + r_s D_j) / full scale`` for
every k and every loading map M_m (1, the first-order row- and column-wire drop, the driver and the sense loading,
as in :mod:`surrogate.ridge`), plus the linear ``v @ T_an`` and ``v @ G``. One linear model, shared by all
columns, is fitted in closed form on the training split (``StandardScaler`` + ``Ridge``, float64). Folded once per
tile: per vector one lookup of phi and phi' at each row voltage (shared by the tiles that read the same rows; a
plain gather from per-level tables when the voltages are a DAC's levels) and three matmuls, ``phi(v) @ A``,
``phi'(v) @ r_s [c_1; ...; c_Kg]`` and ``[v_n, 1] @ [A_lin; b]`` (:func:`evaluate`): ((K + K_g + 1) rows + 1) cols
MACs, in the dtype of the input (float32 in the DNN layers).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from spice.circuit import CircuitSpec
from spice.tile import Tile
from surrogate.base import Folded, SurrogateMVM
from surrogate.data import Split
from surrogate.physics import analytic_transfer, loading_maps

log = logging.getLogger(__name__)

LOADING_MAPS = ("cell", "x_rho_row_wire", "x_kappa_col_wire", "x_driver_load", "x_sense_load")
"""The maps each basis function's cell currents are weighted with (:func:`surrogate.physics.loading_maps`)."""
LINEAR_FEATURES = ("analytic", "ideal")
"""Features linear in v: ``v_n @ T_an / rows`` and ``v_n @ g_n / rows``."""
CELL_IV_ALPHA = 1e-8
"""L2 penalty of the fit on standardized features (nearly least squares)."""
SENSE_FACTORS = (1e-6, 1e-2, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0)
"""Candidate effective sense resistances, as multiples of the circuit's (a TIA's virtual-ground input is far
below its feedback resistor); the one that fits the calibration data best is kept."""
LEVEL_TOLERANCE = 1e-4
"""Largest distance of ``v / (v_read_max_v / input_levels)`` from an integer (in levels) at which the row voltages
count as on the DAC's levels (:meth:`CellIVRidge.bind_shared`); float32 DAC outputs are within ~1e-5."""
GAIN_BASIS = 2
"""Basis functions whose slopes form the column gain's D (the first ones, by singular value). On the 1S1R
selector cell at 16x16 and 32x32 the third changes the held-out error by < 0.1% and costs rows*cols MACs."""
CALIBRATION_MATRICES = 8
CALIBRATION_SAMPLES = 2048


def interpolate(x: torch.Tensor, lo: float, hi: float, table: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of the rows of ``table`` [K, n] (values at n evenly spaced points from lo to
    hi) at ``x`` [...], clamped to [lo, hi]: [K, ...]."""
    n = table.shape[-1]
    pos = ((x - lo) * ((n - 1) / (hi - lo))).clamp(0.0, n - 1.0)
    i0 = pos.detach().floor().clamp(max=n - 2).long()
    frac = pos - i0
    t0, t1 = table[:, i0], table[:, i0 + 1]
    return t0 + frac * (t1 - t0)


def pack(table: torch.Tensor) -> torch.Tensor:
    """The rows of ``table`` [K, n] as one lookup table [n - 1, 2K]: per interval of the grid, the K values at
    its left end and the K steps to its right end (:func:`lookup`)."""
    return torch.cat([table[:, :-1], table[:, 1:] - table[:, :-1]], 0).T.contiguous()


def lookup(x: torch.Tensor, lo: float, hi: float, packed: torch.Tensor) -> torch.Tensor:
    """:func:`interpolate` at ``x`` [...] from a :func:`pack` ed table, values last: [..., K] (contiguous, so
    that [..., rows, K] flattens to [..., rows * K] without a copy). One row gather per element (an index_select)
    instead of one gather per table row and end."""
    n1 = packed.shape[0]
    pos = ((x - lo) * (n1 / (hi - lo))).clamp(0.0, float(n1))
    i0 = pos.detach().floor().clamp_(max=n1 - 1)
    row = packed.index_select(0, i0.long().flatten()).view(*x.shape, packed.shape[1])  # [..., 2K]
    k = packed.shape[1] // 2
    return torch.addcmul(row[..., :k], (pos - i0).unsqueeze(-1), row[..., k:])


def evaluate(x_phi: torch.Tensor, x_slope: torch.Tensor, v_ext: torch.Tensor, maps: torch.Tensor,
             gain_maps: torch.Tensor, lin: torch.Tensor) -> torch.Tensor:
    """``v_ext @ lin + (x_phi @ maps) / (1 + x_slope @ gain_maps)``: the folded model for a batch of tiles
    (or groups of tiles side by side), [T, B, cols]. x_phi [T, B, rows K], x_slope [T, B, rows K_g]: phi_k(v) and
    phi_k'(v) (1/V), row i's entries side by side; v_ext [T, B, rows + 1]: v_n and a constant 1; maps
    [T, rows K, cols], gain_maps [T, rows K_g, cols] (r_s c_k, V), lin [T, rows + 1, cols]."""
    i = torch.bmm(x_phi, maps)
    i.div_(torch.bmm(x_slope, gain_maps).add_(1.0))
    return i.baddbmm_(v_ext, lin)


class CellIVRidge(SurrogateMVM):
    """Ridge regression on the cell's ngspice-measured I-V basis with loading maps, folded per tile."""

    design = "cell_iv"

    def __init__(self, tile: Tile, n_basis: int = 3, iv_points: int = 401, iv_levels: int = 33,
                 alpha: float = CELL_IV_ALPHA, gain_basis: int = GAIN_BASIS) -> None:
        super().__init__(tile)
        for key, value, least in (("n_basis", n_basis, 1), ("iv_points", iv_points, 3), ("iv_levels", iv_levels, 2),
                                  ("gain_basis", gain_basis, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{key} must be an integer >= {least}, got {value!r}")
        if gain_basis > n_basis:
            raise ValueError(f"gain_basis must be at most n_basis={n_basis}, got {gain_basis}")
        self.gain_basis = gain_basis
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
        self.n_basis, self.iv_points, self.iv_levels, self.alpha = n_basis, iv_points, iv_levels, float(alpha)
        f64 = torch.float64
        n_f = n_basis * len(LOADING_MAPS) + len(LINEAR_FEATURES)
        self.coef = nn.Parameter(torch.zeros(n_f, dtype=f64))
        """Coefficient of each standardized feature (fraction of full scale)."""
        self.intercept = nn.Parameter(torch.zeros((), dtype=f64))
        self.register_buffer("feature_mean", torch.zeros(n_f, dtype=f64))
        self.register_buffer("feature_scale", torch.ones(n_f, dtype=f64))
        self.register_buffer("v_range_v", torch.zeros(2, dtype=f64))
        """The cell I-V's voltage grid runs evenly from v_range_v[0] to v_range_v[1] (V)."""
        self.register_buffer("basis", torch.zeros(n_basis, iv_points, dtype=f64))
        """phi_k at the grid voltages (dimensionless, unit norm)."""
        self.register_buffer("coef_g", torch.zeros(n_basis, iv_levels, dtype=f64))
        """c_k at iv_levels conductances evenly from g_off_s to g_on_s (A)."""
        self.register_buffer("lines_ohm", torch.tensor([tile.r_driver_ohm, tile.r_sense_ohm], dtype=f64))
        """(driver, effective sense) resistances (ohms): the circuit's driver, the sense calibrated on the
        training data."""

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_basis": self.n_basis, "iv_points": self.iv_points, "iv_levels": self.iv_levels, "alpha": self.alpha,
                "gain_basis": self.gain_basis}

    @classmethod
    def stored_hyperparameters(cls, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """Files written before ``gain_basis`` existed used every basis function in the column gain."""
        return {"gain_basis": hyperparameters.get("n_basis", 3), **hyperparameters}

    def param_units(self) -> dict[str, str]:
        return {"v_range_v": "V", "coef_g": "A", "lines_ohm": "ohm"}

    def line_resistances_ohm(self) -> tuple[float, float]:
        """The circuit's driver and the calibrated effective sense resistance (ohms): per-read noise of loaded
        cells in the crossbar layers (``dnn.mvm.LoadedTileMVM``)."""
        return float(self.lines_ohm[0]), float(self.lines_ohm[1])

    # ------------------------------------------------------------------ the cell
    def init_from_circuit(self, spec: CircuitSpec) -> None:
        """Measure the cell's I-V with ngspice and factor it (``basis``, ``coef_g``)."""
        from spice.ngspice import measure_cell_iv

        levels = np.linspace(self.g_off_s, self.g_on_s, self.iv_levels)
        v_grid, i_a = measure_cell_iv(spec, self.iv_points, levels)
        self.set_cell_iv(v_grid, i_a)

    @torch.no_grad()
    def set_cell_iv(self, v_grid_v: np.ndarray, i_a: np.ndarray) -> None:
        """Factor an I-V table i_a [iv_levels, iv_points] (A) on the evenly spaced ``v_grid_v`` (V)."""
        u, s, vh = np.linalg.svd(np.asarray(i_a, dtype=np.float64), full_matrices=False)
        k = self.n_basis
        if len(s) < k:
            raise ValueError(f"an I-V table of shape {i_a.shape} has fewer than n_basis={k} components")
        self.v_range_v.copy_(torch.tensor([float(v_grid_v[0]), float(v_grid_v[-1])], dtype=torch.float64))
        self.basis.copy_(torch.as_tensor(vh[:k]))
        self.coef_g.copy_(torch.as_tensor(u[:, :k] * s[:k]).T)
        residual = float(np.abs((u[:, :k] * s[:k]) @ vh[:k] - i_a).max() / max(np.abs(i_a).max(), 1e-300))
        log.info("cell I-V: %d x %d ngspice points over %.3g..%.3g V; %d basis functions fit it within %.2e of its "
                 "largest current", i_a.shape[0], i_a.shape[1], v_grid_v[0], v_grid_v[-1], k, residual)

    def _slope_table(self) -> torch.Tensor:
        """phi_k' of the first ``gain_basis`` functions at the grid voltages [K_g, iv_points] (1/V), by central
        differences."""
        lo, hi = (float(x) for x in self.v_range_v)
        return torch.gradient(self.basis[:self.gain_basis], spacing=((hi - lo) / (self.iv_points - 1),), dim=1)[0]

    def _phi(self, v_v: torch.Tensor, slope: bool = False) -> torch.Tensor:
        """phi_k (or the slopes phi_k' of the first gain_basis, 1/V) at voltages v_v [..., rows] (V): [K, ..., rows]."""
        lo, hi = (float(x) for x in self.v_range_v)
        return interpolate(v_v, lo, hi, self._slope_table() if slope else self.basis)

    def _column_gain(self, v_v: torch.Tensor, c_stack: torch.Tensor, r_sense_ohm: float) -> torch.Tensor:
        """1 / (1 + r_s D) [T, B, cols]: D = sum_k phi_k'(v) @ c_k (S) over the first gain_basis functions, c_stack
        [T, K_g rows, cols] (A)."""
        slope = torch.cat(self._phi(v_v, slope=True).unbind(0), -1)  # [T, B, K_g rows]
        return 1.0 / (1.0 + r_sense_ohm * torch.bmm(slope, c_stack))

    def _cell_coef(self, g_s: torch.Tensor) -> torch.Tensor:
        """c_k at conductances g_s [..., rows, cols] (S), clamped to [g_off, g_on]: [K, ..., rows, cols] (A)."""
        return interpolate(g_s, self.g_off_s, self.g_on_s, self.coef_g)

    def _maps(self, g_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-basis maps [T, K * 5, rows, cols] (c_k * M_m / full scale), linear maps [T, 2, rows, cols] and
        c_k(G) [T, K, rows, cols] (A)."""
        if not bool(self.basis.abs().sum() > 0):
            raise RuntimeError("cell_iv surrogate has no cell I-V: call init_from_circuit(spec) first")
        g_n = g_s / self.g_on_s
        maps = loading_maps(g_n, self.tile)  # [T, 5, rows, cols]
        c = self._cell_coef(g_s).movedim(0, 1)  # [T, K, rows, cols]
        per_k = (c[:, :, None] * maps[:, None]).flatten(1, 2) / self.full_scale_a
        lin = torch.stack([analytic_transfer(g_n, self.tile), g_n], 1) / self.rows
        return per_k, lin, c

    def _features(self, g_s: torch.Tensor, v_v: torch.Tensor, lines_ohm: tuple[float, float] | None = None
                  ) -> torch.Tensor:
        """Every raw feature [T, B, cols, F] of g_s [T, rows, cols] (S) and v_v [T, B, rows] (V), with the
        effective (driver, sense) resistances ``lines_ohm`` (default: the calibrated ones)."""
        r_s = (lines_ohm or self.line_resistances_ohm())[1]
        per_k, lin, c = self._maps(g_s)
        gain = self._column_gain(v_v, c[:, :self.gain_basis].flatten(1, 2), r_s)
        phi = self._phi(v_v).movedim(0, 1)  # [T, K, B, rows]
        n_m = len(LOADING_MAPS)
        cols = [(phi[:, k // n_m] @ per_k[:, k]) * gain for k in range(per_k.shape[1])]
        v_n = v_v / self.v_read_max_v
        cols += [v_n @ lin[:, k] for k in range(lin.shape[1])]
        return torch.stack(cols, -1)

    # ------------------------------------------------------------------ fit
    def init_from_data(self, train: Split) -> None:
        """The closed-form fit: standardization and coefficients (the cell I-V must be set)."""
        if train.n_samples == 0:
            raise ValueError("the training split is empty: no samples to fit the cell_iv model on")
        self._calibrate_lines(train)
        xs, ys = self._design_matrix(train, range(train.n_matrices), None)
        fitted = make_pipeline(StandardScaler(), Ridge(alpha=self.alpha)).fit(np.concatenate(xs), np.concatenate(ys))
        scaler, ridge = fitted[0], fitted[-1]
        with torch.no_grad():
            self.feature_mean.copy_(torch.as_tensor(scaler.mean_))
            self.feature_scale.copy_(torch.as_tensor(np.where(scaler.scale_ > 0, scaler.scale_, 1.0)))
            self.coef.copy_(torch.as_tensor(ridge.coef_))
            self.intercept.fill_(float(ridge.intercept_))
        log.info("cell_iv fitted on %d (sample, column) pairs, %d features", sum(len(y) for y in ys), len(self.coef))

    @torch.no_grad()
    def _design_matrix(self, train: Split, matrices: Any, lines_ohm: tuple[float, float] | None,
                       max_samples: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Features [samples * cols, F] and targets (fractions of full scale) of the given training matrices."""
        xs, ys = [], []
        for k in matrices:
            idx = np.flatnonzero(train.g_index == k)[:max_samples]
            if len(idx):
                g = torch.as_tensor(train.g_s[k], dtype=torch.float64)[None]
                v = torch.as_tensor(train.v_v[idx], dtype=torch.float64)[None]
                xs.append(self._features(g, v, lines_ohm)[0].reshape(-1, len(self.coef)).numpy())
                ys.append((train.i_a[idx] / self.full_scale_a).reshape(-1))
        return xs, ys

    def _calibrate_lines(self, train: Split) -> None:
        """The effective sense resistance, of :data:`SENSE_FACTORS` times the circuit's, whose least-squares fit of
        part of the training data leaves the smallest error (the driver stays the circuit's)."""
        n = min(train.n_matrices, CALIBRATION_MATRICES)
        per_matrix = max(1, CALIBRATION_SAMPLES // max(n, 1))
        best = (math.inf, self.tile.r_driver_ohm, self.tile.r_sense_ohm)
        for factor in SENSE_FACTORS:
            lines = (self.tile.r_driver_ohm, self.tile.r_sense_ohm * factor)
            xs, ys = self._design_matrix(train, range(n), lines, per_matrix)
            x, y = np.concatenate(xs), np.concatenate(ys)
            x = np.concatenate([x, np.ones((len(x), 1))], 1)
            resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
            err = float(np.mean(resid * resid))
            if err < best[0]:
                best = (err, *lines)
        with torch.no_grad():
            self.lines_ohm.copy_(torch.tensor(best[1:], dtype=torch.float64))
        log.info("cell_iv: effective R_sense %.3g ohm (circuit %.3g); rms %.2e of full scale on the calibration "
                 "samples", best[2], self.tile.r_sense_ohm, math.sqrt(best[0]))

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.coef / self.feature_scale
        return w, self.intercept - (w * self.feature_mean).sum()

    # ------------------------------------------------------------------ evaluation
    def fold(self, g_s: torch.Tensor) -> Folded:
        """Per tile, rows and basis interleaved (row-major: row i's entries side by side): the maps of phi_k(v)
        ``A`` [T, rows K, cols] and of phi_k'(v) ``r_s [c_k]`` [T, rows K_g, cols] (V), the linear maps with the
        constant ``[A_lin; b]`` [T, rows + 1, cols] (normalized; they multiply v_n and 1), and the packed lookup
        tables of phi_k [T, iv_points - 1, 2K] and phi_k' [T, iv_points - 1, 2K_g] (:func:`pack`; the same for
        every tile): :func:`evaluate`'s operands."""
        per_k, lin, c = self._maps(g_s.to(torch.float64))
        w, b = self._weights()
        n_m, k = len(LOADING_MAPS), self.n_basis
        a_k = (per_k * w[:k * n_m, None, None]).unflatten(1, (k, n_m)).sum(2)  # [T, K, rows, cols]
        a_lin = (lin * w[k * n_m:, None, None]).sum(1)  # [T, rows, cols]
        n_t = g_s.shape[0]
        tables = tuple(t.expand(n_t, -1, -1) for t in self._packed_tables())
        c_g = c[:, :self.gain_basis].transpose(1, 2).flatten(1, 2)
        return (a_k.transpose(1, 2).flatten(1, 2), c_g * self.line_resistances_ohm()[1],
                torch.cat([a_lin, b.expand(n_t, 1, self.cols)], 1), *tables)

    def _inputs(self, v_v: torch.Tensor, phi_table: torch.Tensor, slope_table: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`evaluate`'s inputs at row voltages v_v [..., rows] (V): phi(v) [..., rows K], phi'(v)
        [..., rows K_g] and ``[v_n, 1]`` [..., rows + 1]."""
        lo, hi = (float(x) for x in self.v_range_v)
        phi, slope = (lookup(v_v, lo, hi, t).flatten(-2) for t in (phi_table, slope_table))
        return phi, slope, self._v_ext(v_v)

    def _v_ext(self, v_v: torch.Tensor) -> torch.Tensor:
        """``[v_n, 1]`` [..., rows + 1] at row voltages v_v [..., rows] (V): :func:`evaluate`'s linear input."""
        return torch.cat([v_v / self.v_read_max_v, v_v.new_ones(*v_v.shape[:-1], 1)], -1)

    def _packed_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The :func:`pack` ed lookup tables of phi_k [iv_points - 1, 2K] and phi_k' [iv_points - 1, 2K_g]."""
        return pack(self.basis), pack(self._slope_table())

    def _level_tables(self, n_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """phi_k and phi_k' at the 2 n_levels + 1 voltages k v_read_max_v / n_levels, k = -n_levels..n_levels,
        interpolated as :meth:`_inputs` does: [2 n_levels + 1, K] and [2 n_levels + 1, K_g]."""
        v = torch.arange(-n_levels, n_levels + 1, dtype=torch.float64) * (self.v_read_max_v / n_levels)
        lo, hi = (float(x) for x in self.v_range_v)
        phi_table, slope_table = self._packed_tables()
        return lookup(v, lo, hi, phi_table), lookup(v, lo, hi, slope_table)

    def _inputs_at_levels(self, v_v: torch.Tensor, n_levels: int, phi_at: torch.Tensor, slope_at: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """:meth:`_inputs` from the tables of :meth:`_level_tables`: one row gather per element, no
        interpolation; None when some voltage is not on a level (within :data:`LEVEL_TOLERANCE`)."""
        code = v_v * (n_levels / self.v_read_max_v)
        idx = code.round()
        if bool((code - idx).abs().max() > LEVEL_TOLERANCE):
            return None
        idx = idx.add_(n_levels).clamp_(0, 2 * n_levels).long().reshape(-1)
        rows = v_v.shape[-1]
        return (phi_at.index_select(0, idx).view(*v_v.shape[:-1], rows * self.n_basis),
                slope_at.index_select(0, idx).view(*v_v.shape[:-1], rows * self.gain_basis),
                self._v_ext(v_v))

    def apply_n(self, folded: Folded, v_v: torch.Tensor) -> torch.Tensor:
        maps, gain_maps, lin, phi_table, slope_table = folded
        return evaluate(*self._inputs(v_v.to(maps.dtype), phi_table[0], slope_table[0]), maps, gain_maps, lin)

    def forward_n(self, g_s: torch.Tensor, v_v: torch.Tensor) -> torch.Tensor:
        """Every feature formed explicitly, standardized and weighted: the way the model was fitted (an
        independent path to check :meth:`fold`)."""
        x = self._features(g_s.to(torch.float64), v_v.to(torch.float64))
        return ((x - self.feature_mean) / self.feature_scale) @ self.coef + self.intercept

    def bind_shared(self, g_s: torch.Tensor, input_levels: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s [G, K, rows, cols] (S): G groups of K tiles whose rows read the same voltages -> f(v_v
        [G, B, rows] (V)) -> i_a [G, K, B, cols] (A) (``dnn.mvm.SharedInputTileMVM``): the inputs are
        formed once per group and multiplied with the maps of all K tiles side by side.

        ``input_levels`` > 0 (the DAC's levels per polarity): phi and phi' are tabulated once at those voltages,
        and a call without autograd on voltages that lie on them gathers its inputs from the tables instead of
        interpolating (the same numbers up to float rounding; other calls interpolate)."""
        if g_s.ndim != 4 or tuple(g_s.shape[2:]) != (self.rows, self.cols):
            raise ValueError(f"g_s has shape {tuple(g_s.shape)}; this surrogate expects [G, K, {self.rows}, "
                             f"{self.cols}]")
        n_g, k = g_s.shape[:2]
        rows, c = self.rows, self.cols
        maps, gain_maps, lin, phi_table, slope_table = self.fold(g_s.reshape(n_g * k, rows, c))

        def side_by_side(w: torch.Tensor) -> torch.Tensor:
            """[G*K, n, cols] -> [G, n, K*cols]: the K tiles of a group side by side along the columns."""
            return w.reshape(n_g, k, w.shape[-2], c).transpose(1, 2).reshape(n_g, w.shape[-2], k * c)

        fs = self.full_scale_a  # the maps of the currents in amperes, so that evaluate returns amperes
        maps, gain_maps, lin = side_by_side(maps * fs), side_by_side(gain_maps), side_by_side(lin * fs)
        tables = (phi_table[0], slope_table[0], *(self._level_tables(input_levels) if input_levels > 0 else ()))
        cast: dict[torch.dtype, tuple[torch.Tensor, ...]] = {}

        def mvm(v_v: torch.Tensor) -> torch.Tensor:
            if v_v.ndim != 3 or v_v.shape[0] != n_g or v_v.shape[2] != rows:
                raise ValueError(f"v_v has shape {tuple(v_v.shape)}; expected [{n_g}, B, {rows}]")
            if v_v.dtype not in cast:  # the maps in the input's dtype, once per dtype
                cast[v_v.dtype] = tuple(t.to(v_v.dtype) for t in (maps, gain_maps, lin, *tables))
            mp, gm, ml, tp, ts, *at_levels = cast[v_v.dtype]
            x = None
            if at_levels and not (torch.is_grad_enabled() and v_v.requires_grad):
                x = self._inputs_at_levels(v_v, input_levels, *at_levels)
            i_a = evaluate(*(x or self._inputs(v_v, tp, ts)), mp, gm, ml)  # inputs once per group: [G, B, K*cols]
            return i_a.unflatten(-1, (k, c)).transpose(1, 2)

        return mvm

    def normalization(self) -> dict[str, Any]:
        return {
            "conductance": "g_n = g_s / g_on_s; c_k(g_s) interpolated in coef_g (A)",
            "voltage": "v_n = v_v / v_read_max_v; phi_k(v_v) interpolated in basis over v_range_v",
            "output": "i_a = full_scale_a * i_n; i_n = sum_f coef_f (x_f - feature_mean_f) / feature_scale_f + "
                      "intercept, x = (phi_k(v) @ (c_k(G) * M_m))_c / (1 + r_s D_c) / full_scale_a and "
                      "(v_n @ [T_an, g_n])_c / rows (surrogate.cell_iv)",
            "full_scale_a": self.full_scale_a,
            "loading_maps": list(LOADING_MAPS),
            "linear_features": list(LINEAR_FEATURES),
            "v_range_v": self.v_range_v.tolist(),
            "lines_ohm": self.lines_ohm.tolist(),
            "coef": self.coef.detach().tolist(),
            "intercept": float(self.intercept.detach()),
        }

    def macs_per_vector(self) -> int:
        """``phi(v) @ A``, ``phi'(v) @ r_s [c_1; ...; c_Kg]`` and ``[v_n, 1] @ [A_lin; b]`` (:func:`evaluate`)."""
        return ((self.n_basis + self.gain_basis + 1) * self.rows + 1) * self.cols
