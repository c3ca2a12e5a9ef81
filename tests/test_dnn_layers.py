"""Crossbar layers against float layers, caching, read noise, drift, tile models, devices."""

import copy
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dnn.layers as layers_mod
from dnn.config import CrossbarConfig
from dnn.layers import CrossbarConv2d, CrossbarLinear
from dnn.mapping import quantize_weights
from dnn.mvm import IdealTileMVM, TileMVM, TransferTileMVM
from tests.conftest import PerTileOnly, TileOfFields

G_MIN, G_MAX, V_MAX = 5e-6, 50e-6, 0.2
EXACT = CrossbarConfig(input_bits=0, adc_bits=0)  # only weight quantization


def ideal(rows=16, cols=8):
    return IdealTileMVM(rows, cols, G_MIN, G_MAX, V_MAX)


@dataclass
class CountingMVM(TileOfFields):
    """Ideal tile model that counts `bind` calls."""

    rows: int = 16
    cols: int = 8
    g_off_s: float = G_MIN
    g_on_s: float = G_MAX
    v_read_max_v: float = V_MAX
    v_read_min_v: float = -V_MAX
    binds: int = 0

    def bind(self, g_s):
        self.binds += 1
        return lambda v: torch.bmm(v, g_s)


def _seeded(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _weight_error_bound(x, w, bits=8):
    """|y - y_float| <= sum_i |x_i| * s_w / 2 for weight quantization alone (per output)."""
    _, s_w = quantize_weights(w, bits)
    return x.abs().sum(-1, keepdim=True) * s_w / 2


@pytest.mark.parametrize("encoding", ["differential", "offset"])
@pytest.mark.parametrize("polarity", ["signed", "two_phase"])
def test_linear_matches_float_within_weight_quantization(encoding, polarity):
    torch.manual_seed(0)
    lin = nn.Linear(50, 21)
    cfg = EXACT.replace(encoding=encoding, input_polarity=polarity)
    xl = CrossbarLinear.from_float(lin, cfg, ideal())
    x = _seeded(7, 50, seed=1)
    with torch.no_grad():
        y, y_float = xl(x), lin(x)
        q, s_w = quantize_weights(lin.weight, 8)
        y_quant = x @ (q * s_w).t() + lin.bias
    scale = y_float.abs().max()
    assert (y - y_quant).abs().max() <= 1e-5 * scale  # the crossbar computes exactly x @ W_q
    bound = _weight_error_bound(x, lin.weight)
    assert torch.all((y - y_float).abs() <= bound + 1e-5 * scale)
    assert (y - y_float).abs().max() > 0  # quantization really happened


def test_linear_with_dac_within_derived_bound():
    torch.manual_seed(0)
    lin = nn.Linear(40, 9, bias=False)
    rows = 16
    xl = CrossbarLinear.from_float(lin, CrossbarConfig(input_bits=8, adc_bits=0), ideal(rows=rows))
    x = _seeded(5, 40, seed=2)
    with torch.no_grad():
        y, y_float = xl(x), lin(x)
        q, s_w = quantize_weights(lin.weight, 8)
        wq = (q * s_w).t()  # [in, out]
        # DAC error: |dx_i| <= a_t / (2 * 127), a_t = max |x| over the row tile holding input i
        xp = F.pad(x, (0, 48 - 40)).reshape(5, 3, rows)
        a = xp.abs().amax(-1, keepdim=True).expand_as(xp).reshape(5, 48)[:, :40]
        bound = _weight_error_bound(x, lin.weight) + (a / 254) @ wq.abs()
    assert torch.all((y - y_float).abs() <= bound * (1 + 1e-4))


def test_integer_weights_are_mapped_exactly():
    """Weights on the quantization grid and integer inputs: every step is exact (slices, tiles, padding)."""
    lin = nn.Linear(37, 10, bias=False)
    levels = torch.randint(-127, 128, (10, 37), generator=torch.Generator().manual_seed(3)).float()
    levels[0, 0] = 127
    with torch.no_grad():
        lin.weight.copy_(levels / 64)
    x = torch.randint(-3, 4, (6, 37), generator=torch.Generator().manual_seed(4)).double()
    for enc in ("differential", "offset"):
        xl = CrossbarLinear.from_float(lin.double(), EXACT.replace(encoding=enc), ideal(rows=8, cols=4))
        with torch.no_grad():
            assert torch.allclose(xl(x), x @ (levels.double() / 64).t(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("encoding", ["differential", "offset"])
def test_conv_matches_float_within_weight_quantization(encoding):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    xc = CrossbarConv2d.from_float(conv, EXACT.replace(encoding=encoding), ideal())
    x = _seeded(2, 3, 9, 9, seed=5)
    with torch.no_grad():
        y, y_float = xc(x), conv(x)
        patches = F.unfold(x, 3, padding=1, stride=2).transpose(1, 2)  # [N, L, in]
        bound = _weight_error_bound(patches, conv.weight.reshape(5, -1)).squeeze(-1)  # [N, L]
    assert y.shape == y_float.shape == (2, 5, 5, 5)
    err = (y - y_float).abs().reshape(2, 5, 25)
    assert torch.all(err <= bound[:, None, :] + 1e-5 * y_float.abs().max())


def test_full_pipeline_close_to_float():
    """Default config (8-bit DAC, 8-bit ADC): close to float but not equal."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    xc = CrossbarConv2d.from_float(conv, CrossbarConfig(adc_range_fraction=0.25), ideal(rows=36, cols=8))
    x = _seeded(2, 4, 6, 6, seed=6)
    with torch.no_grad():
        y, y_float = xc(x), conv(x)
    rel = ((y - y_float).norm() / y_float.norm()).item()
    assert 0 < rel < 0.05


def test_transfer_tile_mvm_applies_transfer_matrix():
    torch.manual_seed(0)
    lin = nn.Linear(20, 6, bias=False)
    mvm = TransferTileMVM(16, 8, G_MIN, G_MAX, V_MAX, transfer_fn=lambda g: 0.8 * g)
    assert isinstance(mvm, TileMVM)
    x = _seeded(4, 20, seed=7)
    with torch.no_grad():
        y_t = CrossbarLinear.from_float(lin, EXACT, mvm)(x)
        y_i = CrossbarLinear.from_float(lin, EXACT, ideal())(x)
    assert torch.allclose(y_t, 0.8 * y_i, rtol=1e-4, atol=1e-6)


def test_transfer_tile_mvm_gradient_and_shape_check():
    mvm = TransferTileMVM(4, 3, G_MIN, G_MAX, V_MAX, transfer_fn=lambda g: 0.5 * g)
    g = torch.full((2, 4, 3), 1e-5, requires_grad=True)
    v = torch.ones(2, 5, 4, requires_grad=True)
    i = mvm.bind(g)(v)
    assert torch.allclose(i, torch.full((2, 5, 3), 0.5 * 4e-5))
    i.sum().backward()
    assert torch.allclose(v.grad, torch.full_like(v, 0.5 * 3e-5))
    assert torch.allclose(g.grad, torch.full_like(g, 5.0))  # straight through as if ideal
    bad = TransferTileMVM(4, 3, G_MIN, G_MAX, V_MAX, transfer_fn=lambda g: g[:, :2])
    with pytest.raises(ValueError, match="transfer_fn returned shape"):
        bad.bind(g)
    with pytest.raises(ValueError, match="expected \\[T, 4, 3\\]"):
        mvm.bind(torch.zeros(4, 3))


def test_ideal_tile_mvm_validation():
    with pytest.raises(ValueError, match="g_off_s"):
        IdealTileMVM(4, 4, 1e-4, 1e-5, 0.2)
    with pytest.raises(ValueError, match="v_read_max_v"):
        IdealTileMVM(4, 4, 1e-6, 1e-5, 0.0)


def test_bind_is_cached_until_weights_change():
    torch.manual_seed(0)
    mvm = CountingMVM()
    xl = CrossbarLinear.from_float(nn.Linear(20, 6), CrossbarConfig(), mvm)
    x = _seeded(3, 20)
    with torch.no_grad():
        y1 = xl(x)
        xl(x)
        assert mvm.binds == 1
        xl.weight.mul_(2.0)  # in-place edit bumps the version counter
        y2 = xl(x)
    assert mvm.binds == 2
    assert not torch.allclose(y1, y2)
    xl.reprogram()
    with torch.no_grad():
        xl(x)
    assert mvm.binds == 3
    xl.weight.requires_grad_(True)  # training weights: no caching, graph rebuilt each forward
    xl(x).sum().backward()
    xl(x).sum().backward()
    assert mvm.binds == 5
    assert xl.weight.grad is not None and xl.weight.grad.abs().sum() > 0


def test_per_forward_read_noise_redraws_every_forward_and_is_seeded():
    torch.manual_seed(0)
    lin = nn.Linear(30, 8)
    cfg = CrossbarConfig(read_noise_sigma=0.1, read_noise_mode="per_forward", seed=3)
    mvm = CountingMVM()
    a = CrossbarLinear.from_float(lin, cfg, mvm, name="fc")
    b = CrossbarLinear.from_float(lin, cfg, ideal(), name="fc")
    x = _seeded(4, 30)
    with torch.no_grad():
        a1, a2 = a(x), a(x)
        b1, b2 = b(x), b(x)
        c1 = CrossbarLinear.from_float(lin, cfg.replace(seed=4), ideal(), name="fc")(x)
        d1 = CrossbarLinear.from_float(lin, cfg, ideal(), name="other")(x)
    assert mvm.binds == 2  # re-bound on every forward
    assert not torch.allclose(a1, a2)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)  # same seed and name: same draws
    assert not torch.allclose(a1, c1) and not torch.allclose(a1, d1)
    # without DAC and ADC the noise is linear in sigma: the same draws at twice the sigma give exactly
    # twice the deviation (the absolute scale: test_read_noise_of_one_weight_matches_the_device_level_...)
    exact = EXACT.replace(read_noise_sigma=0.1, read_noise_mode="per_forward", seed=3, clip_conductances=False)
    with torch.no_grad():
        base = CrossbarLinear.from_float(lin, exact.replace(read_noise_sigma=0.0), ideal(), name="fc")(x)
        once = CrossbarLinear.from_float(lin, exact, ideal(), name="fc")(x)
        double = CrossbarLinear.from_float(lin, exact.replace(read_noise_sigma=0.2), ideal(), name="fc")(x)
    torch.testing.assert_close(double - base, 2 * (once - base), rtol=1e-3, atol=1e-5)
    assert (once - base).abs().max() > 1e-3 * base.abs().max()


@pytest.mark.parametrize("mode", ["per_forward", "per_read"])
def test_read_noise_of_one_weight_matches_the_device_level_calculation(mode):
    """One weight at full scale (q = 127 = 7 * 16 + 15) on 4-bit cells, differential pair, no DAC/ADC:
    slice 0 holds g_max on G+, slice 1 holds g_min + 7 step; every G- device sits at g_min. Each of the
    four devices reads g (1 + sigma N(0, 1)), so the output's relative standard deviation is
    sigma sqrt(sum_s 256^s (g+_s^2 + g-_s^2)) / sum_s 16^s (g+_s - g-_s)  (computed here by hand)."""
    sigma, step = 0.1, (G_MAX - G_MIN) / 15
    g_plus, g_minus = [G_MAX, G_MIN + 7 * step], [G_MIN, G_MIN]
    expected = sigma * math.sqrt(sum(256**s * (g_plus[s] ** 2 + g_minus[s] ** 2) for s in range(2))) / (127 * step)
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.5)
    cfg = EXACT.replace(read_noise_sigma=sigma, read_noise_mode=mode, seed=11, clip_conductances=False)
    layer = CrossbarLinear.from_float(lin, cfg, ideal(), name="one")
    x = torch.ones(1, 1, dtype=torch.float64)
    layer.double()
    with torch.no_grad():
        if mode == "per_forward":
            ys = torch.cat([layer(x) for _ in range(3000)])
        else:
            ys = layer(x.expand(20000, 1))
    assert ys.mean().item() == pytest.approx(0.5, rel=3 * expected / 3000**0.5 + 1e-9)
    assert (ys.std() / 0.5).item() == pytest.approx(expected, rel=0.06)


def _noise_std(layer, x, n):
    """Per-output standard deviation of layer(x) - clean over n forwards of x (one vector)."""
    with torch.no_grad():
        ys = torch.cat([layer(x) for _ in range(n)])
    return ys.std(0)


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_per_read_noise_matches_a_new_conductance_draw_per_vector(scale):
    """per_read over a batch of identical vectors has the distribution of per_forward noise with one
    vector per forward (a new G draw per vector), for the ideal tile and a scaled transfer matrix."""
    torch.manual_seed(0)
    lin = nn.Linear(30, 8)
    tile = ideal() if scale == 1.0 else TransferTileMVM(16, 8, G_MIN, G_MAX, V_MAX, lambda g: scale * g)
    cfg = EXACT.replace(read_noise_sigma=0.2, seed=5)
    x = _seeded(1, 30, seed=2)
    per_read = CrossbarLinear.from_float(lin, cfg.replace(read_noise_mode="per_read"), tile, name="fc")
    per_forward = CrossbarLinear.from_float(lin, cfg.replace(read_noise_mode="per_forward"), ideal(), name="fc")
    clean = CrossbarLinear.from_float(lin, cfg.replace(read_noise_sigma=0.0), tile)
    with torch.no_grad():
        batch = per_read(x.expand(4000, 30))
        y_clean = clean(x)
    assert torch.allclose(batch.mean(0), y_clean[0], atol=4 * batch.std(0).max().item() / 4000**0.5)
    reference = scale * _noise_std(per_forward, x, 1500)  # ideal tile; the transfer one scales every T_ij
    assert torch.allclose(batch.std(0), reference, rtol=0.12)
    assert batch.std(0).min() > 0


def test_per_read_noise_is_independent_per_vector_and_seeded():
    torch.manual_seed(0)
    lin = nn.Linear(30, 8)
    cfg = CrossbarConfig(read_noise_sigma=0.1, read_noise_mode="per_read", seed=3)
    mvm = CountingMVM()
    x = _seeded(1, 30).expand(2, 30)
    with torch.no_grad():
        a = CrossbarLinear.from_float(lin, cfg, mvm, name="fc")
        a1, a2 = a(x), a(x)
        b1 = CrossbarLinear.from_float(lin, cfg, ideal(), name="fc")(x)
    assert mvm.binds == 1  # the clean conductances stay bound; only the read currents are noisy
    assert not torch.allclose(a1[0], a1[1])  # same vector, two reads in one batch: two draws
    assert not torch.allclose(a1, a2)
    assert torch.equal(a1, b1)  # same seed and name: same draws


def test_drift_lowers_conductance_as_power_law():
    lin = nn.Linear(12, 5)
    t, t0, nu = 1e4, 1.0, 0.05
    cfg = EXACT.replace(t_drift_s=t, t0_s=t0, drift_nu_mean=nu, drift_nu_std=0.0, clip_conductances=False)
    xl = CrossbarLinear.from_float(lin, cfg, ideal())
    ref = CrossbarLinear.from_float(lin, EXACT, ideal())
    x = _seeded(3, 12)
    with torch.no_grad():
        factor = (t / t0) ** (-nu)
        g, g0 = xl._program(x.device, x.dtype, ()).g_s, ref._program(x.device, x.dtype, ()).g_s
        assert torch.allclose(g, g0 * factor, rtol=1e-6)
        assert torch.allclose(xl(x) - lin.bias, (ref(x) - lin.bias) * factor, rtol=1e-4, atol=1e-6)
        # device-to-device spread: nu per device, drawn once per programming
        spread = CrossbarLinear.from_float(lin, cfg.replace(drift_nu_std=0.02), ideal())
        g1 = spread._program(x.device, x.dtype, ()).g_s
        log_ratio = torch.log(g1 / g0) / -math.log(t / t0)  # = nu per device
        assert 0.04 < log_ratio.mean() < 0.06 and 0.01 < log_ratio.std() < 0.03
        y1, y2 = spread(x), spread(x)
        assert torch.equal(y1, y2)  # same programming: drift does not change between reads
        spread.reprogram()
        assert not torch.equal(spread(x), y1)  # new programming: new nu draw
        # a programming survives copies and dtype/device moves (BN calibrations stay valid)
        y3 = spread(x)
        assert torch.equal(copy.deepcopy(spread)(x), y3)
        assert torch.allclose(copy.deepcopy(spread).double()(x.double()).float(), y3, rtol=1e-5, atol=1e-6)
    # with clipping (default) drifted conductances stay in range
    clipped = CrossbarLinear.from_float(lin, cfg.replace(clip_conductances=True), ideal())
    g2 = clipped._program(x.device, x.dtype, ()).g_s
    assert g2.min() >= G_MIN and g2.max() <= G_MAX


def test_gradients_reach_inputs_through_all_quantizers():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    cfg = CrossbarConfig(read_noise_sigma=0.05, adc_range_fraction=0.5)
    xc = CrossbarConv2d.from_float(conv, cfg, ideal(rows=18, cols=4))
    x = _seeded(2, 2, 5, 5).requires_grad_()
    xc(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert xc.weight.grad is None  # weights frozen by default


def test_batch_chunking_gives_same_result(monkeypatch):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    xc = CrossbarConv2d.from_float(conv, CrossbarConfig(), ideal())
    x = _seeded(2, 3, 6, 6)
    with torch.no_grad():
        y = xc(x)
        monkeypatch.setattr(layers_mod, "MAX_CHUNK_ELEMENTS", 1000)
        assert torch.allclose(xc(x), y, rtol=1e-6, atol=1e-7)


def test_deepcopy_and_state_dict():
    torch.manual_seed(0)
    xl = CrossbarLinear.from_float(nn.Linear(10, 4), CrossbarConfig(), ideal())
    x = _seeded(2, 10)
    with torch.no_grad():
        y = xl(x)
        assert xl._programmed is not None
        c = copy.deepcopy(xl)
        assert c._programmed is None and c.mvm == xl.mvm
        assert torch.equal(c(x), y)
    assert set(xl.state_dict()) == {"weight", "bias"}
    assert not any(p.requires_grad for p in xl.parameters())


def test_unsupported_conv_and_bad_mvm_rejected():
    with pytest.raises(ValueError, match="groups"):
        CrossbarConv2d.from_float(nn.Conv2d(4, 4, 3, groups=2), CrossbarConfig(), ideal())
    with pytest.raises(TypeError, match="TileMVM"):
        CrossbarLinear.from_float(nn.Linear(3, 2), CrossbarConfig(), object())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    xc = CrossbarConv2d.from_float(conv, CrossbarConfig(), ideal())
    x = _seeded(2, 3, 6, 6)
    with torch.no_grad():
        y_cpu = xc(x)
        y_gpu = xc.cuda()(x.cuda())
    assert y_gpu.device.type == "cuda"
    assert torch.allclose(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-5)
    noisy = CrossbarConv2d.from_float(conv, CrossbarConfig(read_noise_sigma=0.1), ideal()).cuda()
    with torch.no_grad():
        assert not torch.equal(noisy(x.cuda()), noisy(x.cuda()))


@dataclass
class RecordingMVM(TileOfFields):
    """Ideal tile model that records the row voltages it is asked to read; valid for v >= 0 only."""

    rows: int = 16
    cols: int = 8
    g_off_s: float = G_MIN
    g_on_s: float = G_MAX
    v_read_max_v: float = V_MAX
    v_read_min_v: float = 0.0
    seen: list = None

    def bind(self, g_s):
        def f(v):
            self.seen.append(v.detach().clone())
            return torch.bmm(v, g_s)

        return f


def test_two_phase_reads_only_non_negative_voltages():
    torch.manual_seed(0)
    lin = nn.Linear(20, 6)
    mvm = RecordingMVM(seen=[])
    xl = CrossbarLinear.from_float(lin, CrossbarConfig(input_polarity="two_phase", adc_bits=0), mvm)
    x = _seeded(3, 20)
    with torch.no_grad():
        y_signed_input = xl(x)
        xl(x.relu())
    (v_two, v_one) = mvm.seen
    assert v_two.min() >= 0 and v_one.min() >= 0 and v_two.max() <= V_MAX + 1e-9
    assert v_two.shape[1] == 6 and v_one.shape[1] == 3  # negative read skipped after ReLU
    ref = CrossbarLinear.from_float(lin, CrossbarConfig(input_polarity="signed", adc_bits=0), ideal())
    with torch.no_grad():
        assert torch.allclose(ref(x), y_signed_input, rtol=1e-5, atol=1e-6)  # linear tiles: same result
    with pytest.raises(ValueError, match="two_phase"):
        CrossbarLinear.from_float(lin, CrossbarConfig(input_polarity="signed"), RecordingMVM(seen=[]))


def test_calibrated_adc_range_follows_the_arrays_real_currents():
    torch.manual_seed(0)
    lin = nn.Linear(40, 12)
    x = _seeded(64, 40, seed=3)
    loader = [(x[:32], None), (x[32:], None)]
    lossy = TransferTileMVM(16, 8, G_MIN, G_MAX, V_MAX,
                            transfer_fn=lambda g: 0.1 * g)  # an array at 10% of ideal
    cfg = CrossbarConfig(adc_range="calibrated", adc_range_fraction=1.0)
    layer = CrossbarLinear.from_float(lin, cfg, lossy, name="fc")
    with pytest.raises(RuntimeError, match="fc: adc_range 'calibrated' needs dnn.layers.calibrate_adc"):
        layer(x)
    layers_mod.calibrate_adc(layer, loader)
    fixed = layers_mod.adc_full_scale(16, V_MAX, G_MIN, G_MAX, 1.0)
    assert 0 < layer.adc_full_scale_a < 0.1 * fixed  # trimmed to the attenuated signals
    # The calibrated range resolves the small currents far better than the fixed one.
    ref = CrossbarLinear.from_float(lin, cfg.replace(adc_range="fixed", adc_bits=0), lossy)
    coarse = CrossbarLinear.from_float(lin, cfg.replace(adc_range="fixed"), lossy)
    with torch.no_grad():
        exact = ref(x)
        err_cal = (layer(x) - exact).abs().mean()
        err_fixed = (coarse(x) - exact).abs().mean()
    assert err_cal < 0.2 * err_fixed
    assert copy.deepcopy(layer).adc_full_scale_a == layer.adc_full_scale_a  # survives the per-method copies
    # A fixed-range layer is left alone.
    assert layers_mod.calibrate_adc(coarse, loader) is coarse and coarse.adc_full_scale_a is None


# ----------------------------------------------------------------------------- construction and conversion
def _dequantized_conv(conv, x, stride, padding, dilation):
    """Reference: the float convolution with the 8-bit quantized weights (what EXACT maps)."""
    q, s_w = quantize_weights(conv.weight.detach(), 8)
    bias = None if conv.bias is None else conv.bias.detach()
    return F.conv2d(x, q * s_w, bias, stride=stride, padding=padding, dilation=dilation)


@pytest.mark.parametrize("stride,padding,dilation,bias", [
    ((2, 1), (1, 0), (1, 1), True), (1, (0, 2), (2, 1), False), (1, "valid", 1, True), (2, 1, 2, False)])
def test_conv_conversion_keeps_every_geometry_setting(stride, padding, dilation, bias):
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, (3, 2), stride=stride, padding=padding, dilation=dilation, bias=bias)
    xc = CrossbarConv2d.from_float(conv, EXACT, ideal(rows=8, cols=4), name="c")
    x = _seeded(2, 3, 9, 8)
    pad = (0, 0) if padding == "valid" else padding
    with torch.no_grad():
        ref = _dequantized_conv(conv, x, stride, pad, dilation)
        out = xc(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert (xc.bias is None) == (not bias)
    assert xc.stride == ((stride, stride) if isinstance(stride, int) else stride)
    assert xc.padding == ((pad, pad) if isinstance(pad, int) else tuple(pad))


def test_direct_construction_defaults_and_frozen_copies():
    cfg, mvm = EXACT, ideal()
    conv = CrossbarConv2d(2, 3, 3, config=cfg, mvm=mvm)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (2, 3, (3, 3))
    assert (conv.stride, conv.padding, conv.dilation) == ((1, 1), (0, 0), (1, 1))
    assert conv.weight.shape == (3, 2, 3, 3) and conv.bias is not None and conv.bias.shape == (3,)
    assert conv.name == "" and not conv.weight.requires_grad and not conv.bias.requires_grad
    assert conv(_seeded(1, 2, 5, 5)).shape == (1, 3, 3, 3)
    lin = CrossbarLinear(4, 3, config=cfg, mvm=mvm)
    assert lin.bias is not None and lin.name == "" and lin.weight.shape == (3, 4)
    assert CrossbarLinear(4, 3, False, config=cfg, mvm=mvm).bias is None
    src = nn.Linear(4, 3)
    xl = CrossbarLinear.from_float(src, cfg, mvm)
    assert xl.name == ""
    assert isinstance(xl.weight, nn.Parameter) and isinstance(xl.bias, nn.Parameter)
    assert not xl.weight.requires_grad and not xl.bias.requires_grad  # crossbar weights start frozen
    assert torch.equal(xl.weight, src.weight) and torch.equal(xl.bias, src.bias)
    with torch.no_grad():
        src.weight.add_(1.0)
        src.bias.add_(1.0)
    assert not torch.equal(xl.weight, src.weight) and not torch.equal(xl.bias, src.bias)  # copies, not views


def test_conversion_errors_name_the_layer_and_the_fix():
    mvm = ideal()
    with pytest.raises(TypeError, match="^expected nn.Conv2d, got Linear$"):
        CrossbarConv2d.from_float(nn.Linear(2, 2), EXACT, mvm)
    with pytest.raises(TypeError, match="^expected nn.Linear, got Conv2d$"):
        CrossbarLinear.from_float(nn.Conv2d(1, 1, 1), EXACT, mvm)
    with pytest.raises(ValueError, match="^features.3: groups=2 is not supported \\(only 1\\); exclude this layer "
                                         "to keep it digital$"):
        CrossbarConv2d.from_float(nn.Conv2d(2, 2, 3, groups=2), EXACT, mvm, name="features.3")
    with pytest.raises(ValueError, match="^Conv2d: groups=2"):
        CrossbarConv2d.from_float(nn.Conv2d(2, 2, 3, groups=2), EXACT, mvm)
    with pytest.raises(ValueError, match="^Conv2d: padding=\\(1, 1\\), padding_mode='reflect' not supported \\(numeric "
                                         "zero padding only\\)$"):
        CrossbarConv2d.from_float(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), EXACT, mvm)
    with pytest.raises(ValueError, match="^c1: padding='same', padding_mode='zeros' not supported"):
        CrossbarConv2d.from_float(nn.Conv2d(1, 1, 3, padding="same"), EXACT, mvm, name="c1")
    with pytest.raises(TypeError, match="^config must be a CrossbarConfig, got dict$"):
        CrossbarLinear(2, 2, config={}, mvm=mvm)
    with pytest.raises(TypeError, match="mvm must implement dnn.mvm.TileMVM .*got str$"):
        CrossbarLinear(2, 2, config=EXACT, mvm="ideal")


def test_offset_encoding_needs_two_columns_per_tile():
    offset = EXACT.replace(encoding="offset")
    lin = nn.Linear(3, 2)
    CrossbarLinear.from_float(lin, offset, CountingMVM(rows=4, cols=2))  # one weight column + the reference
    CrossbarLinear.from_float(lin, EXACT, CountingMVM(rows=4, cols=1))  # differential: one column is enough
    with pytest.raises(ValueError, match="^offset encoding needs >= 2 columns per tile \\(one is the reference "
                                         "column\\)$"):
        CrossbarLinear.from_float(lin, offset, CountingMVM(rows=4, cols=1))


def test_unipolar_tile_models_refuse_signed_inputs():
    @dataclass
    class Unipolar(CountingMVM):
        v_read_min_v: float = 0.0

    lin = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="^Unipolar covers row voltages \\[0.0, 0.2\\] V only; signed inputs need "
                                         "input_polarity='two_phase'$"):
        CrossbarLinear.from_float(lin, EXACT.replace(input_polarity="signed"), Unipolar())
    CrossbarLinear.from_float(lin, EXACT.replace(input_polarity="two_phase"), Unipolar())


@dataclass
class LastBindMVM(CountingMVM):
    """Ideal tile model that keeps the conductances of its last bind."""

    last_g: torch.Tensor | None = None

    def bind(self, g_s):
        self.last_g = g_s
        return super().bind(g_s)


def test_set_mvm_switches_the_tile_model_and_drops_the_cache():
    torch.manual_seed(0)
    lin = nn.Linear(20, 6)
    first, second = CountingMVM(), CountingMVM()
    xl = CrossbarLinear.from_float(lin, EXACT, first)
    x = _seeded(3, 20)
    y = xl(x)  # outside no_grad: frozen weights still cache
    xl(x)
    assert first.binds == 1
    xl.set_mvm(second)
    torch.testing.assert_close(xl(x), y)
    assert second.binds == 1 and first.binds == 1


def test_noisy_conductances_are_clipped_to_the_programmable_range():
    torch.manual_seed(0)
    lin = nn.Linear(20, 6)
    for clip in (True, False):
        mvm = LastBindMVM()
        cfg = EXACT.replace(read_noise_sigma=0.5, read_noise_mode="per_forward", clip_conductances=clip, seed=2)
        with torch.no_grad():
            CrossbarLinear.from_float(lin, cfg, mvm, name="fc")(_seeded(2, 20))
        g = mvm.last_g
        inside = bool(g.min() >= G_MIN) and bool(g.max() <= G_MAX)
        assert inside == clip
        if clip:  # both bounds are reached by a sigma of 0.5
            assert g.min() == G_MIN and g.max() == G_MAX


def test_retraining_reprograms_every_step_and_inference_caches():
    torch.manual_seed(0)
    lin = nn.Linear(20, 6)
    mvm = CountingMVM()
    xl = CrossbarLinear.from_float(lin, EXACT, mvm)
    xl.weight.requires_grad_(True)
    x = _seeded(4, 20)
    for _ in range(2):  # two training steps: a cached (graph-attached) program would break the 2nd backward
        xl(x).sum().backward()
        with torch.no_grad():
            xl.weight -= 0.1 * xl.weight.grad
        xl.weight.grad = None
    assert mvm.binds == 2
    with torch.no_grad():
        xl(x)
        xl(x)
    assert mvm.binds == 3


def test_float64_forward_with_drift_and_both_noise_modes():
    torch.manual_seed(0)
    lin = nn.Linear(20, 6)
    x = _seeded(3, 20)
    for mode in ("per_forward", "per_read"):
        cfg = CrossbarConfig(t_drift_s=1e4, drift_nu_std=0.02, read_noise_sigma=0.05, read_noise_mode=mode, seed=4)
        xl = CrossbarLinear.from_float(lin, cfg, ideal(), name="fc").double()
        with torch.no_grad():
            y = xl(x.double())
        assert y.dtype == torch.float64 and torch.isfinite(y).all()
    conv = CrossbarConv2d.from_float(nn.Conv2d(2, 3, 3), EXACT, ideal()).double()
    with torch.no_grad():
        assert conv(_seeded(1, 2, 5, 5).double()).dtype == torch.float64


def test_drift_draws_are_per_layer_per_programming_and_independent_of_the_global_rng():
    torch.manual_seed(0)
    lin = nn.Linear(12, 5)
    cfg = EXACT.replace(t_drift_s=1e6, drift_nu_mean=0.05, drift_nu_std=0.03, seed=1)
    x = _seeded(2, 12)
    with torch.no_grad():
        torch.manual_seed(123)
        a = CrossbarLinear.from_float(lin, cfg, ideal(), name="a")(x)
        torch.manual_seed(456)
        a_again = CrossbarLinear.from_float(lin, cfg, ideal(), name="a")(x)
        b = CrossbarLinear.from_float(lin, cfg, ideal(), name="b")(x)
        layer = CrossbarLinear.from_float(lin, cfg, ideal(), name="a")
        outs = [layer(x)]
        for _ in range(2):
            layer.reprogram()
            outs.append(layer(x))
    assert torch.equal(a, a_again)  # seeded from (seed, layer name, programming), not the global RNG
    assert not torch.equal(a, b)  # another layer: another draw
    assert torch.equal(outs[0], a)
    assert not torch.equal(outs[1], outs[0]) and not torch.equal(outs[2], outs[1])
    assert not torch.equal(outs[2], outs[0])


def test_fixed_adc_full_scale_is_the_ideal_maximum_column_current():
    for fraction in (1.0, 0.25):
        xl = CrossbarLinear.from_float(nn.Linear(4, 2), CrossbarConfig(adc_range_fraction=fraction), ideal(rows=16))
        assert xl._adc_full_scale() == pytest.approx(fraction * 16 * V_MAX * (G_MAX - G_MIN))
    calibrated = CrossbarLinear.from_float(nn.Linear(4, 2), CrossbarConfig(adc_range="calibrated"), ideal())
    with pytest.raises(RuntimeError, match="^crossbar layer \\?: adc_range 'calibrated' needs "
                                           "dnn.layers.calibrate_adc"):
        calibrated._adc_full_scale()


def test_extra_repr_and_tile_count():
    xl = CrossbarLinear.from_float(nn.Linear(40, 20), EXACT, ideal(rows=16, cols=8))
    assert xl.tile_count() == 2 * 2 * 3 * 3  # slices x polarity x row tiles x column tiles
    assert repr(xl).startswith("CrossbarLinear(tiles=36 of 16x8, weight_bits=8, bits_per_cell=4, "
                               "encoding=differential, input_bits=0, adc_bits=0, read_noise_sigma=0.0, t_drift_s=0.0")
    conv = CrossbarConv2d.from_float(nn.Conv2d(2, 3, 3, stride=2, padding=1), EXACT, ideal())
    assert "kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), tiles=" in repr(conv)
    xl.invalidate_cache()


def test_a_float32_layer_follows_float64_inputs():
    torch.manual_seed(0)
    lin = nn.Linear(20, 6)
    x = _seeded(3, 20)
    for cfg in (EXACT.replace(t_drift_s=1e4, drift_nu_std=0.02, seed=1),
                CrossbarConfig(read_noise_sigma=0.05, read_noise_mode="per_forward", seed=4)):
        xl = CrossbarLinear.from_float(lin, cfg, ideal(), name="fc")  # float32 weights
        with torch.no_grad():
            y64, y32 = xl(x.double()), CrossbarLinear.from_float(lin, cfg, ideal(), name="fc")(x)
        assert y64.dtype == torch.float64 and torch.isfinite(y64).all()
        if cfg.read_noise_sigma == 0:  # (noise draws in float64 are other numbers than in float32)
            torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-5)


def test_invalidate_cache_after_editing_weight_data():
    torch.manual_seed(0)
    lin = nn.Linear(20, 6, bias=False)
    xl = CrossbarLinear.from_float(lin, EXACT, ideal())
    x = _seeded(2, 20)
    with torch.no_grad():
        y = xl(x)
        xl.weight.data.mul_(-1.0)  # .data edits do not change the version the cache is keyed on
        xl.invalidate_cache()
        torch.testing.assert_close(xl(x), -y)


def test_offset_encoding_tile_count_has_one_array_per_slice():
    xl = CrossbarLinear.from_float(nn.Linear(40, 14), EXACT.replace(encoding="offset"), ideal(rows=16, cols=8))
    assert xl.cols_per_tile == 7 and xl.tile_count() == 2 * 1 * 3 * 2  # slices x 1 array x row x column tiles


def test_two_backward_passes_with_the_same_weights():
    """While weights require grad nothing is cached: a second forward builds a new graph."""
    torch.manual_seed(0)
    xl = CrossbarLinear.from_float(nn.Linear(20, 6), EXACT, ideal())
    xl.weight.requires_grad_(True)
    x = _seeded(4, 20)
    xl(x).sum().backward()
    xl(x).sum().backward()  # a cached program would raise: its graph was freed by the first backward
    assert xl.weight.grad is not None


def test_inference_after_training_keeps_no_training_graph():
    """A program built while weights required grad is never kept: the next inference programs anew, so
    its conductances carry no autograd graph (a kept one would hold the training graph's memory)."""
    torch.manual_seed(0)
    xl = CrossbarLinear.from_float(nn.Linear(20, 6), EXACT, ideal())
    xl.weight.requires_grad_(True)
    xl(_seeded(4, 20)).sum().backward()
    with torch.no_grad():
        g = xl.programmed_conductances(torch.device("cpu"), torch.float32)
        assert not g.requires_grad and g.grad_fn is None
        assert xl.programmed_conductances(torch.device("cpu"), torch.float32) is g  # and now it is cached


class _ModuleMVM(TileOfFields, nn.Module):
    """An ideal tile model that is an nn.Module (as a surrogate is), optionally without any tensor."""

    rows, cols, g_off_s, g_on_s, v_read_max_v, v_read_min_v = 16, 8, G_MIN, G_MAX, V_MAX, -V_MAX

    def __init__(self, with_tensor: bool):
        super().__init__()
        if with_tensor:
            self.scale = nn.Parameter(torch.ones(()), requires_grad=False)
        self.binds = 0

    def bind(self, g_s):
        self.binds += 1
        return lambda v: torch.bmm(v, g_s)


@pytest.mark.parametrize("with_tensor", [True, False])
def test_module_tile_models_on_the_input_device_are_bound_once(with_tensor):
    mvm = _ModuleMVM(with_tensor)
    xl = CrossbarLinear.from_float(nn.Linear(20, 6), EXACT, mvm)
    x = _seeded(2, 20)
    with torch.no_grad():
        xl(x)
        xl(x)
    assert mvm.binds == 1


def test_linear_layer_keeps_leading_dimensions_and_conv_keeps_its_name():
    torch.manual_seed(0)
    lin = nn.Linear(20, 6)
    xl = CrossbarLinear.from_float(lin, EXACT, ideal())
    x = _seeded(2, 3, 20)
    with torch.no_grad():
        y = xl(x)
        assert y.shape == (2, 3, 6)
        torch.testing.assert_close(y.reshape(6, 6), xl(x.reshape(6, 20)))
    assert CrossbarConv2d.from_float(nn.Conv2d(1, 2, 3), EXACT, ideal(), name="features.0").name == "features.0"
    assert CrossbarConv2d(1, 2, 3, config=EXACT, mvm=ideal(), name="c").name == "c"


def test_one_layer_serves_float32_then_float64_inputs():
    torch.manual_seed(0)
    xl = CrossbarLinear.from_float(nn.Linear(20, 6), EXACT, ideal())
    x = _seeded(3, 20)
    with torch.no_grad():
        y32 = xl(x)
        y64 = xl(x.double())  # the float32 program is not reused for float64 inputs
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32, rtol=1e-5, atol=1e-6)


def test_non_linear_surrogate_layer_binds_once_with_grouped_inputs():
    """A third-order surrogate under a conv layer with 2 bit slices, differential pairs, several row and
    column tiles: one fold of all tiles per programming (the cache hits), one group per row tile, and
    the same outputs and input gradients as the per-tile binding."""
    from surrogate.models import build_model
    from surrogate.physics import TileSpec

    torch.manual_seed(0)
    tile = TileSpec(rows=16, cols=8, g_off_s=G_MIN, g_on_s=G_MAX, v_read_min_v=0.0, v_read_max_v=V_MAX,
                    r_driver_ohm=500.0, r_sense_ohm=500.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)
    surrogate = build_model("transfer", tile, v_order=3)
    with torch.no_grad():
        for p in surrogate.parameters():
            p.add_(0.1 * torch.randn_like(p))
    surrogate.requires_grad_(False).eval()
    folds, groups = [], []
    fold, bind_shared = surrogate.fold, surrogate.bind_shared
    surrogate.fold = lambda g: folds.append(g.shape[0]) or fold(g)
    surrogate.bind_shared = lambda g, input_levels=0: groups.append((*g.shape[:2], input_levels)) or bind_shared(g)
    conv = nn.Conv2d(5, 20, 3, padding=1)  # 45 inputs -> 3 row tiles; 20 outputs -> 3 column tiles
    cfg = CrossbarConfig(adc_bits=0, seed=1)  # 8-bit weights as 2 x 4-bit slices, differential pairs
    shared = CrossbarConv2d.from_float(conv, cfg, surrogate)
    per_tile = CrossbarConv2d.from_float(conv, cfg, PerTileOnly(surrogate))
    x = torch.rand(2, 5, 4, 4)
    with torch.no_grad():
        y = shared(x)
        shared(x)
    assert groups == [(3, 2 * 2 * 3, 127)] and folds == [shared.tile_count()] == [36]  # 8-bit DAC: 127 levels
    with torch.no_grad():
        y_ref = per_tile(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5 * float(y_ref.abs().max()))
    grads = []
    for layer in (shared, per_tile):
        x_ = x.clone().requires_grad_(True)
        (layer(x_) * torch.linspace(-1, 1, 20).view(1, -1, 1, 1)).sum().backward()
        grads.append(x_.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5 * float(grads[1].abs().max()))


def test_per_read_noise_through_a_shared_input_surrogate_equals_the_per_tile_path():
    """Per-read noise needs each tile's transfer matrix, also when the layer reads its tiles through
    `bind_shared` (no per-tile bound MVM yet): the same seeded draws, the same outputs as per-tile binding."""
    from surrogate.models import build_model
    from surrogate.physics import TileSpec

    torch.manual_seed(0)
    tile = TileSpec(rows=16, cols=8, g_off_s=G_MIN, g_on_s=G_MAX, v_read_min_v=0.0, v_read_max_v=V_MAX,
                    r_driver_ohm=500.0, r_sense_ohm=500.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)
    surrogate = build_model("transfer", tile, v_order=3).requires_grad_(False).eval()
    lin = nn.Linear(20, 10)
    cfg = CrossbarConfig(adc_bits=0, seed=3, read_noise_sigma=0.1, read_noise_mode="per_read")
    shared = CrossbarLinear.from_float(lin, cfg, surrogate)
    per_tile = CrossbarLinear.from_float(lin, cfg, PerTileOnly(surrogate))
    quiet = CrossbarLinear.from_float(lin, cfg.replace(read_noise_sigma=0.0), surrogate)
    x = _seeded(6, 20)
    with torch.no_grad():
        y, y_ref, y_quiet = shared(x), per_tile(x), quiet(x)
    assert (y - y_quiet).abs().max() > 1e-3 * y_quiet.abs().max()  # the noise is there
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5 * float(y_ref.abs().max()))


def test_adc_calibration_that_saw_nothing_reports_zero():
    xl = CrossbarLinear.from_float(nn.Linear(20, 6), EXACT, ideal())
    xl.begin_adc_calibration()
    assert xl.end_adc_calibration() == 0.0
    xl.begin_adc_calibration()
    with torch.no_grad():
        xl(torch.zeros(3, 20))
    assert xl.end_adc_calibration() == 0.0


def test_programmed_conductances_have_the_dtype_asked_for():
    xl = CrossbarLinear.from_float(nn.Linear(20, 6), EXACT, ideal())
    for dtype in (torch.float32, torch.float64):
        g = xl.programmed_conductances(torch.device("cpu"), dtype)
        assert g.dtype == dtype and g.shape == (xl.tile_count(), 16, 8)
