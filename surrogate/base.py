"""The interface every surrogate implements: :class:`SurrogateMVM` (the ``dnn.mvm.TileMVM`` protocol).

Units: every public method takes siemens and volts and returns amperes. Internally the models
work in normalized units (:mod:`surrogate.physics`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from spice.circuit import CircuitSpec
from spice.tile import Tile, TileViews
from surrogate.data import Split

Folded = tuple[torch.Tensor, ...]


class SurrogateMVM(TileViews, nn.Module):
    """A crossbar tile model learned from SPICE data (implements :class:`dnn.mvm.TileMVM`).

    ``tile`` is the one record of the tile's constants; ``rows``, ``cols``, ``g_on_s``, ... read it
    (:class:`spice.tile.TileViews`).

    Subclasses implement :meth:`fold` (all G-only work), :meth:`apply_n` (per input vector) and
    :meth:`forward_n` (the unfused reference path), in normalized units.
    """

    design: ClassVar[str] = ""
    starts_at_physics_prior: ClassVar[bool] = False
    """Untrained, the model is already a physics model of the array (the transfer design): training that never
    improves on it keeps that model; a design started from random weights is refused instead."""

    def __init__(self, tile: Tile) -> None:
        super().__init__()
        self.tile = tile
        """The tile the surrogate was trained for; its voltage range is the one of the training data."""
        self.spec: CircuitSpec | None = None
        """The circuit the surrogate was trained for (set by :func:`surrogate.io.load_surrogate`)."""
        self.metadata: dict[str, Any] = {}
        """Root attributes of the file it was loaded from (provenance, fidelity)."""

    # ------------------------------------------------------------------ subclass hooks
    def fold(self, g_s: torch.Tensor) -> Folded:
        """All G-only work for tiles ``g_s`` [T, rows, cols] (S); a tuple of [T, ...] tensors."""
        raise NotImplementedError

    def apply_n(self, folded: Folded, v_v: torch.Tensor) -> torch.Tensor:
        """Column currents as fractions of full scale [T, B, cols] for ``v_v`` [T, B, rows] (V)."""
        raise NotImplementedError

    def forward_n(self, g_s: torch.Tensor, v_v: torch.Tensor) -> torch.Tensor:
        """Unfused reference path of :meth:`apply_n` (nothing cached), fractions of full scale."""
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def init_from_circuit(self, spec: CircuitSpec) -> None:
        """What the design measures of the circuit itself before it sees the data (e.g. the cell's I-V,
        ``cell_iv``); nothing by default."""

    def init_from_data(self, train: Split) -> None:
        """Fit normalization statistics and data-driven starting values on the training split."""
        raise NotImplementedError

    def normalization(self) -> dict[str, Any]:
        """How inputs and outputs are scaled, with fitted values (stored as json in the file)."""
        raise NotImplementedError

    def param_units(self) -> dict[str, str]:
        """Units of the entries of ``state_dict()``; unlisted entries are dimensionless ('1')."""
        return {}

    # ------------------------------------------------------------------ public API (SI units)
    @property
    def param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _check(self, g_s: torch.Tensor, v_v: torch.Tensor | None = None) -> None:
        if g_s.ndim != 3 or tuple(g_s.shape[1:]) != (self.rows, self.cols):
            raise ValueError(f"g_s has shape {tuple(g_s.shape)}; this surrogate expects [T, {self.rows}, "
                             f"{self.cols}]")
        if v_v is not None and (v_v.ndim != 3 or v_v.shape[0] != g_s.shape[0] or v_v.shape[2] != self.rows):
            raise ValueError(f"v_v has shape {tuple(v_v.shape)}; expected [{g_s.shape[0]}, B, {self.rows}]")

    def bind(self, g_s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s [T, rows, cols] (S) for T tiles -> f(v_v [T, B, rows] (V)) -> i_a [T, B, cols] (A).

        All G-only work happens once here; f is differentiable w.r.t. v (and g) and runs on the
        device of ``g_s``, returning the dtype of ``v_v`` (computation in the model's dtype).
        """
        self._check(g_s)
        folded = self.fold(g_s.to(self.param_dtype))
        n_tiles = g_s.shape[0]

        def mvm(v_v: torch.Tensor) -> torch.Tensor:
            if v_v.ndim != 3 or v_v.shape[0] != n_tiles or v_v.shape[2] != self.rows:
                raise ValueError(f"v_v has shape {tuple(v_v.shape)}; expected [{n_tiles}, B, {self.rows}]")
            return (self.apply_n(folded, v_v.to(self.param_dtype)) * self.full_scale_a).to(v_v.dtype)

        return mvm

    def forward(self, g_s: torch.Tensor, v_v: torch.Tensor) -> torch.Tensor:
        """Unfused evaluation: g_s [T, rows, cols] (S), v_v [T, B, rows] (V) -> i_a [T, B, cols] (A)."""
        self._check(g_s, v_v)
        dtype = self.param_dtype
        return (self.forward_n(g_s.to(dtype), v_v.to(dtype)) * self.full_scale_a).to(v_v.dtype)

    @classmethod
    def stored_hyperparameters(cls, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """The constructor's keyword arguments for the hyperparameters a file stores (a design that gained a
        setting fills in what its older files meant)."""
        return dict(hyperparameters)

    def architecture(self) -> dict[str, Any]:
        """Everything needed to rebuild the module before loading its weights (json-able)."""
        return {"design": self.design, "tile": self.tile.to_dict(), "hyperparameters": self.hyperparameters()}

    def macs_per_vector(self) -> int:
        """Multiply-accumulates per input vector and tile after bind (cost model)."""
        raise NotImplementedError
