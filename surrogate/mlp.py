"""GENIEx-style MLP surrogate (Chakraborty et al., DAC 2020).

Input ``[G scaled (rows*cols), V scaled (rows)]`` -> ``hidden`` ReLU -> per column a ratio of
non-ideal to ideal current, plus a small additive term in units of the full-scale current (so a
column whose ideal current is ~0 can still carry current, e.g. for bipolar inputs). The loss is on
the current, not on the ratio, so near-zero ideal currents never blow up a target. The first layer
splits into ``W_g g + W_v v``: ``bind`` computes ``W_g g`` once per tile; per vector it costs
``rows*hidden + hidden*2*cols + rows*cols`` MACs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from spice.tile import Tile
from surrogate.base import Folded, SurrogateMVM
from surrogate.data import Split


class GeniexMLP(SurrogateMVM):
    """GENIEx-style MLP: [G scaled, V scaled] -> hidden ReLU -> per-column ratio (+ small offset)."""

    design = "mlp"
    OFFSET_SCALE = 0.1
    """The additive head is multiplied by this (fraction of full scale) so it starts small."""

    def __init__(self, tile: Tile, hidden: int = 500) -> None:
        super().__init__(tile)
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
        self.hidden = hidden
        self.n_g = tile.rows * tile.cols
        self.first = nn.Linear(self.n_g + tile.rows, hidden)
        self.out = nn.Linear(hidden, 2 * tile.cols)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
        self.register_buffer("ratio0", torch.ones(tile.cols))

    def hyperparameters(self) -> dict[str, Any]:
        return {"hidden": self.hidden}

    def _scale_g(self, g_s: torch.Tensor) -> torch.Tensor:
        t = self.tile
        return 2.0 * (g_s - t.g_off_s) / (t.g_on_s - t.g_off_s) - 1.0

    def _scale_v(self, v_v: torch.Tensor) -> torch.Tensor:
        t = self.tile
        return 2.0 * (v_v - t.v_read_min_v) / (t.v_read_max_v - t.v_read_min_v) - 1.0

    def _head(self, h: torch.Tensor, v_v: torch.Tensor, g_n: torch.Tensor) -> torch.Tensor:
        o = self.out(h)
        ratio = self.ratio0 + o[..., : self.cols]
        i_ideal_n = (v_v / self.tile.v_read_max_v) @ g_n / self.rows
        return i_ideal_n * ratio + self.OFFSET_SCALE * o[..., self.cols:]

    def fold(self, g_s: torch.Tensor) -> Folded:
        h_g = self._scale_g(g_s).flatten(-2) @ self.first.weight[:, : self.n_g].T + self.first.bias
        return h_g, g_s / self.tile.g_on_s

    def apply_n(self, folded: Folded, v_v: torch.Tensor) -> torch.Tensor:
        h_g, g_n = folded
        h = torch.relu(h_g.unsqueeze(-2) + self._scale_v(v_v) @ self.first.weight[:, self.n_g:].T)
        return self._head(h, v_v, g_n)

    def forward_n(self, g_s: torch.Tensor, v_v: torch.Tensor) -> torch.Tensor:
        x_g = self._scale_g(g_s).flatten(-2).unsqueeze(-2).expand(-1, v_v.shape[1], -1)
        h = torch.relu(self.first(torch.cat([x_g, self._scale_v(v_v)], -1)))
        return self._head(h, v_v, g_s / self.tile.g_on_s)

    def init_from_data(self, train: Split) -> None:
        """Start the ratio head at the least-squares gain of every column on the training data."""
        num = np.sum(train.i_a * train.i_ideal_a, axis=0)
        den = np.sum(train.i_ideal_a ** 2, axis=0)
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
        self.ratio0.copy_(torch.as_tensor(ratio, dtype=self.ratio0.dtype))

    def normalization(self) -> dict[str, Any]:
        return {
            "g_input": "2*(g_s - g_off_s)/(g_on_s - g_off_s) - 1",
            "v_input": "2*(v_v - v_read_min_v)/(v_read_max_v - v_read_min_v) - 1",
            "output": "i_a = full_scale_a * ((v_v/v_read_max_v) @ (g_s/g_on_s) / rows * (ratio0 + r) + 0.1 * d)",
            "full_scale_a": self.full_scale_a,
            "ratio0": [float(x) for x in self.ratio0],
        }

    def macs_per_vector(self) -> int:
        return self.rows * self.hidden + self.hidden * 2 * self.cols + self.rows * self.cols
