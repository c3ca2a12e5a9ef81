"""Pure mapping functions: quantization, bit slicing, tiling, im2col, DAC/ADC and their gradients."""

import pytest
import torch
import torch.nn.functional as F

from dnn.mapping import (
    adc_full_scale,
    adc_quantize,
    dac_levels,
    dac_quantize,
    encode_levels,
    levels_to_conductance,
    quantize_weights,
    round_ste,
    shift_add,
    slice_levels,
    tile_inputs,
    tile_matrix,
    unfold_conv_input,
    untile_outputs,
    weight_offset,
)


def test_quantize_weights_levels_and_error_bound():
    w = torch.randn(37, 11, generator=torch.Generator().manual_seed(0))
    q, s_w = quantize_weights(w, 8)
    assert torch.equal(q, q.round())
    assert q.abs().max() == 127
    assert torch.isclose(s_w, w.abs().max() / 127)
    assert (q * s_w - w).abs().max() <= s_w / 2 + 1e-7


@pytest.mark.parametrize("bits_per_cell,n_slices", [(4, 2), (2, 4), (3, 3), (1, 8)])
def test_bit_slicing_recombines_exactly(bits_per_cell, n_slices):
    u = torch.arange(0, 2 ** (bits_per_cell * n_slices), dtype=torch.float32)
    d = slice_levels(u, n_slices, bits_per_cell)
    assert d.shape == (n_slices, *u.shape)
    assert d.min() >= 0 and d.max() <= 2**bits_per_cell - 1
    assert torch.equal(d, d.round())
    assert torch.equal(shift_add(d, bits_per_cell), u)


def test_slicing_gradient_is_straight_through():
    u = torch.tensor([0.0, 7.0, 200.0, 255.0], requires_grad=True)
    shift_add(slice_levels(u, 2, 4), 4).sum().backward()
    assert torch.allclose(u.grad, torch.ones(4))


@pytest.mark.parametrize("encoding", ["differential", "offset"])
def test_encode_levels_reconstructs_integer_weights(encoding):
    q = torch.arange(-127, 128, dtype=torch.float32).reshape(-1, 5)
    lv = encode_levels(q, 8, 4, encoding)
    assert lv.shape[:2] == ((2, 2) if encoding == "differential" else (2, 1))
    assert lv.min() >= 0 and lv.max() <= 15
    u = shift_add(lv, 4)  # [P, ...]
    rec = u[0] - u[1] if encoding == "differential" else u[0] - weight_offset(8)
    assert torch.equal(rec, q)


def test_levels_to_conductance_range():
    g = levels_to_conductance(torch.tensor([0.0, 15.0, 5.0]), 4, 5e-6, 50e-6)
    assert torch.allclose(g, torch.tensor([5e-6, 50e-6, 5e-6 + 5 * 3e-6]))


def test_tiling_with_padding_is_exact():
    m = torch.randn(70, 45, generator=torch.Generator().manual_seed(1))
    t = tile_matrix(m, 32, 16)  # 3 x 3 tiles
    assert t.shape == (3, 3, 32, 16)
    assert torch.equal(t[1, 2, :, :13], m[32:64, 32:45])
    assert torch.all(t[2, :, 6:, :] == 0) and torch.all(t[:, 2, :, 13:] == 0)
    # a tiled matmul (per tile products, summed over row tiles) equals the plain matmul
    x = torch.randn(9, 70, dtype=torch.float64)
    xt = tile_inputs(x, 32)  # [3, 9, 32]
    assert xt.shape == (3, 9, 32)
    partial = torch.einsum("rbk,rckn->rcbn", xt, t.double())
    assert torch.allclose(untile_outputs(partial, 45), x @ m.double(), atol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (1, 2, 2), (2, 1, 1)])
def test_unfold_matches_torch_unfold(stride, padding, dilation):
    x = torch.randn(2, 3, 9, 8)
    ours = unfold_conv_input(x, (3, 3), (stride, stride), (padding, padding), (dilation, dilation))
    ref = F.unfold(x, 3, dilation=dilation, padding=padding, stride=stride)
    assert torch.equal(ours, ref.transpose(1, 2).reshape(-1, ref.shape[1]))


def test_dac_quantization_bounds_and_gradient():
    x = torch.randn(4, 6, 64, requires_grad=True)
    v, x_per_volt = dac_quantize(x, 8, 0.2)
    assert v.abs().max() <= 0.2 + 1e-7
    a = x.detach().abs().amax(-1, keepdim=True)
    assert torch.all((v * x_per_volt - x).abs() <= a / (2 * 127) + 1e-6)
    assert torch.allclose(v.abs().amax(-1), torch.full((4, 6), 0.2))  # full DAC range used per vector
    (v * x_per_volt).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # STE


def test_signed_values_and_zero_vectors_in_dac():
    x = torch.zeros(1, 2, 8)
    x[0, 1, 3] = -2.0
    v, s = dac_quantize(x, 8, 0.5)
    assert torch.all(v[0, 0] == 0) and v[0, 1, 3] == -0.5
    assert torch.allclose(v * s, x)


