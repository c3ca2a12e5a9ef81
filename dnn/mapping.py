"""Pure tensor functions that map a weight matrix and its inputs onto crossbar tiles and back.

Conventions (all documented choices of this package):
- Weights: symmetric per-layer quantization, q = round(W / s_w), s_w = max|W| / (2^(b-1) - 1).
- Differential encoding: q+ = max(q, 0) on the G+ array, q- = max(-q, 0) on the G- array; the pair's
  currents are subtracted in the analog domain (before the ADC), so g_min cancels.
- Offset encoding: one device per weight, level u = q + (2^(b-1) - 1) >= 0; each tile spends its last
  column on a reference column at g_min whose current is subtracted in the analog domain; the integer
  offset times sum(v) is removed digitally after shift-add (the DAC codes are known digitally).
- Bit slicing: u = sum_s 2^(bits_per_cell * s) * d_s, d_s in [0, 2^bits_per_cell - 1]; slice s is a
  separate set of tiles; outputs are recombined by shift-add after the ADC.
- Device level d -> conductance g = g_min + d * (g_max - g_min) / (2^bits_per_cell - 1).
- Signed inputs: signed DAC (bipolar row voltages) by default; `two_phase` is handled in the layer.
- Every rounding uses a straight-through estimator (STE) so gradients reach BN and weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) in the forward pass, identity gradient in the backward pass."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return torch.round(x)
    return x + (torch.round(x) - x).detach()


def quantize_weights(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-layer quantization. Returns (q, s_w): integer-valued q in [-(2^(b-1)-1), 2^(b-1)-1]
    (STE gradient) and the scale s_w (weight units per level, detached), so W ~ q * s_w."""
    n = 2 ** (bits - 1) - 1
    s_w = (w.detach().abs().amax() / n).clamp_min(torch.finfo(w.dtype).tiny)
    q = torch.clamp(round_ste(w / s_w), -n, n)
    return q, s_w


def slice_levels(u: torch.Tensor, n_slices: int, bits_per_cell: int) -> torch.Tensor:
    """Split non-negative integer-valued `u` into `n_slices` digits of `bits_per_cell` bits.

    Returns [n_slices, *u.shape], least significant slice first. Gradient (STE): the gradient of u is
    shared equally by the slices so that `shift_add(slice_levels(u))` has gradient exactly 1.
    """
    base = 2**bits_per_cell
    u_det = u.detach()
    weights = [float(base**s) for s in range(n_slices)]
    digits = [torch.remainder(torch.floor(u_det / w), base) for w in weights]
    grad = u - u_det  # zero in value, carries the gradient
    return torch.stack([d + grad / (n_slices * w) for d, w in zip(digits, weights, strict=True)])


def shift_add(z: torch.Tensor, bits_per_cell: int, dim: int = 0) -> torch.Tensor:
    """Recombine slices along `dim` (least significant first): sum_s 2^(bits_per_cell * s) * z_s."""
    n = z.shape[dim]
    w = torch.tensor([float(2 ** (bits_per_cell * s)) for s in range(n)], dtype=z.dtype, device=z.device)
    return torch.tensordot(w, z.movedim(dim, 0), dims=1)


def weight_offset(weight_bits: int) -> int:
    """Integer offset of the offset encoding: u = q + offset >= 0."""
    return 2 ** (weight_bits - 1) - 1


def encode_levels(q: torch.Tensor, weight_bits: int, bits_per_cell: int, encoding: str) -> torch.Tensor:
    """Integer weights q [..] -> device levels [S, P, ..]: P = 2 (G+, G-) for 'differential',
    P = 1 for 'offset'."""
    if encoding == "differential":
        n_slices = math.ceil((weight_bits - 1) / bits_per_cell)
        parts = [torch.relu(q), torch.relu(-q)]
    elif encoding == "offset":
        n_slices = math.ceil(weight_bits / bits_per_cell)
        parts = [q + weight_offset(weight_bits)]
    else:
        raise ValueError(f"encoding {encoding!r}: expected 'differential' or 'offset'")
    return torch.stack([slice_levels(p, n_slices, bits_per_cell) for p in parts], dim=1)


def levels_to_conductance(levels: torch.Tensor, bits_per_cell: int, g_off_s: float, g_on_s: float
                          ) -> torch.Tensor:
    """Device level d in [0, 2^b - 1] -> conductance g_min + d * (g_max - g_min) / (2^b - 1), siemens."""
    return g_off_s + levels * ((g_on_s - g_off_s) / (2**bits_per_cell - 1))


