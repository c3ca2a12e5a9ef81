"""Reference models for the fidelity report: ideal MVM, analytic IR-drop model, ridge on physics features.

All take conductances (S) and voltages (V) as numpy arrays and return column currents (A), so
they can be compared with ngspice and with the neural surrogates sample by sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from surrogate.data import Split
from surrogate.physics import TileSpec, analytic_transfer, wire_drop

log = logging.getLogger(__name__)


def ideal_a(g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray) -> np.ndarray:
    """Ideal crossbar i = v @ G per sample [n, cols] (A)."""
    return np.einsum("nr,nrc->nc", v_v, g_s[g_index])


def _per_matrix(g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray,
                fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``fn(g [rows, cols], v [n_k, rows]) -> [n_k, ...]`` matrix by matrix; rows in sample order."""
    parts, order = [], []
    for k in range(len(g_s)):
        idx = np.flatnonzero(g_index == k)
        if len(idx):
            parts.append(fn(g_s[k], v_v[idx]))
            order.append(idx)
    if not parts:
        raise ValueError("no samples to evaluate")
    out = np.empty((len(v_v),) + parts[0].shape[1:])
    out[np.concatenate(order)] = np.concatenate(parts)
    return out


def analytic_a(tile: TileSpec, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray) -> np.ndarray:
    """Closed-form IR-drop model (:func:`surrogate.physics.analytic_transfer`) per sample [n, cols] (A)."""

    def one(g: np.ndarray, v: np.ndarray) -> np.ndarray:
        t = analytic_transfer(torch.as_tensor(g / tile.g_on_s, dtype=torch.float64), tile).numpy()
        return v @ t * tile.g_on_s

    return _per_matrix(g_s, g_index, v_v, one)


class RidgeBaseline:
    """Classical baseline: ridge regression of each column current on physics features.

    Features of (sample, column), all currents as fractions of full scale: the ideal current, the
    analytic IR-drop current, that current weighted by the row- and column-wire drop features, by
    the row (driver) and column (sense) loading, and with v^2 and v^3 inputs (non-linear cells).
    One linear model shared by all columns (sklearn ``StandardScaler`` + ``Ridge``).
    """

    FEATURES = ("ideal", "analytic", "analytic_x_rho", "analytic_x_kappa", "analytic_x_driver_load",
                "analytic_x_sense_load", "analytic_v2", "analytic_v3")

    def __init__(self, tile: TileSpec, alpha: float = 1e-6) -> None:
        self.tile = tile
        self.alpha = alpha

    def _features(self, g: np.ndarray, v: np.ndarray) -> np.ndarray:
        t = self.tile
        g_on = t.g_on_s
        g_n = torch.as_tensor(g / g_on, dtype=torch.float64)
        t_an = analytic_transfer(g_n, t)
        rho, kappa = wire_drop(g_n, t.r_wire_row_ohm * g_on, t.r_wire_col_ohm * g_on)
        load_r = t.r_driver_ohm * g_on * g_n.sum(-1, keepdim=True)
        load_c = t.r_sense_ohm * g_on * g_n.sum(-2, keepdim=True)
        v_n = torch.as_tensor(v / t.v_read_max_v, dtype=torch.float64)
        mats = [g_n, t_an, t_an * rho, t_an * kappa, t_an * load_r, t_an * load_c]
        cols = [v_n @ m for m in mats] + [(v_n ** 2) @ t_an, (v_n ** 3) @ t_an]
        return (torch.stack(cols, -1) / t.rows).numpy()  # [n, cols, n_features]

    def _all_features(self, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray) -> np.ndarray:
        return _per_matrix(g_s, g_index, v_v, self._features)

    def fit(self, train: Split) -> RidgeBaseline:
        x = self._all_features(train.g_s, train.g_index, train.v_v).reshape(-1, len(self.FEATURES))
        y = (train.i_a / self.tile.full_scale_a).reshape(-1)
        self.model_: Pipeline = make_pipeline(StandardScaler(), Ridge(alpha=self.alpha)).fit(x, y)
        log.info("ridge baseline fitted on %d (sample, column) pairs", len(y))
        return self

    def predict_a(self, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray) -> np.ndarray:
        """Column currents [n, cols] (A)."""
        x = self._all_features(g_s, g_index, v_v)
        n, c, f = x.shape
        return self.model_.predict(x.reshape(-1, f)).reshape(n, c) * self.tile.full_scale_a