def test_adc_quantization_levels_saturation_and_ste():
    fs = adc_full_scale(64, 0.2, 5e-6, 50e-6)
    assert fs == pytest.approx(64 * 0.2 * 45e-6)
    i = torch.linspace(-1.5 * fs, 1.5 * fs, 1001, requires_grad=True)
    iq = adc_quantize(i, 4, fs)
    assert iq.abs().max() <= fs * (1 + 1e-6)
    assert len(torch.unique(iq.detach())) == 2 * 7 + 1
    inside = i.detach().abs() < fs
    assert torch.all((iq - i).abs()[inside] <= fs / 7 / 2 + 1e-12)
    iq.sum().backward()
    assert torch.all(i.grad[inside] == 1) and torch.all(i.grad[~inside] == 0)
    assert adc_quantize(i, 0, fs) is i


def test_round_ste():
    x = torch.tensor([0.4, 1.6], requires_grad=True)
    y = round_ste(x)
    assert torch.equal(y.detach(), torch.tensor([0.0, 2.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(2))


def test_adc_inference_path_equals_training_path():
    fs = adc_full_scale(32, 0.2, 5e-6, 50e-6, 0.5)
    i = torch.randn(1000, dtype=torch.float64) * fs
    i_before = i.clone()
    with torch.no_grad():
        fast = adc_quantize(i, 6, fs)
    slow = adc_quantize(i.clone().requires_grad_(), 6, fs)
    assert torch.allclose(fast, slow.detach(), rtol=0, atol=fs * 1e-12)
    assert not torch.equal(fast, i)
    assert torch.equal(i, i_before)  # the input itself is not modified in place


@pytest.mark.parametrize("grad", [False, True])
def test_adc_rounds_to_the_nearest_level(grad):
    """Hand-computed: 4 bits = 7 levels per polarity, full scale 7 A -> a step of exactly 1 A."""
    i = torch.tensor([0.4, 0.6, -1.4, -1.6, 3.49, 6.6, 9.0, -20.0], dtype=torch.float64, requires_grad=grad)
    iq = adc_quantize(i, 4, 7.0)
    assert torch.equal(iq.detach(), torch.tensor([0.0, 1.0, -1.0, -2.0, 3.0, 7.0, 7.0, -7.0], dtype=torch.float64))
    assert iq.requires_grad == grad


@pytest.mark.parametrize("bits,n", [(2, 1), (3, 3), (4, 7), (8, 127)])
def test_dac_output_lies_on_its_grid_and_uses_every_level(bits, n):
    assert dac_levels(bits) == n  # what a crossbar layer tells a tile model of its voltages
    x = torch.linspace(-1.0, 1.0, 2001).reshape(1, -1)
    v, x_per_volt = dac_quantize(x, bits, 0.3)
    grid = 0.3 * torch.arange(-n, n + 1, dtype=torch.float32) / n  # the DAC's 2n+1 voltages
    nearest = (v.reshape(-1, 1) - grid).abs().min(1).values
    assert nearest.max() <= 1e-6  # every voltage is a grid level ...
    assert len(torch.unique(torch.round(v / 0.3 * n))) == 2 * n + 1  # ... and all levels occur
    assert torch.allclose(x_per_volt, torch.tensor([[1.0 / 0.3]]))
    # nearest level: |x - v * x_per_volt| <= half a step
    assert (v * x_per_volt - x).abs().max() <= 1.0 / n / 2 + 1e-6


def test_dac_with_zero_bits_does_not_quantize():
    assert dac_levels(0) == 0
    x = torch.tensor([[0.123, -0.777, 1.0, 0.0]], dtype=torch.float64)
    v, s = dac_quantize(x, 0, 0.2)
    assert torch.allclose(v, x / 1.0 * 0.2, rtol=1e-15) and torch.allclose(v * s, x, rtol=1e-15)


def test_differential_slices_cover_every_magnitude_bit():
    """6-bit weights (|q| <= 31, 5 magnitude bits) on 4-bit cells need two slices per polarity."""
    q = torch.arange(-31, 32, dtype=torch.float64)
    lv = encode_levels(q, 6, 4, "differential")
    assert lv.shape == (2, 2, 63)
    u = shift_add(lv, 4)
    assert torch.equal(u[0] - u[1], q)
    with pytest.raises(ValueError, match="encoding 'ternary': expected 'differential' or 'offset'"):
        encode_levels(q, 6, 4, "ternary")


def test_shift_add_keeps_the_input_dtype_along_any_dim():
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)  # slices along dim 1
    out = shift_add(z, 4, dim=1)
    assert out.dtype == torch.float64 and torch.equal(out, torch.tensor([1.0 + 16 * 2, 3.0 + 16 * 4],
                                                                        dtype=torch.float64))


def test_tile_matrix_keeps_leading_dimensions():
    """[..., in, out] with a leading dimension (e.g. slices x polarity) tiles each matrix the same."""
    m = torch.randn(3, 2, 20, 9, generator=torch.Generator().manual_seed(4))
    t = tile_matrix(m, 8, 4)
    assert t.shape == (3, 2, 3, 3, 8, 4)
    for a in range(3):
        for b in range(2):
            assert torch.equal(t[a, b], tile_matrix(m[a, b], 8, 4))
    assert torch.equal(t[1, 0, 2, 1, :4, :], m[1, 0, 16:20, 4:8])
