"""Digital correction modules attached to crossbar layers: the light rivals of BN-only mitigation.

Each module sits beside one crossbar layer (a child named ``adapter``; a forward hook applies it) and
sees the layer's digital input ``x`` and its output ``y`` (the crossbar's result plus the digital bias):

- :class:`OutputScale` (``drift_compensation``, aihwkit's global drift compensation): ``y' = s (y - b) + b``
  with ``s`` one number per layer (or one per output column), set from a calibration read
  (:func:`estimate_output_scales`); no training.
- :class:`LoRAAdapter` (``lora``; AHWA-LoRA 2024): ``y' = y + B A x``, ``A`` [r, d_in] seeded random,
  ``B`` [d_out, r] zero-initialised, both trained (digital, float).
- :class:`VeRAAdapter` (``vera``; Kopiczko et al. 2024): ``y' = y + diag(b) B diag(d) A x`` with ``A``
  and ``B`` frozen random matrices shared by every layer (slices of one pair drawn from a seed) and only
  the vectors ``d`` (r) and ``b`` (d_out) trained; ``b`` starts at 0, ``d`` at ``d_init``.

For a conv layer ``d_in = in_channels x kh x kw`` (the unrolled patch the crossbar sees) and ``A`` is
applied as a convolution of the layer's geometry, ``B`` as a 1x1 convolution, so the adapter adds to
exactly the output the crossbar computes. Ranks: LoRA ``1 <= r <= min(d_in, d_out)`` of every adapted
layer; VeRA ``1 <= r <= d_in x d_out`` (``B diag(d) A`` is a combination of r rank-one matrices, so r
above the layer's rank still adds freedom, up to the layer's weight count).

VeRA's shared matrices are one tensor on the CPU; moving a model to another device (``Module.to``) moves
each layer's buffer on its own, so there each layer holds a copy of the same values (memory, not results).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import CrossbarConv2d, CrossbarLayerBase
from .noise import derive_seed, make_generator

ADAPTER_NAME = "adapter"
"""The child module name of an adapter on its crossbar layer."""


@dataclass(frozen=True)
class LayerShape:
    """The matrix a crossbar layer computes: ``d_in`` (unrolled inputs) x ``d_out`` (outputs)."""

    name: str
    d_in: int
    d_out: int


def layer_shapes(model: nn.Module) -> list[LayerShape]:
    """Every crossbar layer of ``model`` as (name, d_in, d_out), in module order."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, CrossbarLayerBase):
            d_in, d_out = m.weight_matrix().shape
            out.append(LayerShape(name, int(d_in), int(d_out)))
    return out


# ----------------------------------------------------------------------------- parameter budgets
def lora_max_rank(shapes: list[LayerShape]) -> int:
    """Largest LoRA rank every layer admits: min over layers of min(d_in, d_out)."""
    return min(min(s.d_in, s.d_out) for s in shapes)


def vera_max_rank(shapes: list[LayerShape]) -> int:
    """Largest VeRA rank: min over layers of d_in x d_out (r rank-one terms span at most the layer)."""
    return min(s.d_in * s.d_out for s in shapes)


def lora_parameter_count(shapes: list[LayerShape], rank: int) -> int:
    """Trained scalars of rank-``rank`` LoRA on every layer: sum r (d_in + d_out)."""
    return sum(rank * (s.d_in + s.d_out) for s in shapes)


def vera_parameter_count(shapes: list[LayerShape], rank: int) -> int:
    """Trained scalars of VeRA: sum (r + d_out) (the vectors d and b of each layer)."""
    return sum(rank + s.d_out for s in shapes)


def rank_for_budget(method: str, shapes: list[LayerShape], budget: float) -> tuple[int, bool]:
    """The rank whose trained-parameter count is nearest ``budget`` (a number of scalars), clamped to
    [1, the method's largest rank]; and whether it was clamped (the budget cannot be met)."""
    if not shapes:
        raise ValueError(f"{method}: the model has no crossbar layer to adapt")
    if method == "lora":
        per_rank, fixed, top = sum(s.d_in + s.d_out for s in shapes), 0, lora_max_rank(shapes)
    elif method == "vera":
        per_rank, fixed, top = len(shapes), sum(s.d_out for s in shapes), vera_max_rank(shapes)
    else:
        raise ValueError(f"rank_for_budget: {method!r} has no rank (lora or vera)")
    exact = (budget - fixed) / per_rank
    rank = int(math.floor(exact + 0.5))
    clamped = rank < 1 or rank > top
    return min(max(rank, 1), top), clamped


