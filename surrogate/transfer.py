"""Effective-transfer-matrix surrogate: T_eff(G) once per tile, then ``i = v @ T_eff``.

Per vector exactly the cost of the ideal model. ``T_eff`` is the exact solve of the array without
wires (:func:`surrogate.physics.lumped_transfer`; learned effective driver and sense conductances,
started from the best of a grid around the circuit spec's values) applied to effective cell
conductances ``g_eff = g exp(h) / (1 + a_r rho + a_c kappa)``: ``rho``, ``kappa`` are first-order
wire-drop features (:func:`surrogate.physics.wire_drop`), ``a_r``, ``a_c`` learned gains and ``h``
a small per-cell network of local physics features (zero-initialized: training starts at the
physics prior).

With ``v_order=3`` (non-linear cells) the same per-cell network also gives seven coefficient maps
``M_pq = T * c_pq`` of a third-order expansion of the cell current in the cell voltage
``~ a_r v_r - w_c``, where the column-node voltage ``w_c`` is proportional to the linear column
current ``lin = v @ T``: with ``l = lin / (RMS training current)``,
``i = lin + v^2 @ M20 + v^3 @ M30 + l (v @ M11 + v^2 @ M21) + l^2 (v @ M12 + sum_r M02 / rows)
+ l^3 sum_r M03 / rows``. Bound (:meth:`TransferNet.fold_a`, :meth:`TransferNet.bind_shared`): every
scalar folded into the maps, two matmuls per vector, ``[v, v^2, v^3] @ [P | B]`` and ``[v, 1] @ [L | C]``
(8 rows*cols + 2 cols MACs), and ``i = P + L (B + L (C + L D))``; the features are formed once per
group of tiles that read the same row voltages.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import nn

from spice.tile import Tile
from surrogate.base import Folded, SurrogateMVM
from surrogate.data import Split
from surrogate.physics import lumped_currents, lumped_transfer, wire_drop

log = logging.getLogger(__name__)

R_MIN_OHM = 1e-3
"""Driver/sense resistances below this (0 = ideal source / virtual ground) start from this value."""
CUBIC_BLOCK_ELEMENTS = 2**16
"""Elements of one block of matmul outputs in the in-place cubic evaluation (v_order 3, no autograd):
small enough that a block's intermediates stay in a core's cache."""
V_BASES = ("cubic", "learned")
"""``v_order=3``: the voltage terms beyond v. 'cubic': v^2 and v^3; 'learned': two functions of v learned with the
per-cell maps, ``x^2 + x h_2(x)`` and ``x^3 + x h_3(x)`` (x = v / v_read_max_v, h a small network started at
zero, so training starts from the cubic), which follow cells far from a cubic (a selector's exponential)."""
BASIS_HIDDEN = 24
"""'learned' basis: width of the one hidden layer of h (evaluated once per row voltage, shared by every tile)."""
CUBIC_BLOCK_MAP_ELEMENTS = 2**16
"""Elements of the maps one block multiplies with (tiles side by side, as many as fit, at least one):
small enough to stay in cache while the block's vectors pass."""


def _cubic(x: torch.Tensor, x_lin: torch.Tensor, w_poly: torch.Tensor, w_lin: torch.Tensor, d: torch.Tensor,
           c: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """i = P + L (B + L (C + L D)) for features x [G, B, 3 rows] = [v, v^2, v^3] and x_lin [G, B, rows + 1]
    = [v, 1] against the side-by-side maps of K tiles of :meth:`TransferNet.bind_shared`; [G, B, K, cols]
    (A). With ``out`` (no autograd) the intermediates are updated in place and the result is written
    into ``out``."""
    pb = torch.bmm(x, w_poly).unflatten(-1, (-1, 2, c))  # P | B
    lc = torch.bmm(x_lin, w_lin).unflatten(-1, (-1, 2, c))  # L | C
    p, b = pb[..., 0, :], pb[..., 1, :]
    lin, cc = lc[..., 0, :], lc[..., 1, :]
    if out is None:
        return torch.addcmul(p, lin, torch.addcmul(b, lin, torch.addcmul(cc, lin, d)))
    t = cc.addcmul_(lin, d)
    t = b.addcmul_(lin, t)
    return torch.addcmul(p, lin, t, out=out)


class TransferNet(SurrogateMVM):
    """Effective transfer matrix T_eff(G) from wire-free circuit physics + a per-cell correction network."""

    design = "transfer"
    starts_at_physics_prior = True
    FEATURES = ("g_n", "row_position", "col_position", "rho_row_wire", "kappa_col_wire",
                "driver_load", "sense_load")

    def __init__(self, tile: Tile, cell_hidden: int = 32, v_order: int = 1, v_basis: str = "cubic") -> None:
        super().__init__(tile)
        if not isinstance(cell_hidden, int) or cell_hidden < 1:
            raise ValueError(f"cell_hidden must be a positive integer, got {cell_hidden!r}")
        if v_order not in (1, 3):
            raise ValueError(f"v_order must be 1 (linear in v) or 3 (up to cubic in v), got {v_order!r}")
        if v_basis not in V_BASES:
            raise ValueError(f"v_basis must be one of {V_BASES}, got {v_basis!r}")
        self.cell_hidden = cell_hidden
        self.v_order = v_order
        self.v_basis = v_basis if v_order == 3 else "cubic"
        if self.v_basis == "learned":
            self.basis_net = nn.Sequential(nn.Linear(1, BASIS_HIDDEN), nn.SiLU(), nn.Linear(BASIS_HIDDEN, 2))
            with torch.no_grad():  # start at v^2, v^3
                self.basis_net[-1].weight.zero_()
                self.basis_net[-1].bias.zero_()
        g_on = tile.g_on_s
        self.log_g_driver_n = nn.Parameter(torch.tensor(-math.log(max(tile.r_driver_ohm, R_MIN_OHM) * g_on)))
        self.log_g_sense_n = nn.Parameter(torch.tensor(-math.log(max(tile.r_sense_ohm, R_MIN_OHM) * g_on)))
        self.log_wire_row_gain = nn.Parameter(torch.zeros(()))
        self.log_wire_col_gain = nn.Parameter(torch.zeros(()))
        n_f = len(self.FEATURES)
        self.cell_net = nn.Sequential(
            nn.Linear(n_f, cell_hidden), nn.SiLU(), nn.Linear(cell_hidden, cell_hidden), nn.SiLU(),
            nn.Linear(cell_hidden, 1 if v_order == 1 else 8),
        )
        with torch.no_grad():  # start exactly at the physics prior
            self.cell_net[-1].weight.zero_()
            self.cell_net[-1].bias.zero_()
        self.register_buffer("feature_mean", torch.zeros(n_f))
        self.register_buffer("feature_std", torch.ones(n_f))
        self.register_buffer("lin_scale", torch.ones(()))

    def hyperparameters(self) -> dict[str, Any]:
        return {"cell_hidden": self.cell_hidden, "v_order": self.v_order, "v_basis": self.v_basis}

    def line_resistances_ohm(self) -> tuple[float, float]:
        """The learned effective driver and sense resistances (ohms): per-read noise of loaded cells in the
        crossbar layers (``dnn.mvm.LoadedTileMVM``)."""
        g_on = self.tile.g_on_s
        return (1.0 / (g_on * math.exp(float(self.log_g_driver_n))), 1.0 / (g_on * math.exp(float(self.log_g_sense_n))))

    def param_units(self) -> dict[str, str]:
        return {"log_g_driver_n": "ln(S / g_on_s)", "log_g_sense_n": "ln(S / g_on_s)"}

    def _raw_features(self, g_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.tile
        g_on = t.g_on_s
        rho, kappa = wire_drop(g_n, t.r_wire_row_ohm * g_on, t.r_wire_col_ohm * g_on)
        shape = g_n.shape
        pos_r = torch.linspace(0.0, 1.0, t.rows, dtype=g_n.dtype, device=g_n.device).unsqueeze(-1).expand(shape)
        pos_c = torch.linspace(0.0, 1.0, t.cols, dtype=g_n.dtype, device=g_n.device).expand(shape)
        load_r = (t.r_driver_ohm * g_on * g_n.sum(-1, keepdim=True)).expand(shape)
        load_c = (t.r_sense_ohm * g_on * g_n.sum(-2, keepdim=True)).expand(shape)
        feats = torch.stack([g_n, pos_r, pos_c, rho, kappa, load_r, load_c], -1)
        return feats, rho, kappa

    def _cells(self, g_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Effective conductances (normalized) and the per-cell network outputs [..., 1 or 8]."""
        g_n = g_s / self.tile.g_on_s
        feats, rho, kappa = self._raw_features(g_n)
        out = self.cell_net((feats - self.feature_mean) / self.feature_std)
        wire = 1.0 + torch.exp(self.log_wire_row_gain) * rho + torch.exp(self.log_wire_col_gain) * kappa
        return g_n * torch.exp(out[..., 0]) / wire, out

    def transfer_n(self, g_s: torch.Tensor) -> torch.Tensor:
        """The effective linear transfer matrix T_eff / g_on_s [T, rows, cols] (normalized)."""
        g_eff, _ = self._cells(g_s)
        return lumped_transfer(g_eff, torch.exp(self.log_g_driver_n), torch.exp(self.log_g_sense_n))

    def fold(self, g_s: torch.Tensor) -> Folded:
        g_eff, out = self._cells(g_s)
        t_n = lumped_transfer(g_eff, torch.exp(self.log_g_driver_n), torch.exp(self.log_g_sense_n))
        if self.v_order == 1:
            return (t_n,)
        m = t_n.unsqueeze(-1) * out[..., 1:]  # per-cell coefficient matrices, [T, rows, cols, 7]
        w_v = torch.cat([t_n, m[..., 2], m[..., 4]], -1)  # v    -> lin | b (x lin) | c (x lin^2)
        w_v2 = torch.cat([m[..., 0], m[..., 3]], -1)  # v^2  -> a | b
        w_v3 = m[..., 1]  # v^3  -> a
        col = m[..., 5:].sum(-3).transpose(-1, -2)  # [T, 2, cols]: lin^2 and lin^3 coefficients
        return w_v, w_v2, w_v3, col

    def basis(self, v_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two voltage terms beyond v of ``v_basis`` at normalized row voltages v_n (same shape each)."""
        sq, cube = v_n * v_n, v_n * v_n * v_n
        if self.v_basis == "cubic":
            return sq, cube
        h = self.basis_net(v_n.unsqueeze(-1).to(self.param_dtype)).to(v_n.dtype)
        return sq + v_n * h[..., 0], cube + v_n * h[..., 1]

    def apply_n(self, folded: Folded, v_v: torch.Tensor) -> torch.Tensor:
        v_n = v_v / self.tile.v_read_max_v
        if self.v_order == 1:
            return v_n @ folded[0] / self.rows
        w_v, w_v2, w_v3, col = folded
        c = self.cols
        q2, q3 = self.basis(v_n)
        p1 = v_n @ w_v / self.rows
        p2 = q2 @ w_v2 / self.rows
        lin = p1[..., :c]
        a = p2[..., :c] + q3 @ w_v3 / self.rows
        b = p1[..., c:2 * c] + p2[..., c:]
        return self._combine(lin, a, b, p1[..., 2 * c:], col[..., 0:1, :], col[..., 1:2, :])

    def bind(self, g_s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """As :meth:`SurrogateMVM.bind`; with ``v_order=1`` the bound function is one batched matmul
        ``v_v @ T_eff`` with ``T_eff`` in A/V (exactly the cost of the ideal model); with ``v_order=3``
        it is :meth:`bind_shared` with one tile per group."""
        self._check(g_s)
        n_tiles = g_s.shape[0]
        if self.v_order != 1:
            shared = self.bind_shared(g_s.unsqueeze(1))

            def mvm3(v_v: torch.Tensor) -> torch.Tensor:
                if v_v.ndim != 3 or v_v.shape[0] != n_tiles or v_v.shape[2] != self.rows:
                    raise ValueError(f"v_v has shape {tuple(v_v.shape)}; expected [{n_tiles}, B, {self.rows}]")
                return shared(v_v)[:, 0]

            return mvm3
        t_a = self.fold(g_s.to(self.param_dtype))[0] * self.tile.g_on_s  # A/V

        def mvm(v_v: torch.Tensor) -> torch.Tensor:
            if v_v.ndim != 3 or v_v.shape[0] != n_tiles or v_v.shape[2] != self.rows:
                raise ValueError(f"v_v has shape {tuple(v_v.shape)}; expected [{n_tiles}, B, {self.rows}]")
            return torch.matmul(v_v.to(t_a.dtype), t_a).to(v_v.dtype)

        return mvm

    def fold_a(self, g_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The maps of :meth:`fold` (``v_order=3``) in SI units, every scalar folded in, for
        ``i_a = P + L (B + L (C + L D))`` with ``[P | B] = [v, v^2, v^3] @ w_poly`` and
        ``[L | C] = v @ w_lin + c0`` (v in V, currents in A):

        - ``w_poly`` [T, 3 rows, 2 cols]: P = lin + a (A; maps in A/V, A/V^2, A/V^3 for the rows
          of v, v^2, v^3) and B = l b / L (dimensionless; maps in 1/V, 1/V^2, 0);
        - ``w_lin`` [T, rows, 2 cols]: L = lin (A; map in A/V) and the v-part of C (1/A; map in 1/(A V));
        - ``c0`` [T, 2 cols]: 0 for L and the constant of C (1/A);
        - ``d`` [T, cols]: the cubic coefficient D (1/A^2).

        Equal to :meth:`apply_n` up to float rounding (a test checks it).
        """
        w_v, w_v2, w_v3, col = self.fold(g_s)
        c, rows = self.cols, self.rows
        fs, vm, s = self.full_scale_a, self.tile.v_read_max_v, self.lin_scale
        t_n, m11, m12 = w_v[..., :c], w_v[..., c:2 * c], w_v[..., 2 * c:]
        m20, m21, m30 = w_v2[..., :c], w_v2[..., c:], w_v3
        k_lin = fs / (rows * vm)  # normalized map -> A per V of v
        zeros = torch.zeros_like(t_n)
        w_poly = torch.cat([torch.cat([t_n * k_lin, m11 * (s / (rows * vm))], -1),
                            torch.cat([m20 * (k_lin / vm), m21 * (s / (rows * vm * vm))], -1),
                            torch.cat([m30 * (k_lin / (vm * vm)), zeros], -1)], -2)
        w_lin = torch.cat([t_n * k_lin, m12 * (s * s / (fs * rows * vm))], -1)
        c0 = torch.cat([torch.zeros_like(col[..., 0, :]), col[..., 0, :] * (s * s / (fs * rows))], -1)
        d = col[..., 1, :] * (s * s * s / (fs * fs * rows))
        return w_poly, w_lin, c0, d

    def bind_shared(self, g_s: torch.Tensor, input_levels: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s [G, K, rows, cols] (S): G groups of K tiles whose rows read the same voltages (the bit
        slices, polarity arrays and column tiles of one row tile) -> f(v_v [G, B, rows] (V)) ->
        i_a [G, K, B, cols] (A) (``dnn.mvm.SharedInputTileMVM``).

        ``v_order=3``: the features [v, v^2, v^3] are formed once per group and multiplied with the
        maps of all K tiles side by side (:meth:`fold_a`); without autograd the cubic evaluation runs
        in cache-sized blocks of groups, tiles and vectors, in place. ``v_order=1``: one matmul per group.
        ``input_levels`` is not used (the powers of v cost less than a table lookup).
        """
        if g_s.ndim != 4 or tuple(g_s.shape[2:]) != (self.rows, self.cols):
            raise ValueError(f"g_s has shape {tuple(g_s.shape)}; this surrogate expects [G, K, {self.rows}, "
                             f"{self.cols}]")
        n_g, k = g_s.shape[:2]
        rows, c = self.rows, self.cols
        g = g_s.reshape(n_g * k, rows, c).to(self.param_dtype)

        def side_by_side(w: torch.Tensor) -> torch.Tensor:
            """[G*K, n, m] -> [G, n, K*m]: the K tiles of a group side by side along the columns."""
            return w.reshape(n_g, k, w.shape[-2], w.shape[-1]).transpose(1, 2).reshape(n_g, w.shape[-2], -1)

        def check(v_v: torch.Tensor) -> None:
            if v_v.ndim != 3 or v_v.shape[0] != n_g or v_v.shape[2] != rows:
                raise ValueError(f"v_v has shape {tuple(v_v.shape)}; expected [{n_g}, B, {rows}]")

        if self.v_order == 1:
            t_a = side_by_side(self.fold(g)[0] * self.tile.g_on_s)  # A/V

            def mvm1(v_v: torch.Tensor) -> torch.Tensor:
                check(v_v)
                i = torch.matmul(v_v.to(t_a.dtype), t_a).to(v_v.dtype)  # [G, B, K*cols]
                return i.unflatten(-1, (k, c)).transpose(1, 2)

            return mvm1
        w_poly, w_lin, c0, d = self.fold_a(g)
        vm = self.tile.v_read_max_v
        w_lin = torch.cat([w_lin, c0.unsqueeze(-2)], -2)  # the constant of C as the row of a unit input
        w_poly, w_lin = side_by_side(w_poly), side_by_side(w_lin)  # [G, 3 rows | rows + 1, K*2*cols]
        d = d.reshape(n_g, 1, k, c)

        def mvm3(v_v: torch.Tensor) -> torch.Tensor:
            check(v_v)
            v = v_v.to(w_poly.dtype)
            q2, q3 = self.basis(v / vm)
            x = torch.cat([v, q2 * (vm * vm), q3 * (vm * vm * vm)], -1)  # [G, B, 3 rows]: v, v^2, v^3 when cubic
            x_lin = torch.cat([v, torch.ones_like(v[..., :1])], -1)  # [G, B, rows + 1]
            n_b = v.shape[1]
            if torch.is_grad_enabled() and (v.requires_grad or w_poly.requires_grad):
                return _cubic(x, x_lin, w_poly, w_lin, d, c).transpose(1, 2).to(v_v.dtype)
            i = torch.empty((n_g, n_b, k, c), dtype=v.dtype, device=v.device)
            # blocks of (groups, vectors, tiles): the maps of k_step tiles stay in cache while blocks of
            # vectors pass; the matmul outputs of a block hold about CUBIC_BLOCK_ELEMENTS
            k_step = max(1, min(k, CUBIC_BLOCK_MAP_ELEMENTS // (4 * rows * 2 * c)))
            b_step = max(1, min(n_b, CUBIC_BLOCK_ELEMENTS // (2 * c * k_step)))
            g_step = max(1, CUBIC_BLOCK_ELEMENTS // (2 * c * k * n_b)) if k_step == k and b_step == n_b else 1
            for g0 in range(0, n_g, g_step):
                gs = slice(g0, g0 + g_step)
                for k0 in range(0, k, k_step):
                    ks, cs = slice(k0, k0 + k_step), slice(2 * c * k0, 2 * c * (k0 + k_step))
                    wp, wl, dk = w_poly[gs, :, cs], w_lin[gs, :, cs], d[gs, :, ks]
                    for b0 in range(0, n_b, b_step):
                        bs = slice(b0, b0 + b_step)
                        _cubic(x[gs, bs], x_lin[gs, bs], wp, wl, dk, c, out=i[gs, bs, ks])
            return i.transpose(1, 2).to(v_v.dtype)

        return mvm3

    def _combine(self, lin: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                 c2: torch.Tensor, c3: torch.Tensor) -> torch.Tensor:
        """i = lin + a + l*b + l^2*(c + c2/rows) + l^3*c3/rows with l = lin * lin_scale ~ 1.

        All currents are fractions of full scale; ``lin_scale`` (1 / RMS training current) makes
        a unit coefficient of every term about as large as the linear current, so Adam moves
        all of them at the same pace.
        """
        l1 = lin * self.lin_scale
        return lin + a + l1 * b + l1 * l1 * (c + c2 / self.rows) + l1 * l1 * l1 * c3 / self.rows

    def forward_n(self, g_s: torch.Tensor, v_v: torch.Tensor) -> torch.Tensor:
        """Solves the circuit per input vector instead of forming T, and evaluates every correction
        term with its own matmul (an independent path to check :meth:`fold`)."""
        g_eff, out = self._cells(g_s)
        g_d, g_sn = torch.exp(self.log_g_driver_n), torch.exp(self.log_g_sense_n)
        v_n = v_v / self.tile.v_read_max_v
        lin = lumped_currents(g_eff, v_n, g_d, g_sn) / self.rows
        if self.v_order == 1:
            return lin
        t_n = lumped_transfer(g_eff, g_d, g_sn)
        m = [t_n * out[..., k] for k in range(1, 8)]  # c20, c30, c11, c21, c12, c02, c03
        q2, q3 = self.basis(v_n)
        a = (q2 @ m[0] + q3 @ m[1]) / self.rows
        b = (v_n @ m[2] + q2 @ m[3]) / self.rows
        c = v_n @ m[4] / self.rows
        return self._combine(lin, a, b, c, m[5].sum(-2, keepdim=True), m[6].sum(-2, keepdim=True))

    def init_from_data(self, train: Split) -> None:
        """StandardScaler of the per-cell features over the training matrices, the RMS training current
        (``lin_scale``), and the effective driver and sense resistances of the physics prior."""
        self._calibrate_prior(train)
        with torch.no_grad():
            g_n = torch.as_tensor(train.g_s / self.tile.g_on_s, dtype=torch.float64)
            feats = self._raw_features(g_n)[0].reshape(-1, len(self.FEATURES)).numpy()
        scaler = StandardScaler().fit(feats)
        std = np.where(scaler.scale_ > 1e-12, scaler.scale_, 1.0)
        self.feature_mean.copy_(torch.as_tensor(scaler.mean_, dtype=self.feature_mean.dtype))
        self.feature_std.copy_(torch.as_tensor(std, dtype=self.feature_std.dtype))
        rms = float(np.sqrt(np.mean((train.i_a / self.full_scale_a) ** 2)))
        self.lin_scale.fill_(1.0 / rms if rms > 0 else 1.0)

    @torch.no_grad()
    def _calibrate_prior(self, train: Split, max_matrices: int = 8, max_samples: int = 2048) -> None:
        """Pick the effective driver and sense resistances that fit (part of) the training data best.

        A grid of 10^k multiples of the spec's values: a custom driver or sense subcircuit (e.g. a
        TIA whose ``r`` is a feedback resistor but whose input is a virtual ground) can be far
        from the series resistor the spec names, further than gradient steps on a log scale travel.
        With ``v_order=3`` each candidate is scored after a least-squares fit of one global
        coefficient per correction term (so a non-linear cell's gain is not mistaken for lower
        driver and sense resistances), and the winner's coefficients start the per-cell maps.
        """
        t = self.tile
        g_on = t.g_on_s
        pick = np.flatnonzero(train.g_index < max_matrices)[:max_samples]
        g_n = torch.as_tensor(train.g_s[:max_matrices] / g_on, dtype=torch.float64)
        rho, kappa = wire_drop(g_n, t.r_wire_row_ohm * g_on, t.r_wire_col_ohm * g_on)
        g_eff = g_n / (1.0 + rho + kappa)
        groups = [pick[train.g_index[pick] == k] for k in range(len(g_n))]
        v_n = [torch.as_tensor(train.v_v[idx] / t.v_read_max_v, dtype=torch.float64) for idx in groups]
        target = torch.cat([torch.as_tensor(train.i_a[idx] / t.full_scale_a, dtype=torch.float64)
                            for idx in groups]).reshape(-1)
        scale = 1.0 / max(float(target.square().mean().sqrt()), 1e-30)
        factors = 10.0 ** np.array([-6, -4, -3, -2, -1.5, -1, -0.5, -0.25, 0, 0.25, 0.5, 1])
        candidates = {key: max(getattr(t, key), R_MIN_OHM) * factors for key in ("r_driver_ohm", "r_sense_ohm")}
        best: tuple[float, float, float, torch.Tensor | None] = (float("inf"), 0.0, 0.0, None)
        for r_d in candidates["r_driver_ohm"]:
            for r_s in candidates["r_sense_ohm"]:
                t_n = lumped_transfer(g_eff, 1.0 / (r_d * g_on), 1.0 / (r_s * g_on))
                feats = torch.cat([self._prior_features(v, t_k, scale) for v, t_k in zip(v_n, t_n, strict=True)])
                resid = target - feats[:, 0]
                coef = None
                if self.v_order == 3:
                    coef = torch.linalg.lstsq(feats[:, 1:], resid.unsqueeze(-1)).solution[:, 0]
                    resid = resid - feats[:, 1:] @ coef
                err = float(resid.square().mean())
                if err < best[0]:
                    best = (err, r_d, r_s, coef)
        _, r_d, r_s, coef = best
        self.log_g_driver_n.fill_(-math.log(r_d * g_on))
        self.log_g_sense_n.fill_(-math.log(r_s * g_on))
        if coef is not None:  # start every per-cell coefficient map at the fitted global value
            self.cell_net[-1].bias[1:].copy_(coef.to(self.cell_net[-1].bias.dtype))
        log.info("physics prior: effective R_driver %.3g ohm, R_sense %.3g ohm (spec %.3g, %.3g); rms %.2e of full "
                 "scale on %d training samples", r_d, r_s, t.r_driver_ohm, t.r_sense_ohm, math.sqrt(best[0]), len(pick))

    def _prior_features(self, v_n: torch.Tensor, t_n: torch.Tensor, scale: float) -> torch.Tensor:
        """[n * cols, k] terms of the model with every per-cell coefficient map equal to T (calibration)."""
        lin = v_n @ t_n / self.rows
        if self.v_order == 1:
            return lin.reshape(-1, 1)
        l1 = lin * scale
        q2, q3 = self.basis(v_n)
        v2 = q2 @ t_n / self.rows
        col = t_n.sum(-2) / self.rows
        terms = [lin, v2, q3 @ t_n / self.rows, l1 * lin, l1 * v2, l1 * l1 * lin, l1 * l1 * col,
                 l1 ** 3 * col]
        return torch.stack([x.expand_as(lin) for x in terms], -1).reshape(-1, len(terms))

    def normalization(self) -> dict[str, Any]:
        return {
            "conductance": "g_n = g_s / g_on_s",
            "voltage": "v_n = v_v / v_read_max_v",
            "output": "i_a = full_scale_a * i_n; v_order 1: i_n = v_n @ T_n / rows; v_order 3: see "
                      "TransferNet docstring",
            "full_scale_a": self.full_scale_a,
            "cell_features": list(self.FEATURES),
            "feature_mean": [float(x) for x in self.feature_mean],
            "feature_std": [float(x) for x in self.feature_std],
            "lin_scale": float(self.lin_scale),
        }

    def macs_per_vector(self) -> int:
        """v_order 1: ``v @ T_eff``; v_order 3: the two matmuls of :meth:`bind_shared` (one of the
        eight rows x cols blocks is zeros)."""
        rc = self.rows * self.cols
        if self.v_order == 1:
            return rc
        return 8 * rc + 2 * self.cols + (3 * BASIS_HIDDEN * self.rows if self.v_basis == "learned" else 0)
