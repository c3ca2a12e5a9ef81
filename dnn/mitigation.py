"""Batchnorm-only mitigation of crossbar non-idealities, the retraining upper bound, and their cost.

- `bn_adapt` (Tsai et al. 2020 "noise-aware normalization"; AdaBS): recompute BN running mean/var by
  forwarding clean data through the non-ideal network; no gradient step, weights and gamma/beta untouched.
- `bn_finetune` (Bhattacharjee et al. 2023 = Paper 1): train only BN gamma/beta through the non-ideal
  forward; Paper 1's schedule: 5 epochs, lr 0.01 divided by 5 every 2 epochs. The optimizer is our
  choice: Adam (SGD with momentum 0.9 available). With only tens of steps on a small calibration set,
  SGD at lr 0.01 barely moves gamma/beta; Adam's steps do not depend on the gradients' scale.
- `retrain`: noise-aware retraining of every parameter through the same forward (upper bound).
- `drift_compensation` (aihwkit's global drift compensation): one output scale per crossbar layer (or per
  column) from a calibration read, ideal vs non-ideal output; no training (``dnn.adapters``).
- `lora` / `vera`: digital low-rank adapters (LoRA) or frozen shared random matrices with trained scaling
  vectors (VeRA) on every crossbar layer, trained through the non-ideal forward exactly as bn_finetune
  trains gamma/beta (BN in train mode, the same schedule, the BN statistics re-estimated at the end).

The fine-tune safeguard (bn_finetune, adapt_finetune, lora, vera; ``SafeguardSettings``): a seeded share of
the calibration images is held out, the starting state and the state after each epoch are scored on it
(with re-estimated BN statistics, as deployed) and the best is kept, the start included, so a fine-tune
never ends below its own starting point on held-out data. ``holdout_fraction: 0`` is Paper 1's setting
(all images train, fixed schedule, the last state).

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
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from .adapters import (
    add_lora,
    add_output_scales,
    add_vera,
    attached,
    check_rank,
    estimate_output_scales,
    layer_shapes,
    rank_for_budget,
)
from .layers import reads_are_random
from .settings import (
    BnAdaptSettings,
    BnFinetuneSettings,
    DriftCompensationSettings,
    EvaluationSettings,
    LoraSettings,
    RetrainSettings,
    SafeguardSettings,
    VeraSettings,
)
from .train import fit, resolve_device, validation_scores

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
    bytes_per_chip: int = 0
    """What the method stores per deployed chip (:func:`stored_per_chip`), bytes."""
    calibration_images: int = 0
    """Training images the method used (0 for 'none')."""
    details: dict[str, Any] = field(default_factory=dict)
    """lora/vera: ``rank``; the fine-tunes: ``safeguard`` (:class:`SafeguardRecord`)."""

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


# ----------------------------------------------------------------------------- the fine-tune safeguard
@dataclass
class SafeguardRecord:
    """What the safeguard saw: held-out (accuracy, loss) of each scored state (index 0 = the start, k =
    after epoch k) and the state kept."""

    holdout_images: int = 0
    train_images: int = 0
    scores: list[tuple[float, float]] = field(default_factory=list)
    kept_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"holdout_images": self.holdout_images, "train_images": self.train_images,
                "holdout_accuracy": [a for a, _ in self.scores], "holdout_loss": [loss for _, loss in self.scores],
                "kept_epoch": self.kept_epoch}


def split_holdout(loader: DataLoader, holdout_fraction: float, seed: int) -> tuple[DataLoader, DataLoader | None]:
    """(training loader, held-out loader or None) from ``loader``'s dataset: a seeded ``holdout_fraction``
    of its images (at least one, at least one left to train on) held out; the training loader shuffles
    like ``dnn.train.make_loader``. None when the fraction is 0 or fewer than 2 images exist."""
    from torch.utils.data import Subset

    from .train import make_loader

    n = len(loader.dataset)  # type: ignore[arg-type]
    if holdout_fraction <= 0 or n < 2:
        if holdout_fraction > 0:
            logger.warning("safeguard: %d calibration image(s), too few to hold any out; fixed schedule", n)
        return loader, None
    n_hold = min(max(1, round(holdout_fraction * n)), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + 17)).tolist()
    hold, train = sorted(order[:n_hold]), sorted(order[n_hold:])
    batch = loader.batch_size or 64
    return (make_loader(Subset(loader.dataset, train), batch, shuffle=True, seed=seed),
            make_loader(Subset(loader.dataset, hold), batch))


def holdout_scores(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of ``model`` in eval mode on ``loader``
    (:func:`dnn.train.validation_scores`, ordered for :func:`_better`)."""
    loss, accuracy = validation_scores(model, loader, device)
    return accuracy, loss