def check_rank(method: str, shapes: list[LayerShape], rank: int) -> None:
    """ValueError naming the limiting layer unless 1 <= rank <= the method's largest rank."""
    top = lora_max_rank(shapes) if method == "lora" else vera_max_rank(shapes)
    if not (isinstance(rank, int) and 1 <= rank <= top):
        s = min(shapes, key=(lambda s: min(s.d_in, s.d_out)) if method == "lora" else (lambda s: s.d_in * s.d_out))
        limit = "min(d_in, d_out)" if method == "lora" else "d_in x d_out"
        raise ValueError(f"{method} rank {rank}: expected an integer in [1, {top}] ({limit} of layer {s.name}: "
                         f"{s.d_in} x {s.d_out})")


# ----------------------------------------------------------------------------- the modules
class LayerAdapter(nn.Module):
    """A digital correction of one crossbar layer's output: ``forward(x, y, layer) -> y'``."""

    def forward(self, x: torch.Tensor, y: torch.Tensor, layer: CrossbarLayerBase) -> torch.Tensor:
        raise NotImplementedError


def _apply_in(layer: CrossbarLayerBase, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``kernel`` [r, d_in] applied to the layer's input as the layer applies its weight (conv geometry
    for a conv layer): [N, r, H', W'] or [..., r]."""
    if isinstance(layer, CrossbarConv2d):
        k = kernel.reshape(kernel.shape[0], layer.in_channels, *layer.kernel_size)
        return F.conv2d(x, k, None, layer.stride, layer.padding, layer.dilation)
    return F.linear(x, kernel)


def _apply_out(layer: CrossbarLayerBase, h: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``kernel`` [d_out, r] applied along the feature dimension of ``h`` (a 1x1 conv for conv layers)."""
    if isinstance(layer, CrossbarConv2d):
        return F.conv2d(h, kernel[:, :, None, None])
    return F.linear(h, kernel)


