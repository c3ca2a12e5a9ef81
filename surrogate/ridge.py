"""Closed-form surrogate: ridge regression of the column current on physics features, folded per tile.

The physics features (:func:`feature_maps`, :func:`features`) are the one definition shared by
this design and the ridge baseline of the fidelity report (:class:`surrogate.baselines.RidgeBaseline`).
Every feature of (vector, column) has the form ``(v_n^p @ M_k(G))_c / rows`` with ``p`` in 1..3
(:data:`FEATURE_POWERS`) and a matrix ``M_k`` of closed-form crossbar physics: the ideal conductances,
the analytic IR-drop transfer matrix ``T_an`` (:func:`surrogate.physics.analytic_transfer`) and
``T_an`` weighted by the row- and column-wire drop, the driver and the sense loading; ``v^2`` and
``v^3`` inputs against ``T_an`` (non-linear cells). One linear model, shared by all columns, is fitted
in closed form on the training split (:func:`fit_ridge`: sklearn ``StandardScaler`` + ``Ridge``).

:class:`RidgeMVM` keeps the fitted standardization and coefficients; ``fold`` sums the weighted maps
of each power into three matrices once per tile, so per vector
``i_n = [v_n, v_n^2, v_n^3] @ [A1; A2; A3] + b`` (one matmul, ``3 rows*cols`` MACs). Its numbers are
float64: the coefficients of the standardized features are large and of opposite sign (the features
are nearly collinear), and their sum, folded once per tile, would lose digits in float32.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from spice.tile import Tile
from surrogate.base import Folded, SurrogateMVM
from surrogate.data import Split
from surrogate.physics import analytic_transfer, loading_maps

log = logging.getLogger(__name__)

FEATURES = ("ideal", "analytic", "analytic_x_rho", "analytic_x_kappa", "analytic_x_driver_load",
            "analytic_x_sense_load", "analytic_v2", "analytic_v3")
"""The physics features, in the order of :func:`feature_maps`."""
FEATURE_POWERS = (1, 1, 1, 1, 1, 1, 2, 3)
"""The power of the input voltage each feature multiplies its map with."""
RIDGE_ALPHA = 1e-6
"""L2 penalty of the fit on standardized features (nearly least squares; it only steadies the solve of
nearly collinear features)."""


def feature_maps(g_n: torch.Tensor, tile: Tile) -> torch.Tensor:
    """The matrices ``M_k(G)`` of the physics features [..., n_features, rows, cols] (normalized) for
    conductances ``g_n = g / g_on_s`` [..., rows, cols]; differentiable."""
    t_an = analytic_transfer(g_n, tile)
    weighted = t_an.unsqueeze(-3) * loading_maps(g_n, tile)  # T_an times 1, rho, kappa, driver and sense load
    return torch.cat([g_n.unsqueeze(-3), weighted, t_an.unsqueeze(-3).expand_as(weighted[..., :2, :, :])], -3)


def features(maps: torch.Tensor, v_n: torch.Tensor) -> torch.Tensor:
    """The features ``(v_n^p @ M_k) / rows`` [..., B, cols, n_features] (fractions of full scale) of
    maps [..., n_features, rows, cols] (:func:`feature_maps`) and voltages ``v_n = v / v_read_max_v``
    [..., B, rows]."""
    rows = maps.shape[-2]
    cols = [(v_n ** p) @ maps[..., k, :, :] for k, p in enumerate(FEATURE_POWERS)]
    return torch.stack(cols, -1) / rows


def split_features(tile: Tile, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray) -> np.ndarray:
    """The features [n_samples, cols, n_features] (float64) of samples ``v_v`` [n, rows] (V) of matrices
    ``g_s[g_index]`` (S), matrix by matrix."""
    out = np.empty((len(v_v), tile.cols, len(FEATURES)))
    for k in range(len(g_s)):
        idx = np.flatnonzero(g_index == k)
        if len(idx):
            maps = feature_maps(torch.as_tensor(g_s[k] / tile.g_on_s, dtype=torch.float64), tile)
            out[idx] = features(maps, torch.as_tensor(v_v[idx] / tile.v_read_max_v, dtype=torch.float64)).numpy()
    return out


def fit_ridge(tile: Tile, train: Split, alpha: float = RIDGE_ALPHA) -> Pipeline:
    """``StandardScaler`` + ``Ridge(alpha)`` of the column current (fraction of full scale) on the
    physics features of every (sample, column) pair of ``train``."""
    if train.n_samples == 0:
        raise ValueError("the training split is empty: no samples to fit the ridge model on")
    x = split_features(tile, train.g_s, train.g_index, train.v_v).reshape(-1, len(FEATURES))
    y = (train.i_a / tile.full_scale_a).reshape(-1)
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, y)
    log.info("ridge fitted on %d (sample, column) pairs, alpha %g", len(y), alpha)
    return model


class RidgeMVM(SurrogateMVM):
    """Ridge regression on the physics features, fitted in closed form, folded into per-power matrices."""

    design = "ridge"
    FEATURES = FEATURES

    def __init__(self, tile: Tile, alpha: float = RIDGE_ALPHA) -> None:
        super().__init__(tile)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        n_f = len(FEATURES)
        f64 = torch.float64
        self.coef = nn.Parameter(torch.zeros(n_f, dtype=f64))
        """Coefficient of each standardized feature (fraction of full scale)."""
        self.intercept = nn.Parameter(torch.zeros((), dtype=f64))
        """Constant current (fraction of full scale)."""
        self.register_buffer("feature_mean", torch.zeros(n_f, dtype=f64))
        self.register_buffer("feature_scale", torch.ones(n_f, dtype=f64))

    def hyperparameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def init_from_data(self, train: Split) -> None:
        """The closed-form fit (:func:`fit_ridge`): standardization and coefficients."""
        fitted = fit_ridge(self.tile, train, self.alpha)
        scaler, ridge = fitted[0], fitted[-1]
        with torch.no_grad():
            self.feature_mean.copy_(torch.as_tensor(scaler.mean_))
            self.feature_scale.copy_(torch.as_tensor(scaler.scale_))
            self.coef.copy_(torch.as_tensor(ridge.coef_))
            self.intercept.fill_(float(ridge.intercept_))

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Coefficients of the raw features and the constant (standardization folded in)."""
        w = self.coef / self.feature_scale
        return w, self.intercept - (w * self.feature_mean).sum()

    def fold(self, g_s: torch.Tensor) -> Folded:
        """``[A1; A2; A3] / rows`` [T, 3 rows, cols] and the constant ``b`` [T, 1, 1] (normalized)."""
        dtype = self.param_dtype
        maps = feature_maps(g_s.to(dtype) / self.tile.g_on_s, self.tile)  # [T, F, rows, cols]
        w, b = self._weights()
        weighted = maps * w[:, None, None]
        per_power = [weighted[:, [k for k, q in enumerate(FEATURE_POWERS) if q == p]].sum(1) for p in (1, 2, 3)]
        w_poly = torch.cat(per_power, -2) / self.rows
        return w_poly, b.expand(g_s.shape[0], 1, 1)

    @staticmethod
    def _powers(v_n: torch.Tensor) -> torch.Tensor:
        return torch.cat([v_n, v_n * v_n, v_n * v_n * v_n], -1)

    def apply_n(self, folded: Folded, v_v: torch.Tensor) -> torch.Tensor:
        w_poly, b = folded
        v_n = v_v.to(w_poly.dtype) / self.tile.v_read_max_v
        return torch.baddbmm(b, self._powers(v_n), w_poly)

    def forward_n(self, g_s: torch.Tensor, v_v: torch.Tensor) -> torch.Tensor:
        """Every feature of every (vector, column) formed explicitly, standardized and weighted: the
        way the ridge was fitted (an independent path to check :meth:`fold`)."""
        dtype = self.param_dtype
        maps = feature_maps(g_s.to(dtype) / self.tile.g_on_s, self.tile)
        x = features(maps, v_v.to(dtype) / self.tile.v_read_max_v)  # [T, B, cols, F]
        return ((x - self.feature_mean) / self.feature_scale) @ self.coef + self.intercept

    def bind_shared(self, g_s: torch.Tensor, input_levels: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s [G, K, rows, cols] (S): G groups of K tiles whose rows read the same voltages -> f(v_v
        [G, B, rows] (V)) -> i_a [G, K, B, cols] (A) (``dnn.mvm.SharedInputTileMVM``): the powers of v
        are formed once per group and multiplied with the maps of all K tiles side by side
        (``input_levels`` is not used)."""
        if g_s.ndim != 4 or tuple(g_s.shape[2:]) != (self.rows, self.cols):
            raise ValueError(f"g_s has shape {tuple(g_s.shape)}; this surrogate expects [G, K, {self.rows}, "
                             f"{self.cols}]")
        n_g, k = g_s.shape[:2]
        rows, c = self.rows, self.cols
        w_poly, b = self.fold(g_s.reshape(n_g * k, rows, c))
        w = w_poly.reshape(n_g, k, 3 * rows, c).transpose(1, 2).reshape(n_g, 3 * rows, k * c)
        b = b[:1]

        def mvm(v_v: torch.Tensor) -> torch.Tensor:
            if v_v.ndim != 3 or v_v.shape[0] != n_g or v_v.shape[2] != rows:
                raise ValueError(f"v_v has shape {tuple(v_v.shape)}; expected [{n_g}, B, {rows}]")
            i_n = torch.baddbmm(b, self._powers(v_v.to(w.dtype) / self.tile.v_read_max_v), w)  # [G, B, K*cols]
            return (i_n * self.full_scale_a).unflatten(-1, (k, c)).transpose(1, 2).to(v_v.dtype)

        return mvm

    def normalization(self) -> dict[str, Any]:
        return {
            "conductance": "g_n = g_s / g_on_s",
            "voltage": "v_n = v_v / v_read_max_v",
            "output": "i_a = full_scale_a * i_n; i_n = sum_k coef_k (x_k - feature_mean_k) / feature_scale_k "
                      "+ intercept with x_k = (v_n^p_k @ M_k(g_n))_c / rows (surrogate.ridge.feature_maps)",
            "full_scale_a": self.full_scale_a,
            "features": list(FEATURES),
            "feature_powers": list(FEATURE_POWERS),
            "feature_mean": [float(x) for x in self.feature_mean],
            "feature_scale": [float(x) for x in self.feature_scale],
            "coef": self.coef.detach().tolist(),
            "intercept": float(self.intercept.detach()),
            "alpha": self.alpha,
        }

    def macs_per_vector(self) -> int:
        """``[v, v^2, v^3] @ [A1; A2; A3]``."""
        return 3 * self.rows * self.cols
