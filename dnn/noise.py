"""Device non-idealities applied to conductances before the tile MVM: read noise, drift, clipping.

Seeding: every draw comes from a `torch.Generator` seeded with `derive_seed(CrossbarConfig.seed, layer
name, ...)`, so a run is reproducible and layers draw independent streams (read noise: one stream per
layer and device; drift exponents: one draw per layer and programming, made on CPU).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch


def derive_seed(seed: int, *names: str) -> int:
    """Stable 63-bit seed from a base seed and names (e.g. a module's qualified name)."""
    h = zlib.crc32(":".join(names).encode())
    return (seed * 1_000_003 + h) % (2**63 - 1)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A `torch.Generator` on `device` seeded with `seed`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def apply_read_noise(g_s: torch.Tensor, sigma: float, generator: torch.Generator,
                     scale: torch.Tensor | None = None) -> torch.Tensor:
    """Relative Gaussian read noise g * (1 + sigma * N(0, 1)), a new draw per call (siemens); with `scale`
    (per device, dimensionless; ``dnn.device.read_noise_scale``) g * (1 + sigma * scale * N(0, 1))."""
    if sigma <= 0.0:
        return g_s
    eps = torch.randn(g_s.shape, generator=generator, device=g_s.device, dtype=g_s.dtype)
    if scale is None:
        return g_s * (1.0 + sigma * eps)
    return g_s * (1.0 + sigma * scale.to(g_s) * eps)


def per_read_noise_currents(v_v: torch.Tensor, t_sq: torch.Tensor, sigma: float,
                            generator: torch.Generator) -> torch.Tensor:
    """Column-current read noise with a new draw for every read (amperes): v_v [T, B, rows] volts,
    t_sq [T, rows, cols] squared effective transfer matrix (A/V)^2. Each cell's contribution v_i T_ij
    gets its own relative error sigma * N(0, 1), so column j's noise is N(0, sigma^2 sum_i (v_i T_ij)^2)."""
    std = sigma * torch.bmm(v_v * v_v, t_sq).sqrt()
    return std * torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)


@dataclass(frozen=True)
class LoadedNoiseMaps:
    """What per-read noise of loaded cells needs of one programming (see :func:`loaded_noise_maps`)."""

    w_sq: torch.Tensor  # [T, rows, cols] squared sensitivity w^2 of column j to cell (i, j), (A/V)^2
    w_col: torch.Tensor  # [T, 1, cols] sum over rows of w_sq
    row_rise: torch.Tensor
    """[T, cols, rows] row-node rise per column current, r_driver r_sense g_ij row_scale_i, transposed (V/A)."""
    row_scale: torch.Tensor  # [T, 1, rows] 1 / (1 + r_driver * row conductance)
    r_driver_ohm: float
    r_sense_ohm: float
    w_sq_chord: tuple[torch.Tensor, torch.Tensor] | None = None
    """Non-linear cells: w^2 times the u^2 and u^4 coefficients of the chord polynomial (float64,
    (A/V)^2 / V^2 and / V^4; :func:`chord_polynomial`); None for linear cells."""


CHORD_FRACTIONS = (0.02, 1.0 / 3.0, 2.0 / 3.0, 1.0)
"""Row voltages (fractions of v_read_max_v) at which :func:`chord_polynomial` reads each cell's response."""
CHORD_LINEAR_RTOL = 1e-6
"""A tile whose one-row responses per volt agree at every such voltage within this is linear."""


