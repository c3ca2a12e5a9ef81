"""Batchnorm-only mitigation of crossbar non-idealities, the retraining upper bound, and their cost.

- `bn_adapt` (Tsai et al. 2020 "noise-aware normalization"; AdaBS): recompute BN running mean/var by
  forwarding clean data through the non-ideal network; no gradient step, weights and gamma/beta untouched.
- `bn_finetune` (Bhattacharjee et al. 2023 = Paper 1): train only BN gamma/beta through the non-ideal
  forward; Paper 1's schedule: 5 epochs, lr 0.01 divided by 5 every 2 epochs. The optimizer is our
  choice: Adam (SGD with momentum 0.9 available). With only tens of steps on a small calibration set,
  SGD at lr 0.01 barely moves gamma/beta; Adam's steps do not depend on the gradients' scale.
- `retrain`: noise-aware retraining of every parameter through the same forward (upper bound).
Each procedure modifies `model` in place, restores the parameters' `requires_grad` flags, leaves the
model in eval mode and returns it.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from .layers import reads_are_random
from .settings import BnAdaptSettings, BnFinetuneSettings, RetrainSettings
from .train import fit, resolve_device

logger = logging.getLogger(__name__)


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm{1,2,3}d module of `model`."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def bn_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The affine gamma/beta parameters of every BatchNorm."""
    return [p for m in batchnorm_layers(model) if m.affine for p in (m.weight, m.bias)]


def trainable_parameter_count(model: nn.Module) -> int:
    """Number of scalar parameters with requires_grad=True."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@contextmanager
def _requires_grad_only(model: nn.Module, params: list[nn.Parameter]) -> Iterator[None]:
    """Temporarily make exactly `params` trainable; restore every flag afterwards."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    keep = {id(p) for p in params}
    try:
        for p, _ in saved:
            p.requires_grad_(id(p) in keep)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def _bn_train_rest_eval(model: nn.Module) -> None:
    model.eval()
    for m in batchnorm_layers(model):
        m.train()


@torch.no_grad()
def bn_adapt(model: nn.Module, loader: DataLoader, n_batches: int | None = BnAdaptSettings.n_batches,
             n_draws: int = BnAdaptSettings.n_draws, device: str | torch.device | None = None) -> nn.Module:
    """Reset every BN's running statistics and re-estimate them as a cumulative average (momentum=None)
    over `n_draws` passes of the first `n_batches` batches of clean data through the non-ideal model
    (each forward is a new read-noise draw). Without read noise the forward is deterministic and one pass
    is made: more would repeat the same reads. Only BN runs in train mode; no gradients, no weight or
    gamma/beta change. BN momenta are restored afterwards."""
    device = resolve_device(device)
    bns = [m for m in batchnorm_layers(model) if m.track_running_stats]
    if not bns:
        logger.warning("bn_adapt: model has no BatchNorm with running statistics; nothing to adapt")
        return model.eval()
    model.to(device)
    if n_draws > 1 and not reads_are_random(model):
        n_draws = 1
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    _bn_train_rest_eval(model)
    seen = 0
    try:
        for _ in range(n_draws):
            for b, (x, _y) in enumerate(loader):
                if n_batches is not None and b >= n_batches:
                    break
                model(x.to(device))
                seen += 1
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.eval()
    logger.info("bn_adapt: %d BN layer(s) re-estimated from %d batch forward(s)", len(bns), seen)
    return model


def bn_finetune(model: nn.Module, loader: DataLoader, epochs: int = BnFinetuneSettings.epochs,
                lr: float = BnFinetuneSettings.lr, lr_step_epochs: int = BnFinetuneSettings.lr_step_epochs,
                lr_gamma: float = BnFinetuneSettings.lr_gamma, device: str | torch.device | None = None,
                seed: int = 0, optimizer: str = BnFinetuneSettings.optimizer, momentum: float = 0.9,
                max_batches: int | None = None, progress: bool = True) -> nn.Module:
    """Train only BN gamma/beta (everything else requires_grad=False, crossbar weights frozen) with
    cross-entropy through the non-ideal forward. BN layers run in train mode (batch statistics, running
    stats updated with their momentum); every other module in eval mode. Defaults = Paper 1's
    schedule (lr 0.01, x0.2 every 2 epochs, 5 epochs)."""
    params = bn_parameters(model)
    if not params:
        raise ValueError("bn_finetune: the model has no affine BatchNorm parameters")
    with _requires_grad_only(model, params):
        fit(model, loader, params, epochs, lr, optimizer=optimizer, momentum=momentum,
            lr_step_epochs=lr_step_epochs, lr_gamma=lr_gamma, device=device, seed=seed,
            set_mode=_bn_train_rest_eval, max_batches=max_batches, desc="bn_finetune", progress=progress)
    return model.eval()