def _better(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether held-out (accuracy, loss) ``a`` is strictly better than ``b``: higher accuracy, or equal
    accuracy and lower loss."""
    return a[0] > b[0] or (a[0] == b[0] and a[1] < b[1])


def finetune(model: nn.Module, loader: DataLoader, params: list[nn.Parameter], *, epochs: int, lr: float,
             lr_step_epochs: int, lr_gamma: float, optimizer: str, reestimate_stats: bool,
             adapt: dict[str, Any] | None, holdout_fraction: float, device: str | torch.device | None,
             seed: int, desc: str, momentum: float = 0.9, max_batches: int | None = None,
             progress: bool = True) -> SafeguardRecord:
    """Train ``params`` only through the non-ideal forward (BN layers in train mode, the rest in eval
    mode), then re-estimate the BN statistics when ``reestimate_stats``; with ``holdout_fraction`` > 0,
    the safeguard of the module docstring (states scored at the start of each epoch through ``fit``'s
    ``set_mode`` hook, which ``fit`` calls once per epoch, and after the last)."""
    dev = resolve_device(device)
    train_loader, hold_loader = split_holdout(loader, holdout_fraction, seed)
    record = SafeguardRecord(train_images=len(train_loader.dataset),  # type: ignore[arg-type]
                             holdout_images=0 if hold_loader is None else len(hold_loader.dataset))  # type: ignore[arg-type]
    best: dict[str, Any] = {}

    def deployable() -> None:
        if reestimate_stats:
            bn_adapt(model, train_loader, device=dev, **(adapt or {}))

    def checkpoint(epoch: int) -> None:
        assert hold_loader is not None
        deployable()
        score = holdout_scores(model, hold_loader, dev)
        record.scores.append(score)
        logger.info("%s safeguard: after epoch %d held-out accuracy %.4f, loss %.4f", desc, epoch, *score)
        if not best or _better(score, best["score"]):
            best.update(score=score, epoch=epoch, state={k: v.detach().clone() for k, v in model.state_dict().items()})

    epochs_started = [0]

    def set_mode(m: nn.Module) -> None:
        if hold_loader is not None and epochs_started[0] > 0:
            checkpoint(epochs_started[0])
        epochs_started[0] += 1
        _bn_train_rest_eval(m)

    model.to(dev)
    with _requires_grad_only(model, params):
        if hold_loader is not None:
            checkpoint(0)
        fit(model, train_loader, params, epochs, lr, optimizer=optimizer, momentum=momentum,
            lr_step_epochs=lr_step_epochs, lr_gamma=lr_gamma, device=dev, seed=seed, set_mode=set_mode,
            max_batches=max_batches, desc=desc, progress=progress)
        if hold_loader is None:
            deployable()
        else:
            checkpoint(epochs)
            model.load_state_dict(best["state"])
            record.kept_epoch = best["epoch"]
            logger.info("%s safeguard: kept the state after epoch %d of %d (held-out accuracy %.4f)", desc,
                        best["epoch"], epochs, best["score"][0])
    model.eval()
    return record


def _finetune_then_restat(model: nn.Module, loader: DataLoader, device: str | torch.device | None, seed: int,
                          finetune_kw: dict[str, Any], adapt: dict[str, Any] | None,
                          safeguard: dict[str, Any] | None = None) -> SafeguardRecord:
    """bn_finetune through :func:`finetune`; then, when `finetune['reestimate_stats']` (default True), the
    running statistics are re-estimated for the final gamma/beta with `bn_adapt(**adapt)`: the momentum
    averages gathered during training follow the last few noisy batches and lag behind the parameters
    that produced them. Weights and gamma/beta are untouched by that step. `safeguard` holds
    ``SafeguardSettings`` keys; None (or a holdout_fraction of 0) is Paper 1's setting: `bn_finetune` on
    every image, its last state."""
    guard = SafeguardSettings(**safeguard) if safeguard else SafeguardSettings(holdout_fraction=0.0)
    if guard.holdout_fraction == 0:
        finetune_kw = dict(finetune_kw)
        reestimate = finetune_kw.pop("reestimate_stats", BnFinetuneSettings.reestimate_stats)
        bn_finetune(model, loader, device=device, seed=seed, **finetune_kw)
        if reestimate:
            bn_adapt(model, loader, device=device, **(adapt or {}))
        return SafeguardRecord(train_images=len(loader.dataset))  # type: ignore[arg-type]
    params = bn_parameters(model)
    if not params:
        raise ValueError("bn_finetune: the model has no affine BatchNorm parameters")
    kw = {"reestimate_stats": BnFinetuneSettings.reestimate_stats, "epochs": BnFinetuneSettings.epochs,
          "lr": BnFinetuneSettings.lr, "lr_step_epochs": BnFinetuneSettings.lr_step_epochs,
          "lr_gamma": BnFinetuneSettings.lr_gamma, "optimizer": BnFinetuneSettings.optimizer, **finetune_kw}
    return finetune(model, loader, params, adapt=adapt, holdout_fraction=guard.holdout_fraction, device=device,
                    seed=seed, desc="bn_finetune", **kw)


def _adapter_finetune(method: str, model: nn.Module, loader: DataLoader, device: str | torch.device | None,
                      seed: int, adapter: dict[str, Any], adapt: dict[str, Any] | None,
                      safeguard: dict[str, Any] | None, max_batches: int | None, progress: bool
                      ) -> tuple[SafeguardRecord, int]:
    """Attach LoRA or VeRA of ``adapter['rank']`` to every crossbar layer and train it (:func:`finetune`).
    Returns the safeguard record and the rank."""
    adapter = dict(adapter)
    rank = adapter.pop("rank")
    adapter.pop("param_budget_x_bn", None)
    adapter.pop("ranks", None)
    if method == "lora":
        cfg: LoraSettings = LoraSettings(**adapter, param_budget_x_bn=(), ranks=(rank,))
        params = add_lora(model, rank, seed)
    else:
        cfg = VeraSettings(**adapter, param_budget_x_bn=(), ranks=(rank,))
        assert isinstance(cfg, VeraSettings)
        params = add_vera(model, rank, cfg.matrix_seed, cfg.d_init)
    guard = SafeguardSettings(**safeguard) if safeguard else SafeguardSettings(holdout_fraction=0.0)
    record = finetune(model, loader, params, epochs=cfg.epochs, lr=cfg.lr, lr_step_epochs=cfg.lr_step_epochs,
                      lr_gamma=cfg.lr_gamma, optimizer=cfg.optimizer, reestimate_stats=cfg.reestimate_stats,
                      adapt=adapt, holdout_fraction=guard.holdout_fraction, device=device, seed=seed, desc=method,
                      max_batches=max_batches, progress=progress)
    return record, rank


def drift_compensation(model: nn.Module, loader: DataLoader, *, per_column: bool, n_batches: int | None,
                       device: str | torch.device | None = None) -> nn.Module:
    """aihwkit-style global drift compensation: an output scale on every crossbar layer (one, or one per
    column with ``per_column``), ``sum |ideal output| / sum |non-ideal output|`` over a calibration read
    of the first ``n_batches`` batches (None = all; ``dnn.adapters.estimate_output_scales``). Weights, BN
    untouched. The defaults live in ``DriftCompensationSettings`` (``apply_method`` fills them in)."""
    dev = resolve_device(device)
    model.to(dev)
    scales = add_output_scales(model, per_column)
    found = estimate_output_scales(model, scales, loader, n_batches, dev)
    logger.info("drift_compensation: %s", {k: (v[0] if len(v) == 1 else f"{len(v)} columns") for k, v in found.items()})
    return model.eval()


# ----------------------------------------------------------------------------- what a chip stores
def _numel_bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def bn_statistics(model: nn.Module) -> list[torch.Tensor]:
    """Running mean and variance of every BN with running statistics."""
    return [t for m in batchnorm_layers(model) if m.track_running_stats
            for t in (m.running_mean, m.running_var) if t is not None]


def stored_per_chip(method: str, model: nn.Module) -> tuple[int, int]:
    """(trained parameters, bytes stored per deployed chip) of ``method`` applied to ``model`` (the model
    after the method). A chip stores what the method made specific to it, beside the software model every
    chip shares: BN running mean/var for every method that re-estimates or trains with BN in train mode;
    gamma/beta for the BN fine-tunes; the adapters' trained tensors (LoRA A and B; VeRA's vectors d and
    b: its frozen matrices come from a seed every chip shares); the output scales of drift compensation;
    every parameter for retraining. Bytes at the tensors' own element size (float32: 4)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {list(METHODS)}")
    adapters = list(attached(model).values())
    bn_affine = bn_parameters(model)
    trained: list[torch.Tensor] = {
        "none": [], "bn_adapt": [], "drift_compensation": [], "bn_finetune": bn_affine, "adapt_finetune": bn_affine,
        "lora": [p for a in adapters for p in a.parameters()], "vera": [p for a in adapters for p in a.parameters()],
        "retrain": [p for n, p in model.named_parameters() if ".adapter." not in f".{n}"],
    }[method]
    stored = list(trained)
    if method in ("bn_adapt", "bn_finetune", "adapt_finetune", "lora", "vera", "retrain"):
        stored += bn_statistics(model)
    if method == "drift_compensation":
        stored += [b for a in adapters for b in a.buffers()]
    return sum(p.numel() for p in trained), _numel_bytes(stored)