def chord_polynomial(transfer_at: Callable[[float], torch.Tensor], v_read_max_v: float
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """How a non-linear cell's share of the column current grows with the voltage it reads.

    ``transfer_at(v)`` is the tile's response to one row at a time driven at v volts, per volt,
    [T, rows, cols] (A/V); T(v_read_max_v) is what :func:`loaded_noise_maps` takes. Returns the
    coefficients (q0, q2, q4) [T, rows, cols] (float64; 1, V^-2, V^-4) of the least-squares fit
    ``(T(u) / T(v_read_max_v))^2 ~ q0 + q2 u^2 + q4 u^4`` over ``CHORD_FRACTIONS`` of v_read_max_v, or None
    when T does not depend on the voltage (a linear cell: no correction)."""
    volts = [f * v_read_max_v for f in CHORD_FRACTIONS]
    t = torch.stack([transfer_at(v).detach().to(torch.float64) for v in volts])  # [K, T, rows, cols]
    t_max = t[-1]
    if bool(((t - t_max).abs() <= CHORD_LINEAR_RTOL * t_max.abs().amax((-2, -1), keepdim=True)).all()):
        return None
    ratio_sq = (t / torch.where(t_max.abs() > 0, t_max, torch.ones_like(t_max))) ** 2
    u = torch.tensor(volts, dtype=torch.float64, device=t.device)
    basis = torch.stack([torch.ones_like(u), u**2, u**4], 1)  # [K, 3]
    coef = torch.linalg.pinv(basis) @ ratio_sq.reshape(len(volts), -1)  # [3, T * rows * cols]
    q0, q2, q4 = coef.reshape((3,) + tuple(t_max.shape))
    return q0, q2, q4


def loaded_noise_maps(t_a_per_v: torch.Tensor, g_s: torch.Tensor, r_driver_ohm: float,
                      r_sense_ohm: float,
                      chord: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                      scale_sq: torch.Tensor | None = None) -> LoadedNoiseMaps:
    """Maps of :func:`loaded_read_noise_currents` for tiles with conductances g_s [T, rows, cols] (S), effective
    transfer matrix t_a_per_v (the response to one row at a time, A/V), a driver resistance in series with
    every row and a sense resistance in series with every column (ohms).

    In the lumped array (cells between row and column nodes, the driver from each row node to its
    source, the sense from each column node to ground; nodal impedance matrix Z), a relative change e of
    cell (i, j) that reads u volts moves column j's current by ``g_ij u e lambda_ij``, lambda_ij = (Z[c_j, c_j] -
    Z[c_j, r_i]) / r_sense the share of a current injected across the cell that reaches the sense. The
    wires are carried by the ratio of the effective transfer matrix to the lumped one (Z[c_j, r_i] /
    (r_driver r_sense)): w_ij = g_ij lambda_ij T_ij / T_lumped_ij. Solved in float64.

    Non-linear cells (``chord``, :func:`chord_polynomial`): a cell's share grows with the voltage u it
    reads as the one-row response does, w_ij(u)^2 = w_ij^2 (q0 + q2 u^2 + q4 u^4), T taken at v_read_max_v.
    ``scale_sq`` [T, rows, cols]: the square of each cell's read-noise factor (``dnn.device.read_noise_scale``)."""
    dtype = t_a_per_v.dtype
    g = g_s.detach().to(torch.float64)
    n_t, rows, cols = g.shape
    r_d, r_s = max(r_driver_ohm, R_LINE_MIN_OHM), max(r_sense_ohm, R_LINE_MIN_OHM)
    y = torch.zeros(n_t, rows + cols, rows + cols, dtype=torch.float64, device=g.device)
    y[:, :rows, :rows] = torch.diag_embed(1.0 / r_d + g.sum(-1))
    y[:, rows:, rows:] = torch.diag_embed(1.0 / r_s + g.sum(-2))
    y[:, :rows, rows:] = -g
    y[:, rows:, :rows] = -g.transpose(-1, -2)
    z_col = torch.linalg.inv(y)[:, rows:, :]  # [T, cols (j), rows + cols]
    z_cr = z_col[:, :, :rows].transpose(-1, -2)  # [T, rows, cols]: Z[c_j, r_i]
    z_cc = torch.diagonal(z_col[:, :, rows:], dim1=-2, dim2=-1)[:, None, :]  # Z[c_j, c_j]
    own = g * (z_cc - z_cr) / r_s  # g_ij lambda_ij
    t_lumped = z_cr / (r_d * r_s)
    ratio = torch.where(t_lumped > 0, t_a_per_v.to(torch.float64) / t_lumped.clamp_min(1e-300), torch.ones_like(own))
    w_sq = (own * ratio) ** 2
    if scale_sq is not None:
        w_sq = w_sq * scale_sq.to(torch.float64)
    row_scale = 1.0 / (1.0 + r_driver_ohm * g.sum(-1))
    w_sq_chord = None
    if chord is not None:
        q0, q2, q4 = (q.to(torch.float64) for q in chord)
        w_sq_chord = (w_sq * q2, w_sq * q4)
        w_sq = w_sq * q0
    row_rise = (r_driver_ohm * r_sense_ohm) * g.transpose(-1, -2) * row_scale[:, None, :]
    return LoadedNoiseMaps(w_sq=w_sq.to(dtype), w_col=w_sq.sum(-2, keepdim=True).to(dtype),
                           row_rise=row_rise.to(dtype).contiguous(), row_scale=row_scale[:, None, :].to(dtype),
                           r_driver_ohm=r_driver_ohm, r_sense_ohm=r_sense_ohm, w_sq_chord=w_sq_chord)


READ_G_FLOOR_FRACTION = 1e-6
"""A conductance redrawn for one read stays above this fraction of g_off: a cell cannot read a negative
conductance (an open cell reads about nothing). Per-read draws are not clipped to the programmable range.
"""

R_LINE_MIN_OHM = 1e-3
"""Driver/sense resistances below this (0 = ideal source / virtual ground) enter the lumped array as this."""


def loaded_read_noise_currents(v_v: torch.Tensor, i_a: torch.Tensor, maps: LoadedNoiseMaps, sigma: float,
                               generator: torch.Generator) -> torch.Tensor:
    """Column-current read noise with a new draw for every read (amperes), for cells loaded by the array:
    N(0, 1) times :func:`loaded_read_noise_std`."""
    std = loaded_read_noise_std(v_v, i_a, maps, sigma)
    return std.mul_(torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype))