def _channel(layer: CrossbarLayerBase, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-output vector shaped to broadcast over ``like`` (channels on dim 1 for conv layers)."""
    return v.view(1, -1, 1, 1).to(like) if isinstance(layer, CrossbarConv2d) else v.to(like)


class OutputScale(LayerAdapter):
    """``y' = s (y - bias) + bias``: a global (one number) or per-column output scale, set by calibration;
    a buffer, never trained."""

    def __init__(self, n_scales: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(n_scales))

    def forward(self, x: torch.Tensor, y: torch.Tensor, layer: CrossbarLayerBase) -> torch.Tensor:
        s = self.scale if self.scale.numel() == 1 else _channel(layer, self.scale, y)
        if layer.bias is None:
            return y * s.to(y)
        b = _channel(layer, layer.bias, y)
        return (y - b) * s.to(y) + b


class LoRAAdapter(LayerAdapter):
    """``y' = y + B A x``; A [r, d_in] Kaiming-uniform from ``seed``, B [d_out, r] zeros."""

    def __init__(self, d_in: int, d_out: int, rank: int, seed: int) -> None:
        super().__init__()
        a = torch.empty(rank, d_in)
        bound = 1.0 / math.sqrt(d_in)  # kaiming_uniform_(a=sqrt(5)), torch's Linear default, as LoRA uses
        a.uniform_(-bound, bound, generator=make_generator(seed))
        self.lora_a = nn.Parameter(a)
        self.lora_b = nn.Parameter(torch.zeros(d_out, rank))

    def forward(self, x: torch.Tensor, y: torch.Tensor, layer: CrossbarLayerBase) -> torch.Tensor:
        return y + _apply_out(layer, _apply_in(layer, x.to(self.lora_a), self.lora_a), self.lora_b).to(y)


class VeRAAdapter(LayerAdapter):
    """``y' = y + diag(b) B diag(d) A x``: ``shared_a`` [r_max, d_in_max] and ``shared_b`` [d_out_max, r_max]
    are frozen buffers (not parameters) shared by every layer, of which this layer uses the top-left
    slices; only ``vera_d`` (r, starts at ``d_init``) and ``vera_b`` (d_out, starts at 0) are trained."""

    def __init__(self, d_in: int, d_out: int, rank: int, shared_a: torch.Tensor, shared_b: torch.Tensor,
                 d_init: float) -> None:
        super().__init__()
        if shared_a.shape[0] < rank or shared_a.shape[1] < d_in or shared_b.shape[0] < d_out:
            raise ValueError("VeRAAdapter: the shared matrices are smaller than the layer")
        self.d_in, self.d_out, self.rank = d_in, d_out, rank
        self.register_buffer("shared_a", shared_a, persistent=False)
        self.register_buffer("shared_b", shared_b, persistent=False)
        self.vera_d = nn.Parameter(torch.full((rank,), float(d_init)))
        self.vera_b = nn.Parameter(torch.zeros(d_out))

    def forward(self, x: torch.Tensor, y: torch.Tensor, layer: CrossbarLayerBase) -> torch.Tensor:
        a = self.shared_a[: self.rank, : self.d_in]
        b = self.shared_b[: self.d_out, : self.rank]
        h = _apply_in(layer, x.to(a), a) * _channel(layer, self.vera_d, x.to(a))
        return y + (_apply_out(layer, h, b) * _channel(layer, self.vera_b, h)).to(y)


def shared_vera_matrices(shapes: list[LayerShape], rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen pair (A [r, max d_in], B [max d_out, r]), Kaiming-uniform from ``seed``: the same on
    every chip, so a chip stores only its vectors (and the seed regenerates the matrices)."""
    d_in, d_out = max(s.d_in for s in shapes), max(s.d_out for s in shapes)
    gen = make_generator(derive_seed(seed, "vera"))
    a = torch.empty(rank, d_in).uniform_(-1.0, 1.0, generator=gen) / math.sqrt(d_in)
    b = torch.empty(d_out, rank).uniform_(-1.0, 1.0, generator=gen) / math.sqrt(rank)
    return a, b


# ----------------------------------------------------------------------------- attaching
def _adapter_hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    adapter = module.get_submodule(ADAPTER_NAME)
    assert isinstance(adapter, LayerAdapter) and isinstance(module, CrossbarLayerBase)
    return adapter(inputs[0], output, module)


def attach(layer: CrossbarLayerBase, adapter: LayerAdapter) -> LayerAdapter:
    """Make ``adapter`` the child ``adapter`` of ``layer`` and apply it to every output of ``layer``."""
    if ADAPTER_NAME in layer._modules:
        raise ValueError(f"crossbar layer {layer.name or '?'} already has an adapter")
    p = layer.weight
    adapter.to(device=p.device)
    layer.add_module(ADAPTER_NAME, adapter)
    layer.register_forward_hook(_adapter_hook)
    return adapter


def attached(model: nn.Module) -> dict[str, LayerAdapter]:
    """Qualified crossbar-layer name -> its adapter, for every adapted layer of ``model``."""
    return {name.rpartition(".")[0]: m for name, m in model.named_modules()
            if isinstance(m, LayerAdapter) and (name.endswith("." + ADAPTER_NAME) or name == ADAPTER_NAME)}


def add_lora(model: nn.Module, rank: int, seed: int) -> list[nn.Parameter]:
    """Rank-``rank`` LoRA on every crossbar layer (A seeded from ``seed`` and the layer name); returns the
    new trainable parameters."""
    shapes = layer_shapes(model)
    check_rank("lora", shapes, rank)
    layers = dict(model.named_modules())
    params: list[nn.Parameter] = []
    for s in shapes:
        ad = attach(layers[s.name], LoRAAdapter(s.d_in, s.d_out, rank, derive_seed(seed, s.name, "lora")))  # type: ignore[arg-type]
        params += [ad.lora_a, ad.lora_b]
    return params


def add_vera(model: nn.Module, rank: int, seed: int, d_init: float) -> list[nn.Parameter]:
    """VeRA of rank ``rank`` on every crossbar layer, one shared frozen pair drawn from ``seed``; returns
    the trainable vectors."""
    shapes = layer_shapes(model)
    check_rank("vera", shapes, rank)
    shared_a, shared_b = shared_vera_matrices(shapes, rank, seed)
    layers = dict(model.named_modules())
    params: list[nn.Parameter] = []
    for s in shapes:
        ad = attach(layers[s.name], VeRAAdapter(s.d_in, s.d_out, rank, shared_a, shared_b, d_init))  # type: ignore[arg-type]
        params += [ad.vera_d, ad.vera_b]
    return params


def add_output_scales(model: nn.Module, per_column: bool) -> dict[str, OutputScale]:
    """An :class:`OutputScale` (ones) on every crossbar layer; returns them by layer name."""
    layers = dict(model.named_modules())
    return {s.name: attach(layers[s.name], OutputScale(s.d_out if per_column else 1))  # type: ignore[arg-type]
            for s in layer_shapes(model)}


def ideal_output(layer: CrossbarLayerBase, x: torch.Tensor) -> torch.Tensor:
    """The layer's software output without bias: its float weight applied digitally to ``x``."""
    w = layer.weight.to(x)
    if isinstance(layer, CrossbarConv2d):
        return F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation)
    return F.linear(x, w)


@torch.no_grad()
def estimate_output_scales(model: nn.Module, scales: dict[str, OutputScale], loader: Any, n_batches: int | None,
                           device: torch.device) -> dict[str, list[float]]:
    """Set each layer's scale from one calibration read: the layer's non-ideal output ``y`` (bias removed,
    scale 1) and its ideal output ``y0`` on the same inputs (the inputs it sees in the non-ideal
    network), ``s = sum |y0| / sum |y|`` (aihwkit's global drift compensation compares the absolute sums
    of a reference read), summed over the layer or per output column. Returns the scales by layer."""
    layers = dict(model.named_modules())
    sums: dict[str, list[torch.Tensor]] = {n: [torch.zeros(()), torch.zeros(())] for n in scales}

    def observe(name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            layer = layers[name]
            assert isinstance(layer, CrossbarLayerBase)
            y = output if layer.bias is None else output - _channel(layer, layer.bias, output)
            y0 = ideal_output(layer, inputs[0])
            channel = 1 if isinstance(layer, CrossbarConv2d) else y.dim() - 1
            dims = [d for d in range(y.dim()) if d != channel]
            per_col = scales[name].scale.numel() > 1
            s0 = y0.abs().sum(dims) if per_col else y0.abs().sum()
            s1 = y.abs().sum(dims) if per_col else y.abs().sum()
            sums[name][0] = sums[name][0].to(s0) + s0.double()
            sums[name][1] = sums[name][1].to(s1) + s1.double()
        return hook

    for sc in scales.values():
        sc.scale.fill_(1.0)
    handles = [layers[n].register_forward_hook(observe(n)) for n in scales]  # after the adapter's own hook
    was_training = model.training
    model.eval()
    try:
        for b, (x, _y) in enumerate(loader):
            if n_batches is not None and b >= n_batches:
                break
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {}
    for name, (s0, s1) in sums.items():
        ratio = torch.where(s1 > 0, s0 / s1.clamp_min(torch.finfo(torch.float64).tiny), torch.ones_like(s1))
        scales[name].scale.copy_(ratio.reshape(-1).to(scales[name].scale))
        out[name] = [float(v) for v in ratio.reshape(-1)]
    return out


def model_layer_shapes(model: str, dataset: str, width: float, analog_layers: str, exclude: tuple[str, ...] = ()
                       ) -> list[LayerShape]:
    """The crossbar layers ``convert_to_crossbar`` would make of architecture ``model`` on ``dataset``
    (Conv2d layers, and Linear ones with ``analog_layers`` 'all'; ``exclude`` kept digital), built on the
    meta device (no memory, no data): what a config's ranks are checked against before any run."""
    from .models import build_model
    from .settings import DATASET_INPUTS

    in_channels, image_size, num_classes = DATASET_INPUTS[dataset]
    with torch.device("meta"):
        net = build_model(model, in_channels, num_classes, image_size, width)
    shapes = []
    for name, m in net.named_modules():
        if name in exclude:
            continue
        if type(m) is nn.Conv2d:
            shapes.append(LayerShape(name, m.in_channels * m.kernel_size[0] * m.kernel_size[1], m.out_channels))
        elif type(m) is nn.Linear and analog_layers == "all":
            shapes.append(LayerShape(name, m.in_features, m.out_features))
    return shapes
