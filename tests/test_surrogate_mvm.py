"""The MVM protocol of the surrogates: bind == unfused forward, gradients, shapes, devices, cost."""

from __future__ import annotations

import pytest
import torch

from dnn.mvm import TileMVM
from surrogate.models import GeniexMLP, TransferNet, build_model
from surrogate.physics import TileSpec

TILE = TileSpec(rows=6, cols=5, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=0.0, v_read_max_v=0.2, r_driver_ohm=1000.0,
                r_sense_ohm=1000.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)
DESIGNS = [("mlp", {"hidden": 24}), ("transfer", {"v_order": 1}), ("transfer", {"v_order": 3}), ("ridge", {})]


def random_model(design: str, hp: dict, seed: int = 0):
    """A model with every parameter perturbed (the zero-initialized heads too), so no term is trivially 0."""
    torch.manual_seed(seed)
    model = build_model(design, TILE, **hp)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def tiles(n_tiles: int = 3, batch: int = 7, seed: int = 1, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    g = TILE.g_off_s + (TILE.g_on_s - TILE.g_off_s) * torch.rand(n_tiles, TILE.rows, TILE.cols, generator=gen)
    v = TILE.v_read_max_v * torch.rand(n_tiles, batch, TILE.rows, generator=gen)
    return g.to(dtype), v.to(dtype)


@pytest.mark.parametrize(("design", "hp"), DESIGNS)
def test_bind_then_evaluate_equals_the_unfused_forward(design, hp):
    model = random_model(design, hp)
    assert isinstance(model, TileMVM)
    g, v = tiles()
    i_bound = model.bind(g)(v)
    i_unfused = model(g, v)
    assert i_bound.shape == (3, 7, TILE.cols)
    assert torch.all(torch.isfinite(i_bound))
    torch.testing.assert_close(i_bound, i_unfused, rtol=2e-5, atol=1e-6 * TILE.full_scale_a)
    # every tile and vector is evaluated with its own G: swapping tiles swaps outputs
    torch.testing.assert_close(model.bind(g.flip(0))(v.flip(0)), i_bound.flip(0))


@pytest.mark.parametrize(("design", "hp"), DESIGNS)
def test_gradients_flow_to_v_and_g(design, hp):
    model = random_model(design, hp)
    g, v = tiles(n_tiles=2, batch=3)
    g.requires_grad_(True)
    v.requires_grad_(True)
    model.bind(g)(v).square().sum().backward()
    for t in (g, v):
        assert t.grad is not None and torch.all(torch.isfinite(t.grad)) and t.grad.abs().sum() > 0


def test_transfer_gradient_wrt_v_is_the_effective_transfer_matrix():
    model = random_model("transfer", {"v_order": 1})
    g, v = tiles(n_tiles=2, batch=1)
    v.requires_grad_(True)
    model.bind(g)(v)[:, 0, 2].sum().backward()
    t_eff = model.transfer_n(g).detach() * TILE.g_on_s  # A/V
    torch.testing.assert_close(v.grad[:, 0, :], t_eff[:, :, 2], rtol=1e-4, atol=0.0)


def test_a_fresh_transfer_model_is_the_physics_prior_and_below_ideal():
    model = build_model("transfer", TILE, v_order=3)
    g, v = tiles()
    i = model.bind(g)(v)
    ideal = torch.bmm(v, g)
    assert torch.all(i > 0) and torch.all(i < ideal)  # driver/sense/wires only lose current


def test_float64_inputs_and_frozen_parameters():
    model = random_model("mlp", {"hidden": 8}).requires_grad_(False)
    g, v = tiles(dtype=torch.float64)
    out = model.bind(g)(v)
    assert out.dtype == torch.float64
    assert all(not p.requires_grad for p in model.parameters())


def test_wrong_shapes_are_clear_errors():
    model = random_model("transfer", {"v_order": 1})
    g, v = tiles()
    with pytest.raises(ValueError, match=r"expects \[T, 6, 5\]"):
        model.bind(g[:, :4])
    f = model.bind(g)
    with pytest.raises(ValueError, match=r"expected \[3, B, 6\]"):
        f(v[:2])


def test_cost_model():
    assert random_model("transfer", {"v_order": 1}).macs_per_vector() == 30
    assert random_model("transfer", {"v_order": 3}).macs_per_vector() == 8 * 30 + 2 * 5
    mlp = random_model("mlp", {"hidden": 24})
    assert isinstance(mlp, GeniexMLP) and mlp.macs_per_vector() == 6 * 24 + 24 * 10 + 30
    assert isinstance(random_model("transfer", {}), TransferNet)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("design", "hp"), DESIGNS)
def test_runs_on_cuda_like_on_cpu(design, hp):
    model = random_model(design, hp)
    g, v = tiles()
    cpu = model.bind(g)(v)
    model.to("cuda")
    gpu = model.bind(g.cuda())(v.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-6 * TILE.full_scale_a)


