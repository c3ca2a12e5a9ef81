"""Reference models for the fidelity report: analytic IR-drop model, ridge on physics features
(the ideal MVM is stored in every SPICE dataset as ``i_ideal_a``).

All take conductances (S) and voltages (V) as numpy arrays and return column currents (A), so
they can be compared with ngspice and with the neural surrogates sample by sample.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.pipeline import Pipeline

from surrogate import ridge
from surrogate.data import Split
from surrogate.physics import TileSpec, analytic_transfer


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

    The features and the fit are those of the ``ridge`` design (:mod:`surrogate.ridge`: the ideal
    current, the analytic IR-drop current, that current weighted by the row- and column-wire drop,
    by the row (driver) and column (sense) loading, and with v^2 and v^3 inputs), one linear model
    shared by all columns (sklearn ``StandardScaler`` + ``Ridge``); here every feature of every
    (sample, column) is formed explicitly and sklearn predicts, instead of folding per tile.
    """

    FEATURES = ridge.FEATURES

    def __init__(self, tile: TileSpec, alpha: float = ridge.RIDGE_ALPHA) -> None:
        self.tile = tile
        self.alpha = alpha

    def fit(self, train: Split) -> RidgeBaseline:
        self.model_: Pipeline = ridge.fit_ridge(self.tile, train, self.alpha)
        return self

    def predict_a(self, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray) -> np.ndarray:
        """Column currents [n, cols] (A)."""
        x = ridge.split_features(self.tile, g_s, g_index, v_v)
        n, c, f = x.shape
        return self.model_.predict(x.reshape(-1, f)).reshape(n, c) * self.tile.full_scale_a