METHODS = ("none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain", "drift_compensation", "lora", "vera")
"""'adapt_finetune' = bn_adapt, then bn_finetune starting from the adapted statistics."""


def apply_method(method: str, model: nn.Module, loader: DataLoader, device: str | torch.device | None = None,
                 seed: int = 0, **kwargs: Any) -> tuple[nn.Module, Cost, int]:
    """Run one mitigation method by name on `model` (in place). Returns (model, cost, number of
    parameters the method trains). kwargs go to the procedure: 'bn_adapt' takes bn_adapt's keywords
    (n_batches, n_draws); 'bn_finetune' and 'adapt_finetune' take `finetune={...}` (bn_finetune's
    keywords plus `reestimate_stats`), `adapt={...}` and `safeguard={...}` (``SafeguardSettings``; without
    it, Paper 1's setting: no holdout, the last state; the workflow passes its settings, holdout 0.2);
    'retrain' takes retrain's keywords and `adapt={...}`; 'drift_compensation' takes `per_column`,
    `n_batches`; 'lora' and 'vera' take `adapter={'rank': r, ...}` (``LoraSettings`` / ``VeraSettings``
    training keys), `adapt`, `safeguard`, `max_batches`, `progress`. Every method that trains ends with
    a BN re-estimate (settings in `adapt`) so the running statistics match the final parameters.

    ``cost.extra`` gets ``trained_parameters``; ``cost.bytes_per_chip`` (:func:`stored_per_chip`),
    ``cost.calibration_images`` (the loader's dataset) and ``cost.details`` (the fine-tunes' ``safeguard``,
    :class:`SafeguardRecord`; lora/vera's ``rank``) are set."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {list(METHODS)}")
    with measure_cost(device) as cost:
        record: SafeguardRecord | None = None
        if method == "bn_adapt":
            bn_adapt(model, loader, device=device, **kwargs)
        elif method == "bn_finetune":
            record = _finetune_then_restat(model, loader, device, seed, kwargs.get("finetune", {}),
                                           kwargs.get("adapt"), kwargs.get("safeguard"))
        elif method == "adapt_finetune":
            bn_adapt(model, loader, device=device, **kwargs.get("adapt", {}))
            record = _finetune_then_restat(model, loader, device, seed, kwargs.get("finetune", {}),
                                           kwargs.get("adapt"), kwargs.get("safeguard"))
        elif method == "retrain":
            # Running statistics gathered while every weight moves lag behind the final weights:
            # re-estimate them for the retrained network (as after any retraining).
            retrain(model, loader, device=device, seed=seed, **{k: v for k, v in kwargs.items() if k != "adapt"})
            bn_adapt(model, loader, device=device, **kwargs.get("adapt", {}))
        elif method == "drift_compensation":
            drift_compensation(model, loader, device=device, **{**asdict(DriftCompensationSettings()), **kwargs})
        elif method in ("lora", "vera"):
            record, rank = _adapter_finetune(method, model, loader, device, seed, kwargs["adapter"],
                                             kwargs.get("adapt"), kwargs.get("safeguard"),
                                             kwargs.get("max_batches"), kwargs.get("progress", True))
            cost.details["rank"] = rank
    n_trained, n_bytes = stored_per_chip(method, model)
    cost.extra["trained_parameters"] = n_trained
    cost.bytes_per_chip = n_bytes
    cost.calibration_images = len(loader.dataset) if method != "none" else 0  # type: ignore[arg-type]
    if record is not None:
        cost.details["safeguard"] = record.to_dict()
    logger.info("%s: %.2f s, peak memory %.1f MiB (%s), %d trained parameters, %d bytes per chip", method,
                cost.wall_s, cost.peak_memory_bytes / 2**20, cost.memory_kind, n_trained, n_bytes)
    return model, cost, n_trained



# ----------------------------------------------------------------------------- what one evaluation runs
@dataclass(frozen=True)
class MethodVariant:
    """One method at one calibration size (and, for lora/vera, one rank): one entry of the result."""

    label: str
    """The result's key: the method name, ``_r<rank>`` for lora/vera, ``_n<images>`` in a calibration sweep."""
    method: str
    calibration_images: int | None
    """Calibration images (None = the whole training split)."""
    rank: int | None = None
    budgets_x_bn: tuple[float, ...] = ()
    """The parameter budgets (x BN's gamma/beta count) this rank stands for."""


