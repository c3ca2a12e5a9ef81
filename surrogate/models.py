"""The surrogate designs and how to build, rebuild and evaluate them.

Designs (all implement :class:`surrogate.base.SurrogateMVM`):

``transfer`` (:class:`surrogate.transfer.TransferNet`, default)
    an effective transfer matrix T_eff(G) per tile from circuit physics plus a per-cell
    correction network; per vector one matmul, as cheap as the ideal model.
``mlp`` (:class:`surrogate.mlp.GeniexMLP`)
    GENIEx: [G, V] -> hidden ReLU -> per-column ratio of non-ideal to ideal current.
``ridge`` (:class:`surrogate.ridge.RidgeMVM`)
    ridge regression on closed-form physics features (those of the ridge baseline), fitted in closed
    form; per vector one matmul of [v, v^2, v^3] with maps folded once per tile.
``cell_iv`` (:class:`surrogate.cell_iv.CellIVRidge`)
    ridge regression on the cell's own I-V, measured by ngspice and factored into a few functions of
    the voltage, weighted by loading maps; fitted in closed form; per vector one matmul.

``design: auto`` (:class:`surrogate.params.TrainParams`) is not a design: it trains candidate designs
and keeps one (:func:`surrogate.train.train`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spice.tile import Tile
from surrogate.base import SurrogateMVM
from surrogate.cell_iv import CellIVRidge
from surrogate.mlp import GeniexMLP
from surrogate.ridge import RidgeMVM
from surrogate.transfer import TransferNet

__all__ = ["DESIGNS", "DESIGN_CLASSES", "CellIVRidge", "GeniexMLP", "RidgeMVM", "SurrogateMVM", "TransferNet", "build_model",
           "from_architecture", "predict_a"]

from surrogate.params import DESIGNS  # noqa: E402  (torch-free home of the list)

DESIGN_CLASSES: dict[str, type[SurrogateMVM]] = {cls.design: cls for cls in (CellIVRidge, GeniexMLP, RidgeMVM, TransferNet)}
"""Design name -> class (the names are :data:`surrogate.params.DESIGNS`)."""


def build_model(design: str, tile: Tile, **hyperparameters: Any) -> SurrogateMVM:
    """A fresh (untrained) surrogate of ``design`` (one of :data:`DESIGNS`) for ``tile``."""
    if design not in DESIGNS or design not in DESIGN_CLASSES:
        raise ValueError(f"unknown surrogate design {design!r}; expected one of {DESIGNS}")
    return DESIGN_CLASSES[design](tile, **hyperparameters)


def from_architecture(arch: dict[str, Any]) -> SurrogateMVM:
    """Rebuild an (untrained) surrogate from :meth:`SurrogateMVM.architecture`."""
    cls = DESIGN_CLASSES.get(arch["design"])
    hyperparameters = cls.stored_hyperparameters(arch["hyperparameters"]) if cls else arch["hyperparameters"]
    return build_model(arch["design"], Tile.from_dict(arch["tile"]), **hyperparameters)


@torch.no_grad()
def predict_a(model: SurrogateMVM, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray,
              chunk: int = 4096) -> np.ndarray:
    """Column currents [n_samples, cols] (A) for samples ``v_v`` [n, rows] (V) of matrices ``g_s[g_index]``.

    Folds every matrix once and evaluates its samples in chunks (numpy in, numpy out).
    """
    dtype = model.param_dtype
    device = next(model.parameters()).device
    out = np.empty((len(v_v), model.cols))
    for k in range(len(g_s)):
        idx = np.flatnonzero(g_index == k)
        if len(idx) == 0:
            continue
        f = model.bind(torch.as_tensor(g_s[k:k + 1], dtype=dtype, device=device))
        for s in range(0, len(idx), chunk):
            part = idx[s:s + chunk]
            v = torch.as_tensor(v_v[part], dtype=dtype, device=device).unsqueeze(0)
            out[part] = f(v)[0].double().cpu().numpy()
    return out
