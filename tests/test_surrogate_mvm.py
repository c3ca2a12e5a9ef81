"""The MVM protocol of the surrogates: bind == unfused forward, gradients, shapes, devices, cost."""

from __future__ import annotations

import pytest
import torch

from dnn.mvm import TileMVM
from surrogate.models import GeniexMLP, TransferNet, build_model
from surrogate.physics import TileSpec

TILE = TileSpec(rows=6, cols=5, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=0.0, v_read_max_v=0.2, r_driver_ohm=1000.0,
                r_sense_ohm=1000.0, r_wire_row_ohm=5.0, r_wire_col_ohm=5.0)
DESIGNS = [("mlp", {"hidden": 24}), ("transfer", {"v_order": 1}), ("transfer", {"v_order": 3})]


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
    assert random_model("transfer", {"v_order": 3}).macs_per_vector() == 180
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