def retrain(model: nn.Module, loader: DataLoader, epochs: int = RetrainSettings.epochs, lr: float = RetrainSettings.lr,
            device: str | torch.device | None = None, seed: int = 0, optimizer: str = "adam",
            max_batches: int | None = None, progress: bool = True) -> nn.Module:
    """Noise-aware retraining of every parameter (crossbar weights, biases, BN) through the non-ideal
    forward (quantizers pass gradients straight through); the upper bound for BN-only methods."""
    params = list(model.parameters())
    with _requires_grad_only(model, params):
        fit(model, loader, params, epochs, lr, optimizer=optimizer, device=device, seed=seed,
            max_batches=max_batches, desc="retrain", progress=progress)
    return model.eval()


# ----------------------------------------------------------------------------- cost accounting
@dataclass
class Cost:
    """Wall time and peak memory of a block. On CUDA: torch.cuda.max_memory_allocated during the block.
    On CPU: the process's peak resident set size so far (ru_maxrss; a high-water mark that cannot be
    reset, so it bounds the block's peak from above)."""

    device: str
    wall_s: float = 0.0
    peak_memory_bytes: int = 0
    memory_kind: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "wall_s": self.wall_s, "peak_memory_bytes": self.peak_memory_bytes,
                "memory_kind": self.memory_kind, **self.extra}


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux


@contextmanager
def measure_cost(device: str | torch.device | None = None) -> Iterator[Cost]:
    """`with measure_cost(device) as cost: ...` fills `cost` with wall time and peak memory."""
    dev = resolve_device(device)
    cost = Cost(device=str(dev))
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    try:
        yield cost
    finally:
        if cuda:
            torch.cuda.synchronize(dev)
            cost.peak_memory_bytes = int(torch.cuda.max_memory_allocated(dev))
            cost.memory_kind = "cuda_max_memory_allocated"
        else:
            cost.peak_memory_bytes = _max_rss_bytes()
            cost.memory_kind = "cpu_process_max_rss"
        cost.wall_s = time.perf_counter() - t0


def _finetune_then_restat(model: nn.Module, loader: DataLoader, device: str | torch.device | None, seed: int,
                          finetune: dict[str, Any], adapt: dict[str, Any] | None) -> None:
    """bn_finetune; then, when `finetune['reestimate_stats']` (default True), the running statistics are
    re-estimated for the final gamma/beta with `bn_adapt(**adapt)`: the momentum averages gathered
    during training follow the last few noisy batches and lag behind the parameters that produced
    them. Weights and gamma/beta are untouched by that step."""
    finetune = dict(finetune)
    reestimate = finetune.pop("reestimate_stats", BnFinetuneSettings.reestimate_stats)
    bn_finetune(model, loader, device=device, seed=seed, **finetune)
    if reestimate:
        bn_adapt(model, loader, device=device, **(adapt or {}))


METHODS = ("none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain")
"""'adapt_finetune' = bn_adapt, then bn_finetune starting from the adapted statistics."""


def apply_method(method: str, model: nn.Module, loader: DataLoader, device: str | torch.device | None = None,
                 seed: int = 0, **kwargs: Any) -> tuple[nn.Module, Cost, int]:
    """Run one mitigation method by name on `model` (in place). Returns (model, cost, number of
    parameters the method trains). kwargs go to the procedure: 'bn_adapt' takes bn_adapt's keywords
    (n_batches, n_draws); 'bn_finetune' and 'adapt_finetune' take `finetune={...}` (bn_finetune's
    keywords plus `reestimate_stats`) and `adapt={...}`; 'retrain' takes retrain's keywords and
    `adapt={...}`. Every method that trains ends with a BN re-estimate (settings in `adapt`) so the
    running statistics match the final parameters."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {list(METHODS)}")
    n_bn = sum(p.numel() for p in bn_parameters(model))
    n_trained = {"none": 0, "bn_adapt": 0, "bn_finetune": n_bn, "adapt_finetune": n_bn,
                 "retrain": sum(p.numel() for p in model.parameters())}[method]
    with measure_cost(device) as cost:
        if method == "bn_adapt":
            bn_adapt(model, loader, device=device, **kwargs)
        elif method == "bn_finetune":
            _finetune_then_restat(model, loader, device, seed, kwargs.get("finetune", {}), kwargs.get("adapt"))
        elif method == "adapt_finetune":
            bn_adapt(model, loader, device=device, **kwargs.get("adapt", {}))
            _finetune_then_restat(model, loader, device, seed, kwargs.get("finetune", {}), kwargs.get("adapt"))
        elif method == "retrain":
            # Running statistics gathered while every weight moves lag behind the final weights:
            # re-estimate them for the retrained network (as after any retraining).
            retrain(model, loader, device=device, seed=seed, **{k: v for k, v in kwargs.items() if k != "adapt"})
            bn_adapt(model, loader, device=device, **kwargs.get("adapt", {}))
    cost.extra["trained_parameters"] = n_trained
    logger.info("%s: %.2f s, peak memory %.1f MiB (%s), %d trained parameters", method, cost.wall_s,
                cost.peak_memory_bytes / 2**20, cost.memory_kind, n_trained)
    return model, cost, n_trained