def tile_grid(in_features: int, out_features: int, rows: int, cols: int) -> tuple[int, int]:
    """Number of (row, column) tiles needed for an [in_features, out_features] matrix."""
    return math.ceil(in_features / rows), math.ceil(out_features / cols)


def tile_matrix(m: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[..., in, out] -> [..., n_r, n_c, rows, cols] tiles, zero padded at the bottom/right."""
    n_in, n_out = m.shape[-2:]
    n_r, n_c = tile_grid(n_in, n_out, rows, cols)
    m = F.pad(m, (0, n_c * cols - n_out, 0, n_r * rows - n_in))
    lead = m.shape[:-2]
    m = m.reshape(*lead, n_r, rows, n_c, cols)
    return m.transpose(-3, -2)


def tile_inputs(x: torch.Tensor, rows: int) -> torch.Tensor:
    """[B, in] -> [n_r, B, rows] row-tile slices of the input, zero padded."""
    n_in = x.shape[-1]
    n_r = math.ceil(n_in / rows)
    x = F.pad(x, (0, n_r * rows - n_in))
    return x.reshape(x.shape[0], n_r, rows).transpose(0, 1)


def untile_outputs(y: torch.Tensor, out_features: int) -> torch.Tensor:
    """[n_r, n_c, B, cols] partial sums -> [B, out_features]: sum over row tiles, concatenate columns."""
    y = y.sum(0)  # [n_c, B, cols]
    n_c, b, cols = y.shape
    return y.transpose(0, 1).reshape(b, n_c * cols)[:, :out_features]


def unfold_conv_input(x: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int],
                      padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """im2col: [N, C, H, W] -> [N * L, C * kh * kw] patches (L = output positions, row-major), columns
    ordered channel-major like `conv.weight.reshape(out, -1)`; equal to `F.unfold(...).transpose(1, 2)`.

    Built from one strided view of the zero-padded NHWC input and a single copy: torch's `F.unfold`
    is ~15x slower on CPU for these shapes (measured on 2 cores).
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1).contiguous()  # [N, H', W', C]
    s_n, s_h, s_w, s_c = xp.stride()
    view = xp.as_strided((n, h_out, w_out, c, kh, kw), (s_n, sh * s_h, sw * s_w, s_c, dh * s_h, dw * s_w))
    return view.reshape(n * h_out * w_out, c * kh * kw)


def dac_levels(bits: int) -> int:
    """Levels of a signed `bits`-bit DAC per polarity, 2^(bits-1) - 1 (0: no quantization): row voltages are
    integer multiples of v_read_max_v / dac_levels(bits)."""
    return 2 ** (bits - 1) - 1 if bits > 0 else 0


def dac_quantize(x: torch.Tensor, bits: int, v_read_max_v: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed DAC with per-vector abs-max scaling along the last dim (aihwkit-style noise management).

    Returns (v, x_per_volt): row voltages v in [-v_max, v_max] (volts, `bits` signed levels, STE
    rounding; bits = 0 means no quantization) and the detached scale so that x ~ v * x_per_volt.
    """
    a = x.detach().abs().amax(-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    xn = x / a  # in [-1, 1]
    n = dac_levels(bits)
    if n > 0:
        xn = round_ste(xn * n) / n
    return xn * v_read_max_v, a / v_read_max_v


def adc_quantize(i: torch.Tensor, bits: int, full_scale_a: float) -> torch.Tensor:
    """Signed ADC: clamp to [-full_scale, full_scale] amperes and round to 2^(bits-1)-1 levels per
    polarity (STE rounding; saturated values get zero gradient). bits = 0 returns `i` unchanged."""
    if bits <= 0:
        return i
    n = 2 ** (bits - 1) - 1
    step = full_scale_a / n
    if not (torch.is_grad_enabled() and i.requires_grad):  # inference: one buffer, in-place passes
        return torch.mul(i, 1.0 / step).clamp_(-n, n).round_().mul_(step)
    return round_ste(torch.clamp(i / step, -n, n)) * step


def adc_full_scale(rows: int, v_read_max_v: float, g_off_s: float, g_on_s: float, fraction: float = 1.0
                   ) -> float:
    """Fixed ADC full scale, amperes: the largest ideal signed column current of one tile,
    rows * v_max * (g_max - g_min), times `fraction`."""
    return fraction * rows * v_read_max_v * (g_on_s - g_off_s)
