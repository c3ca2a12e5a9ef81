"""The device model between the target conductances and the array (pure functions).

Order of one programming of a layer (``dnn.layers``): target g -> finite conductance levels (the target
snapped to the nearest of N levels) -> programming noise (optional program-and-verify) -> stuck-ON /
stuck-OFF faults -> device-to-device spread of the reachable range ->
drift at t with nu(g) -> per read: read noise sigma(g) -> the tile model. Every function here takes its
randomness from a `torch.Generator` the caller seeds from the config; draws are made on CPU (normals in
float32, uniforms in float64) and the arithmetic runs on CPU in the conductances' own floating dtype
(float32 in the DNN layers, float64 where a caller passes float64), so a programming is the same on every
device.

Units: conductances in siemens; "relative" coefficients are in units of g_on (the tile's highest
programmable conductance), so a preset quoted in microsiemens for g_max = 25 uS divides by 25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

RANGE_FACTOR_MIN = 0.05
"""A device's range factor (1 + g_range_spread N(0, 1)) is kept above this: no device reaches a
negative or vanishing range."""

PROG_CLIPS = ("range", "nonnegative")
"""Where a programmed conductance is clipped: 'range' = the tile's [g_off, g_on]; 'nonnegative' = only
g >= 0, as aihwkit's PCMLikeNoiseModel (``g_prog.clamp_(min=0.0)``)."""

NU_LAWS = ("linear", "aihwkit_pcm")
"""Drift-exponent laws: 'linear' = N(drift_nu_mean + drift_nu_slope g / g_on, drift_nu_std) clamped at 0;
'aihwkit_pcm' = aihwkit's clamped log law (:func:`aihwkit_pcm_nu`)."""

# aihwkit 1.1.0, src/aihwkit/inference/noise/pcm.py, PCMLikeNoiseModel.generate_drift_coefficients
# (x = g_target / g_max, clamped at >= 1e-7):
#   mu_drift  = clamp(-0.0155 ln x + 0.0244, 0.049, 0.1)
#   sig_drift = clamp(-0.0125 ln x - 0.0059, 0.008, 0.045)
#   nu = |mu_drift + sig_drift N(0, 1)|
AIHWKIT_NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)
"""(slope over ln x, intercept, lower clamp, upper clamp) of aihwkit's mean drift exponent."""
AIHWKIT_NU_STD = (-0.0125, -0.0059, 0.008, 0.045)
"""(slope over ln x, intercept, lower clamp, upper clamp) of aihwkit's drift-exponent spread."""
AIHWKIT_X_MIN = 1e-7
"""aihwkit's floor of g / g_max in the drift law (``_ZERO_CLIP``)."""
# Same file, apply_drift_noise_to_conductance: accumulated 1/f read noise at t (t = t_inference + t_0),
#   q_s = clamp(0.0088 / clamp((g_prog / g_max)^0.65, min=1e-3), max=0.2)
#   sigma = q_s sqrt(ln((t + t_read) / (2 t_read))), t_read = 250 ns
AIHWKIT_READ_Q = 0.0088
"""aihwkit's 1/f read-noise amplitude at g = g_max (relative)."""
AIHWKIT_READ_EXPONENT = -0.65
"""aihwkit's exponent of the relative read-noise std over g / g_max."""
AIHWKIT_T_READ_S = 250e-9
"""aihwkit's t_read of the 1/f fit, seconds."""


@dataclass(frozen=True)
class DeviceStats:
    """What one programming of a layer did to its devices (counts)."""

    cells: int
    """Devices of the layer (every tile, slice and polarity array)."""
    stuck_on: int
    """Devices stuck at their ON conductance."""
    stuck_off: int
    """Devices stuck at their OFF conductance."""
    tiles_all_stuck: int
    """Tiles whose every device is stuck (such a tile stores nothing of the weights)."""
    verify_redraws: int = 0
    """Program-and-verify re-draws made (devices x iterations)."""
    tiles: int = 0
    """Tiles of the layer (slices, polarity arrays and row/column tiles)."""

    @property
    def working_cells(self) -> int:
        """Devices that are not stuck."""
        return self.cells - self.stuck_on - self.stuck_off

    def to_dict(self) -> dict[str, int]:
        """The counts (JSON), with ``working_cells``."""
        return {"cells": self.cells, "stuck_on": self.stuck_on, "stuck_off": self.stuck_off,
                "tiles": self.tiles, "tiles_all_stuck": self.tiles_all_stuck,
                "verify_redraws": self.verify_redraws, "working_cells": self.working_cells}