def loaded_read_noise_std(v_v: torch.Tensor, i_a: torch.Tensor, maps: LoadedNoiseMaps, sigma: float) -> torch.Tensor:
    """Standard deviation of the column-current read noise (amperes) of cells loaded by the array:
    v_v [T, B, rows] volts, i_a [T, B, cols] the noise-free column currents. Cell (i, j) reads
    ``u_ij = a_i - s_j`` volts with all rows driven: the column node rises to ``s_j = r_sense i_j`` and the row
    node sits at ``a_i = (v_i + r_driver sum_k g_ik s_k) / (1 + r_driver sum_k g_ik)``; its relative error
    sigma N(0, 1) then reaches column j as ``w_ij u_ij sigma N(0, 1)`` (:func:`loaded_noise_maps`), so column j's
    noise is N(0, sigma^2 sum_i w_ij^2 u_ij^2). Without driver and sense (w = T, u = v) this is
    :func:`per_read_noise_currents`."""
    s = maps.r_sense_ohm * i_a
    a = torch.baddbmm(v_v * maps.row_scale, i_a, maps.row_rise)  # row nodes: (v_i + r_d sum_k g_ik s_k) row_scale_i
    cross = torch.bmm(a, maps.w_sq)
    var = torch.bmm(a * a, maps.w_sq)  # sum_i w^2 (a_i - s_j)^2 = sum_i w^2 a_i^2 + s_j (s_j sum_i w^2 - 2 sum_i w^2 a_i)
    var.addcmul_(s, cross.mul_(-2.0).addcmul_(s, maps.w_col))
    if maps.w_sq_chord is not None:  # + sum_i w^2 (q2 u^4 + q4 u^6), u = a_i - s_j, in float64
        a64, s64 = a.to(torch.float64), s.to(torch.float64)
        w4, w6 = maps.w_sq_chord
        extra = _power_sum(a64, s64, w4, 4) + _power_sum(a64, s64, w6, 6)
        var = var + extra.to(var.dtype)
    return var.clamp_min_(0.0).sqrt_().mul_(sigma)


def _power_sum(a: torch.Tensor, s: torch.Tensor, w: torch.Tensor, power: int) -> torch.Tensor:
    """sum_i w_ij (a_i - s_j)^power for a [T, B, rows], s [T, B, cols], w [T, rows, cols]: the binomial
    expansion, one batched matmul over the powers of a."""
    b = a.shape[1]
    moments = torch.bmm(torch.cat([a**k for k in range(1, power + 1)], 1), w)  # [T, power * B, cols]
    out = (-s) ** power * w.sum(-2, keepdim=True)
    for k in range(1, power + 1):
        out = out + math.comb(power, k) * (-s) ** (power - k) * moments[:, (k - 1) * b:k * b]
    return out


def draw_drift_nu(shape: torch.Size | tuple[int, ...], nu_mean: float | torch.Tensor, nu_std: float,
                  generator: torch.Generator, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-device drift exponents nu ~ N(nu_mean, nu_std), clamped at 0 (drift never raises G); nu_mean a
    number or a per-device tensor of `shape` (``dnn.device.drift_nu_mean_map``). Drawn once per programming."""
    eps = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    return (nu_mean + nu_std * eps).clamp_min(0.0)


def apply_drift(g_s: torch.Tensor, nu: torch.Tensor, t_s: float, t0_s: float) -> torch.Tensor:
    """Power-law drift G(t) = G0 * (t / t0)^(-nu), t >= t0 (seconds); t = 0 means no drift."""
    if t_s <= 0.0:
        return g_s
    if t_s < t0_s:
        raise ValueError(f"drift time t_s={t_s} s must be >= t0_s={t0_s} s (or 0 for no drift)")
    return g_s * torch.pow(t_s / t0_s, -nu)


def clip_conductance(g_s: torch.Tensor, g_off_s: float, g_on_s: float) -> torch.Tensor:
    """Clip to the programmable range [g_min, g_max] (siemens)."""
    return g_s.clamp(g_off_s, g_on_s)