def method_variants(settings: EvaluationSettings, model: nn.Module) -> list[MethodVariant]:
    """Every (method, calibration size, rank) ``settings`` asks for on the converted ``model``: ranks from
    ``param_budget_x_bn`` x the model's BN gamma/beta count (nearest rank, clamped to the admissible
    range with a warning) and the explicit ``ranks`` (ValueError naming the key when out of range);
    equal ranks run once. 'none' uses no calibration data and runs once."""
    shapes = layer_shapes(model)
    n_bn = sum(p.numel() for p in bn_parameters(model))
    sizes = settings.calibration_image_counts()
    sweep = bool(settings.calibration_sizes)
    out: list[MethodVariant] = []
    for method in settings.methods:
        ranks: dict[int, list[float]] = {}
        if method in ("lora", "vera"):
            cfg: LoraSettings = settings.lora if method == "lora" else settings.vera
            for r in cfg.ranks:
                try:
                    check_rank(method, shapes, r)
                except ValueError as exc:
                    raise ValueError(f"evaluation.{method}.ranks: {exc}") from None
                ranks.setdefault(r, [])
            for x in cfg.param_budget_x_bn:
                r, clamped = rank_for_budget(method, shapes, x * n_bn)
                if clamped:
                    logger.warning("%s: a budget of %g x %d BN parameters is out of reach; rank %d instead", method,
                                   x, n_bn, r)
                ranks.setdefault(r, []).append(x)
        for n in (sizes[:1] if method == "none" else sizes):
            n_label = f"_n{n}" if sweep and method != "none" else ""
            if ranks:
                out += [MethodVariant(f"{method}_r{r}{n_label}", method, n, r, tuple(b)) for r, b in sorted(ranks.items())]
            else:
                out.append(MethodVariant(f"{method}{n_label}", method, None if method == "none" and sweep else n))
    return out