def snap_to_levels(g_s: torch.Tensor, g_off_s: float, g_on_s: float, n_levels: int) -> torch.Tensor:
    """Each conductance snapped to the nearest of `n_levels` evenly spaced levels in [g_off, g_on]
    (siemens; values outside the range go to its ends). n_levels 0 = continuous (returned as is)."""
    if n_levels == 0:
        return g_s
    step = (g_on_s - g_off_s) / (n_levels - 1)
    k = torch.round((g_s - g_off_s) / step).clamp(0, n_levels - 1)
    return g_off_s + k * step


def standard_normal(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype = torch.float64
                    ) -> torch.Tensor:
    """N(0, 1) draws of `shape` on CPU as `dtype` (drawn in float32: torch's vectorized float32 sampler is about
    ten times faster than its float64 one, and 24 bits are far finer than any device's noise)."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(dtype)


def select(mask: torch.Tensor, a: torch.Tensor | float, b: torch.Tensor) -> torch.Tensor:
    """torch.where(mask, a, b) for a floating b, exact (lerp with weights 0 and 1 returns its ends exactly) and
    several times faster than torch.where on CPU."""
    a_t = a if isinstance(a, torch.Tensor) else torch.full_like(b, a)
    return torch.lerp(b, a_t, mask.to(b.dtype))


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype the device model computes in for conductances `t`: float32 or float64 as given, else float64."""
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float64


def prog_noise_sigma_s(g_s: torch.Tensor, g_on_s: float, c0_rel: float, c1_rel: float, c2_rel: float
                       ) -> torch.Tensor:
    """Programming-noise std (siemens) sigma_prog(g) = g_on (c0 + c1 x + c2 x^2), x = g / g_on, kept >= 0
    (the quadratic of aihwkit's PCMLikeNoiseModel, coefficients relative to g_on)."""
    x = g_s / g_on_s
    return (x * c2_rel).add_(c1_rel).mul_(x).add_(c0_rel).mul_(g_on_s).clamp_min_(0.0)  # Horner, in place


def program_conductances(g_target_s: torch.Tensor, g_off_s: float, g_on_s: float,
                         coeffs_rel: tuple[float, float, float], generator: torch.Generator,
                         verify_iterations: int = 0, verify_tolerance: float = 0.0, clip: str = "range"
                         ) -> tuple[torch.Tensor, int]:
    """Programmed conductances g + sigma_prog(g) N(0, 1), clipped to [g_off, g_on] (`clip` 'range') or at
    0 ('nonnegative', aihwkit's clip) (siemens), and the number of re-draws. Program-and-verify: up to `verify_iterations` times, every device whose
    |g - target| exceeds ``verify_tolerance (g_on - g_off)`` is programmed again (a fresh draw).
    Draws come from `generator` (CPU); computed on CPU in ``work_dtype``; the result has g_target_s's dtype and
    device."""
    dtype = work_dtype(g_target_s)
    target = g_target_s.detach().to(device="cpu", dtype=dtype)
    sigma = prog_noise_sigma_s(target, g_on_s, *coeffs_rel)

    lo, hi = (g_off_s, g_on_s) if clip == "range" else (0.0, None)

    g = torch.addcmul(target, sigma, standard_normal(tuple(target.shape), generator, dtype)).clamp_(lo, hi)
    redraws = 0
    limit = verify_tolerance * (g_on_s - g_off_s)
    for _ in range(verify_iterations):  # a fresh draw for the devices out of tolerance (whole-array ops: faster
        bad = (g - target).abs_() > limit  # on CPU than gathering the out-of-tolerance devices)
        n_bad = int(bad.sum())
        if n_bad == 0:
            break
        redraws += n_bad
        new = torch.addcmul(target, sigma, standard_normal(tuple(target.shape), generator, dtype)).clamp_(lo, hi)
        g = select(bad, new, g)
    return g.to(device=g_target_s.device, dtype=g_target_s.dtype), redraws