def _previous_formulation(model, g, v):
    """The unblocked evaluation of the folded maps per tile (:meth:`apply_n`), amperes."""
    return model.apply_n(model.fold(g), v) * model.full_scale_a


# (output, map) elements per block: one block; blocks of 1 group; of 2 tiles; of 1 vector; of 1 tile and 2 vectors
@pytest.mark.parametrize(("block_elements", "map_elements"),
                         [(2**16, 2**16), (300, 2**16), (2**16, 500), (20, 2**16), (20, 250)])
@pytest.mark.parametrize("v_order", [1, 3])
def test_shared_bind_equals_the_previous_formulation(monkeypatch, block_elements, map_elements, v_order):
    """bind_shared (and bind, its one-tile groups) equals the per-tile evaluation of the folded maps to
    float32 rounding, whatever the blocking of the in-place cubic evaluation."""
    import surrogate.transfer as transfer

    monkeypatch.setattr(transfer, "CUBIC_BLOCK_ELEMENTS", block_elements)
    monkeypatch.setattr(transfer, "CUBIC_BLOCK_MAP_ELEMENTS", map_elements)
    model = random_model("transfer", {"v_order": v_order}).requires_grad_(False)
    g, v = tiles(n_tiles=12, batch=7, seed=3)
    g_groups, v_groups = g.reshape(3, 4, TILE.rows, TILE.cols), v[::4]  # tile k of group j reads v_groups[j]
    with torch.no_grad():
        expected = _previous_formulation(model, g, v_groups.repeat_interleave(4, 0)).reshape(3, 4, 7, TILE.cols)
        shared = model.bind_shared(g_groups)(v_groups)
        per_tile = model.bind(g)(v)
        expected_per_tile = _previous_formulation(model, g, v)
    assert shared.shape == (3, 4, 7, TILE.cols) and per_tile.shape == (12, 7, TILE.cols)
    scale = expected.abs().max()
    assert (shared - expected).abs().max() <= 2e-6 * scale
    assert (per_tile - expected_per_tile).abs().max() <= 2e-6 * expected_per_tile.abs().max()
    # the non-linear terms are not negligible here: the comparison would see a wrong fold
    if v_order == 3:
        lin_only = v_groups.repeat_interleave(4, 0) @ (model.fold(g)[0][..., :TILE.cols] * model.full_scale_a
                                                        / (TILE.rows * TILE.v_read_max_v))
        assert (expected - lin_only.reshape(expected.shape)).abs().max() > 1e-3 * scale


def test_shared_bind_in_float64_equals_the_previous_formulation():
    model = random_model("transfer", {"v_order": 3}).double().requires_grad_(False)
    g, v = tiles(n_tiles=4, batch=5, seed=4, dtype=torch.float64)
    expected = _previous_formulation(model, g, v[:1].expand(4, -1, -1)).unsqueeze(0)
    shared = model.bind_shared(g.unsqueeze(0))(v[:1])
    assert shared.dtype == torch.float64
    torch.testing.assert_close(shared, expected, rtol=1e-12, atol=1e-12 * float(expected.abs().max()))


@pytest.mark.parametrize("frozen", [True, False])
def test_shared_bind_gradients_equal_the_previous_formulation(frozen):
    """Gradients w.r.t. v (BN fine-tuning, retraining) and, unless frozen, w.r.t. G and the model."""
    model = random_model("transfer", {"v_order": 3}).requires_grad_(not frozen)
    g, v = tiles(n_tiles=6, batch=4, seed=5)
    weights = torch.randn(2, 3, 4, TILE.cols, generator=torch.Generator().manual_seed(6))
    grads = []
    for shared in (True, False):
        g_ = g.clone().requires_grad_(True)
        v_ = v[::3].clone().requires_grad_(True)  # 2 groups of 3 tiles
        if shared:
            i = model.bind_shared(g_.reshape(2, 3, TILE.rows, TILE.cols))(v_)
        else:
            i = _previous_formulation(model, g_, v_.repeat_interleave(3, 0)).reshape(2, 3, 4, TILE.cols)
        (i * weights).sum().backward()
        grads.append((v_.grad, g_.grad))
    (v_shared, g_shared), (v_previous, g_previous) = grads
    assert v_shared.abs().sum() > 0 and g_shared.abs().sum() > 0
    torch.testing.assert_close(v_shared, v_previous, rtol=1e-4, atol=1e-6 * float(v_previous.abs().max()))
    torch.testing.assert_close(g_shared, g_previous, rtol=1e-4, atol=1e-6 * float(g_previous.abs().max()))


def test_shared_bind_shape_errors():
    model = random_model("transfer", {"v_order": 3})
    g, v = tiles(n_tiles=4)
    with pytest.raises(ValueError, match=r"expects \[G, K, 6, 5\]"):
        model.bind_shared(g)
    f = model.bind_shared(g.reshape(2, 2, TILE.rows, TILE.cols))
    with pytest.raises(ValueError, match=r"expected \[2, B, 6\]"):
        f(v)
