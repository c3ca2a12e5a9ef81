"""Closed-form crossbar physics: wire-drop features, lumped and analytic transfer matrices.

All functions work in *normalized units* (torch, differentiable, batched over leading dimensions):

- conductance ``g_n = g / g_on`` and resistance ``r_n = R * g_on`` (dimensionless),
- voltage ``v_n = v / v_max``,
- current ``i_n = i / i_fs`` with the full-scale current ``i_fs = g_on * v_max * rows`` (A),

so a transfer matrix ``T`` (A/V) becomes ``T_n = T / g_on`` and ``i_n = v_n @ T_n / rows``.
The topology is the one of :mod:`spice.circuit`: drivers at column 0 of every row, sense elements
below the last row of every column.
"""

from __future__ import annotations

import torch

from spice.tile import Tile

TileSpec = Tile
"""The tile record a surrogate is built for: :class:`spice.tile.Tile` (the same class, by its older name)."""


def wire_drop(g_n: torch.Tensor, r_row_n: float, r_col_n: float) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order relative IR drop on the row and column wires at every cell.

    Assumes every cell carries a current proportional to its conductance: row segment k carries the
    currents of cells k..cols-1, so cell c's row node drops by ``r_row * sum_{k<=c} sum_{j>=k} g_rj``
    (relative to the cell voltage); column segment k carries rows 0..k, so cell r's column node
    rises by ``r_col * sum_{k>=r} sum_{j<=k} g_jc``. ``g_n`` [..., rows, cols]; returns
    ``(rho, kappa)`` of the same shape (dimensionless).
    """
    tail = torch.flip(torch.cumsum(torch.flip(g_n, (-1,)), -1), (-1,))  # sum_{j>=k} g_rj
    rho = r_row_n * torch.cumsum(tail, -1)
    head = torch.cumsum(g_n, -2)  # sum_{j<=k} g_jc
    kappa = r_col_n * torch.flip(torch.cumsum(torch.flip(head, (-2,)), -2), (-2,))
    return rho, kappa


def lumped_transfer(g_n: torch.Tensor, g_driver_n: torch.Tensor | float,
                    g_sense_n: torch.Tensor | float) -> torch.Tensor:
    """Exact transfer matrix of the array *without wire resistance* (driver and sense resistors kept).

    Row nodes u (behind the drivers) and column nodes w (above the sense resistors) obey
    ``D_u u = g_d v + G w`` and ``G^T u = D_w w`` with ``D_u = diag(g_d + row sums)``,
    ``D_w = diag(g_s + column sums)``. Eliminating u gives ``S w = g_d G^T D_u^-1 v`` with the
    Schur complement ``S = D_w - G^T D_u^-1 G`` (symmetric positive definite), and the column
    currents ``i = g_s w``, so ``T = diag(g_d / d_u) G (S / g_s)^-1``. One cols x cols solve per tile.
    ``g_n`` [..., rows, cols]; returns ``T_n`` [..., rows, cols] (normalized A/V).
    """
    g_driver_n = torch.as_tensor(g_driver_n, dtype=g_n.dtype, device=g_n.device)
    g_sense_n = torch.as_tensor(g_sense_n, dtype=g_n.dtype, device=g_n.device)
    d_u = g_driver_n + g_n.sum(-1)  # [..., rows]
    g_over_du = g_n / d_u.unsqueeze(-1)
    s_scaled = (torch.diag_embed(g_n.sum(-2) / g_sense_n + 1.0)
                - g_n.transpose(-1, -2) @ g_over_du / g_sense_n)  # S / g_s, [..., cols, cols]
    x = torch.linalg.solve(s_scaled, g_n.transpose(-1, -2)).transpose(-1, -2)  # G (S/g_s)^-1
    return (g_driver_n / d_u).unsqueeze(-1) * x


def lumped_currents(g_n: torch.Tensor, v_n: torch.Tensor, g_driver_n: torch.Tensor | float,
                    g_sense_n: torch.Tensor | float) -> torch.Tensor:
    """Column currents of the wire-free array solved per input vector (no transfer matrix formed).

    The same circuit as :func:`lumped_transfer`, solved as ``(S/g_s) w' = G^T (g_d/d_u) v`` for
    every vector; used as an independent reference for the folded path. ``g_n`` [T, rows, cols],
    ``v_n`` [T, B, rows]; returns ``v_n @ T_n`` [T, B, cols] (normalized units before the 1/rows).
    """
    g_driver_n = torch.as_tensor(g_driver_n, dtype=g_n.dtype, device=g_n.device)
    g_sense_n = torch.as_tensor(g_sense_n, dtype=g_n.dtype, device=g_n.device)
    d_u = g_driver_n + g_n.sum(-1)
    s_scaled = (torch.diag_embed(g_n.sum(-2) / g_sense_n + 1.0)
                - g_n.transpose(-1, -2) @ (g_n / d_u.unsqueeze(-1)) / g_sense_n)
    rhs = g_n.transpose(-1, -2) @ ((g_driver_n / d_u).unsqueeze(-1) * v_n.transpose(-1, -2))  # [T, cols, B]
    return torch.linalg.solve(s_scaled, rhs).transpose(-1, -2)


def analytic_transfer(g_n: torch.Tensor, tile: Tile) -> torch.Tensor:
    """Closed-form IR-drop model (no linear solve): the analytic baseline of the fidelity report.

    Every cell's conductance is reduced by its first-order wire drop, ``g_eff = g / (1 + rho + kappa)``
    (:func:`wire_drop`); each row is attenuated by its driver, ``a_r = 1 / (1 + R_d sum_c g_eff)``,
    and each column by its sense resistor, ``b_c = 1 / (1 + R_s sum_r g_eff)``, independently:
    ``T = a_r g_eff b_c``. It ignores that the column voltage also lowers the cell voltage (the
    driver-sense interaction), which the lumped solve captures.
    """
    g_on = tile.g_on_s
    rho, kappa = wire_drop(g_n, tile.r_wire_row_ohm * g_on, tile.r_wire_col_ohm * g_on)
    g_eff = g_n / (1.0 + rho + kappa)
    a = 1.0 / (1.0 + tile.r_driver_ohm * g_on * g_eff.sum(-1))
    b = 1.0 / (1.0 + tile.r_sense_ohm * g_on * g_eff.sum(-2))
    return a.unsqueeze(-1) * g_eff * b.unsqueeze(-2)


def loading_maps(g_n: torch.Tensor, tile: Tile) -> torch.Tensor:
    """[..., 5, rows, cols]: 1, the row- and column-wire drop features, r_driver * (row conductance) and
    r_sense * (column conductance), for conductances g_n = g / g_on_s [..., rows, cols]."""
    g_on = tile.g_on_s
    rho, kappa = wire_drop(g_n, tile.r_wire_row_ohm * g_on, tile.r_wire_col_ohm * g_on)
    load_r = (tile.r_driver_ohm * g_on * g_n.sum(-1, keepdim=True)).expand_as(g_n)
    load_c = (tile.r_sense_ohm * g_on * g_n.sum(-2, keepdim=True)).expand_as(g_n)
    return torch.stack([torch.ones_like(g_n), rho, kappa, load_r, load_c], -3)
