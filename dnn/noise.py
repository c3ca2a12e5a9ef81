"""Device non-idealities applied to conductances before the tile MVM: read noise, drift, clipping.

Seeding: every draw comes from a `torch.Generator` seeded with `derive_seed(CrossbarConfig.seed, layer
name, ...)`, so a run is reproducible and layers draw independent streams (read noise: one stream per
layer and device; drift exponents: one draw per layer and programming, made on CPU).
"""

from __future__ import annotations

import zlib

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


def apply_read_noise(g_s: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Relative Gaussian read noise g * (1 + sigma * N(0, 1)), a new draw per call (siemens)."""
    if sigma <= 0.0:
        return g_s
    eps = torch.randn(g_s.shape, generator=generator, device=g_s.device, dtype=g_s.dtype)
    return g_s * (1.0 + sigma * eps)


def per_read_noise_currents(v_v: torch.Tensor, t_sq: torch.Tensor, sigma: float,
                            generator: torch.Generator) -> torch.Tensor:
    """Column-current read noise with a new draw for every read (amperes): v_v [T, B, rows] volts,
    t_sq [T, rows, cols] squared effective transfer matrix (A/V)^2. Each cell's contribution v_i T_ij
    gets its own relative error sigma * N(0, 1), so column j's noise is N(0, sigma^2 sum_i (v_i T_ij)^2)."""
    std = sigma * torch.bmm(v_v * v_v, t_sq).sqrt()
    return std * torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)


def draw_drift_nu(shape: torch.Size | tuple[int, ...], nu_mean: float, nu_std: float,
                  generator: torch.Generator, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-device drift exponents nu ~ N(nu_mean, nu_std), clamped at 0 (drift never raises G).
    Drawn once per programming."""
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