def draw_faults(shape: tuple[int, ...], p_stuck_on: float, p_stuck_off: float, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (stuck_on, stuck_off) of `shape`, exclusive: one uniform draw u per device,
    stuck-ON when u < p_on, stuck-OFF when p_on <= u < p_on + p_off (CPU)."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    stuck_on = u < p_stuck_on
    stuck_off = (u >= p_stuck_on) & (u < p_stuck_on + p_stuck_off)
    return stuck_on, stuck_off


def draw_range_factors(shape: tuple[int, ...], spread: float, generator: torch.Generator,
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-device factors f = max(1 + spread N(0, 1), RANGE_FACTOR_MIN) of the reachable range
    [f g_off, f g_on] (CPU, `dtype`)."""
    return standard_normal(shape, generator, dtype).mul_(spread).add_(1.0).clamp_min_(RANGE_FACTOR_MIN)


def apply_faults_and_range(g_s: torch.Tensor, g_off_s: float, g_on_s: float, stuck_on: torch.Tensor,
                           stuck_off: torch.Tensor, range_factor: torch.Tensor | None = None) -> torch.Tensor:
    """Each device's conductance within its own range [f g_off, f g_on] (f = 1 without `range_factor`):
    stuck-ON devices at f g_on, stuck-OFF at f g_off, the others clipped to the range (siemens)."""
    dev, dtype = g_s.device, g_s.dtype
    g = g_s.detach().to(device="cpu", dtype=work_dtype(g_s))
    if range_factor is None:
        g = select(stuck_on, g_on_s, select(stuck_off, g_off_s, g))
    else:
        f = range_factor.to(g.dtype)
        lo, hi = f * g_off_s, f * g_on_s
        g = select(stuck_on, hi, select(stuck_off, lo, torch.clamp(g, lo, hi)))
    return g.to(device=dev, dtype=dtype)


def tiles_all_stuck(stuck_on: torch.Tensor, stuck_off: torch.Tensor) -> int:
    """Number of tiles (first axis of [T, rows, cols] masks) whose every device is stuck."""
    stuck = (stuck_on | stuck_off).reshape(stuck_on.shape[0], -1)
    return int(stuck.all(dim=1).sum())


def drift_nu_mean_map(g_rel: torch.Tensor, nu_mean: float, nu_slope: float) -> torch.Tensor:
    """Mean drift exponent per device, nu_mean + nu_slope g / g_on (g_rel = g / g_on, dimensionless)."""
    return nu_mean + nu_slope * g_rel


def read_noise_scale(g_s: torch.Tensor, g_on_s: float, exponent: float) -> torch.Tensor:
    """Per-device factor of the relative read-noise sigma, (g / g_on)^exponent (dimensionless): the std of
    a read is read_noise_sigma g (g / g_on)^exponent; exponent 0 is plain relative noise."""
    return (g_s.detach() / g_on_s).clamp_min(1e-12).pow(exponent)


def aihwkit_pcm_nu(g_target_rel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Drift exponents by aihwkit's clamped log law (``AIHWKIT_NU_MEAN``, ``AIHWKIT_NU_STD``), one per
    device, g_target_rel = g_target / g_on: nu = |mu(x) + sig(x) N(0, 1)| (CPU, in ``work_dtype``)."""
    x = g_target_rel.detach().to("cpu", work_dtype(g_target_rel)).abs().clamp_min(AIHWKIT_X_MIN)
    ln_x = torch.log(x)
    a, b, lo, hi = AIHWKIT_NU_MEAN
    mu = (ln_x * a).add_(b).clamp_(lo, hi)
    a, b, lo, hi = AIHWKIT_NU_STD
    sig = (ln_x * a).add_(b).clamp_(lo, hi)
    return torch.addcmul(mu, sig, standard_normal(tuple(x.shape), generator, x.dtype)).abs_()


def aihwkit_read_noise_sigma(t_s: float, t_read_s: float = AIHWKIT_T_READ_S) -> float:
    """Relative read-noise std at g = g_on that aihwkit's PCMLikeNoiseModel accumulates by time t
    (seconds since programming, t = t_inference + t_0): 0.0088 sqrt(ln((t + t_read) / (2 t_read)));
    with ``read_noise_g_exponent`` = -0.65 it scales as (g / g_on)^-0.65 (dimensionless)."""
    return AIHWKIT_READ_Q * math.sqrt(math.log((t_s + t_read_s) / (2.0 * t_read_s)))
