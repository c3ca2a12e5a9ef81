"""Software-baseline training, evaluation, and saving/loading a trained model with its metadata.

Stopping rule of the software baseline (``TrainSettings.patience``): with a patience, a seeded share
``val_fraction`` of the training split is held out (:func:`split_validation`); after every epoch the
model is scored on it in eval mode (mean cross-entropy ``val_loss`` and ``val_accuracy``); training stops
once the monitored score has not improved (strictly) for ``patience`` epochs in a row, or after
``epochs`` epochs, and the weights (and BN running statistics) of the best epoch are restored. Without a
patience the model trains exactly ``epochs`` epochs on the whole training split (Paper 1's fixed
schedule). Both are reproducible bit for bit for the same seed, device and thread count.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from xbarchar.files import atomic_write_with
from xbarchar.progress import Progress

from .models import build_model
from .settings import MONITORS, TrainSettings

logger = logging.getLogger(__name__)

MODEL_FORMAT_VERSION = 1
MODEL_FILE_MAX_BYTES = 2 * 2**30
"""The largest model file read (checked before it is read; the largest model here is about 60 MB)."""


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None or 'auto' -> `default_device()`; otherwise torch.device(device)."""
    if device is None or device == "auto":
        return default_device()
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(dataset: Dataset, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """Single-process DataLoader; shuffling uses its own seeded generator."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=0)


def make_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """'adam' or 'sgd' (with momentum)."""
    params = list(params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: ['adam', 'sgd']")


def split_validation(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(training part, validation part) of ``dataset``: a seeded random ``val_fraction`` of its items
    (at least one, and at least one left to train on) held out, both parts in the dataset's order."""
    n = len(dataset)  # type: ignore[arg-type]
    if n < 2:
        raise ValueError(f"a validation split needs at least 2 training items, got {n}")
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val = np.sort(order[:n_val]).tolist()
    train = np.sort(order[n_val:]).tolist()
    return Subset(dataset, train), Subset(dataset, val)


def improved(value: float, best: float, monitor: str) -> bool:
    """Whether ``value`` of ``monitor`` is strictly better than ``best`` (loss: lower; accuracy: higher)."""
    if monitor not in MONITORS:
        raise ValueError(f"unknown monitor {monitor!r}; valid: {list(MONITORS)}")
    return value < best if monitor == "val_loss" else value > best


def best_epoch(history: list[dict[str, float]], monitor: str = "val_loss") -> int:
    """The epoch (1-based) whose weights early stopping kept: the first with the best ``monitor``."""
    if monitor not in MONITORS:
        raise ValueError(f"unknown monitor {monitor!r}; valid: {list(MONITORS)}")
    best = 0
    for k, rec in enumerate(history):
        if k == 0 or improved(rec[monitor], history[best][monitor], monitor):
            best = k
    return history[best]["epoch"] if history else 0


@torch.no_grad()
def validation_scores(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of ``model`` in eval mode on ``loader``."""
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        total += len(y)
    return loss_sum / max(total, 1), correct / max(total, 1)


def fit(model: nn.Module, loader: DataLoader, params: Iterable[nn.Parameter], epochs: int, lr: float,
        optimizer: str = "adam", momentum: float = 0.9, weight_decay: float = 0.0,
        lr_step_epochs: int | None = None, lr_gamma: float = 0.1, device: str | torch.device | None = None,
        seed: int = 0, set_mode: Callable[[nn.Module], None] | None = None, max_batches: int | None = None,
        desc: str = "train", progress: bool = True, val_loader: DataLoader | None = None,
        patience: int | None = None, monitor: str = "val_loss") -> list[dict[str, float]]:
    """Cross-entropy training of `params` only. `set_mode(model)` is called at the start of each epoch
    (default `model.train()`). Seeds torch/numpy/random and re-seeds the loader's shuffling generator
    with `seed`, so a call is reproducible on CPU. Returns per-epoch {'epoch', 'loss', 'train_accuracy',
    'lr'}, plus 'val_loss' and 'val_accuracy' with a `val_loader`.

    With a `val_loader`, the model is scored on it (eval mode) after every epoch; with a `patience` as
    well, training stops once `monitor` ('val_loss' or 'val_accuracy') has not improved for `patience`
    epochs, and in either case the state of the best epoch (:func:`best_epoch`) is restored at the end:
    every parameter and buffer, BN running statistics included."""
    if patience is not None and val_loader is None:
        raise ValueError("fit: early stopping (patience) needs a val_loader")
    if monitor not in MONITORS:
        raise ValueError(f"unknown monitor {monitor!r}; valid: {list(MONITORS)}")
    device = resolve_device(device)
    seed_everything(seed)
    if isinstance(getattr(loader, "generator", None), torch.Generator):
        loader.generator.manual_seed(seed)  # same shuffling order for the same seed
    model.to(device)
    opt = make_optimizer(params, optimizer, lr, momentum, weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, lr_step_epochs, lr_gamma) if lr_step_epochs else None
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_value, since_best = math.nan, 0
    n_batches = len(loader) if max_batches is None else min(len(loader), max_batches)
    with Progress(epochs * n_batches, desc, "batch", enabled=progress, logger=logger) as bar:
        for epoch in range(epochs):
            (set_mode or (lambda m: m.train()))(model)
            bar.set_stage(f"{desc} epoch {epoch + 1}/{epochs}")
            total, correct, loss_sum = 0, 0, 0.0
            for b, (x, y) in enumerate(loader):
                if b >= n_batches:
                    break
                x, y = x.to(device), y.to(device)
                opt.zero_grad(set_to_none=True)
                out = model(x)
                loss = loss_fn(out, y)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(y)
                correct += (out.argmax(1) == y).sum().item()
                total += len(y)
                bar.advance(1, f"loss {loss_sum / total:.4f}")
            rec = {"epoch": epoch + 1, "loss": loss_sum / max(total, 1), "train_accuracy": correct / max(total, 1),
                   "lr": opt.param_groups[0]["lr"]}
            history.append(rec)
            logger.info("%s epoch %d/%d: loss %.4f, train accuracy %.4f, lr %.3g", desc, epoch + 1, epochs,
                        rec["loss"], rec["train_accuracy"], rec["lr"])
            if sched is not None:
                sched.step()
            if val_loader is None:
                continue
            rec["val_loss"], rec["val_accuracy"] = validation_scores(model, val_loader, device)
            logger.info("%s epoch %d: validation loss %.4f, validation accuracy %.4f", desc, epoch + 1,
                        rec["val_loss"], rec["val_accuracy"])
            if best_state is None or improved(rec[monitor], best_value, monitor):
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best_value = rec[monitor]
                since_best = 0
            else:
                since_best += 1
                if patience is not None and since_best >= patience:
                    logger.info("%s: %s has not improved for %d epochs: stopped after epoch %d", desc, monitor,
                                patience, epoch + 1)
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
        logger.info("%s: kept epoch %d (best %s)", desc, best_epoch(history, monitor), monitor)
    return history


def train_model(model: nn.Module, loader: DataLoader, epochs: int = TrainSettings.epochs,
                lr: float = TrainSettings.lr, optimizer: str = TrainSettings.optimizer,
                weight_decay: float = TrainSettings.weight_decay, device: str | torch.device | None = None,
                seed: int = TrainSettings.seed, progress: bool = True, val_loader: DataLoader | None = None,
                patience: int | None = TrainSettings.patience, monitor: str = TrainSettings.monitor
                ) -> list[dict[str, float]]:
    """Software-baseline training of all parameters (cross-entropy). Returns the per-epoch history.
    With `patience`, early stopping on `val_loader` (see the module docstring and :func:`fit`)."""
    return fit(model, loader, model.parameters(), epochs, lr, optimizer=optimizer, weight_decay=weight_decay,
               device=device, seed=seed, desc="train", progress=progress, val_loader=val_loader,
               patience=patience, monitor=monitor)


def train_software_model(model: nn.Module, train_data: Dataset, settings: TrainSettings,
                         device: str | torch.device | None = None, progress: bool = True
                         ) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Train ``model`` on ``train_data`` as ``settings`` say: a fixed number of epochs on all of it, or
    (with ``settings.patience``) the stopping rule of the module docstring on a seeded validation split.
    Returns (history, stopping record: rule, epochs run, epoch kept, sizes of the splits)."""
    if settings.patience is None:
        loader = make_loader(train_data, settings.batch_size, shuffle=True, seed=settings.seed)
        history = train_model(model, loader, settings.epochs, settings.lr, settings.optimizer,
                              settings.weight_decay, device, settings.seed, progress=progress, patience=None)
        return history, {"rule": "fixed_epochs", "epochs_run": len(history), "epoch_kept": len(history),
                         "n_fit": len(train_data), "n_validation": 0}  # type: ignore[arg-type]
    fit_part, val_part = split_validation(train_data, settings.val_fraction, settings.seed)
    loader = make_loader(fit_part, settings.batch_size, shuffle=True, seed=settings.seed)
    val_loader = make_loader(val_part, 256)
    history = train_model(model, loader, settings.epochs, settings.lr, settings.optimizer, settings.weight_decay,
                          device, settings.seed, progress=progress, val_loader=val_loader,
                          patience=settings.patience, monitor=settings.monitor)
    kept = best_epoch(history, settings.monitor)
    return history, {"rule": "early_stopping", "monitor": settings.monitor, "patience": settings.patience,
                     "max_epochs": settings.epochs, "epochs_run": len(history), "epoch_kept": kept,
                     "stopped_early": len(history) < settings.epochs, "n_fit": len(fit_part),
                     "n_validation": len(val_part), "best_" + settings.monitor: history[kept - 1][settings.monitor]}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: str | torch.device | None = None) -> float:
    """Top-1 accuracy in [0, 1] in eval mode."""
    device = resolve_device(device)
    model.to(device).eval()
    correct, total = 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    return correct / max(total, 1)


def save_model(path: str | Path, model: nn.Module, model_name: str, model_kwargs: dict[str, Any],
               dataset: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> Path:
    """Save weights plus what is needed to rebuild the model (`build_model(model_name, **model_kwargs)`),
    written atomically (temp file + rename)."""
    path = Path(path)
    payload = {
        "format_version": MODEL_FORMAT_VERSION,
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs),
        "dataset": dict(dataset or {}),
        "metrics": dict(metrics or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    atomic_write_with(path, lambda buffer: torch.save(payload, buffer))
    return path


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by `save_model`. Returns (model in eval mode, metadata without weights).

    The file is untrusted: its size is checked first, it is read with ``weights_only=True`` (no code
    runs), and the model it names is first built on the meta device (no memory) and must have exactly
    the weights' shapes, each stored in full (no expanded views), so a file cannot make the rebuild
    allocate more than its own weights."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: model file does not exist (write one with python -m dnn train)")
    if p.stat().st_size > MODEL_FILE_MAX_BYTES:
        raise ValueError(f"{path}: {p.stat().st_size} bytes, above the limit of {MODEL_FILE_MAX_BYTES} for a model "
                         "file (MODEL_FILE_MAX_BYTES)")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a model file written by python -m dnn train ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a model file written by python -m dnn train")
    version = payload.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise ValueError(f"{path}: model file format_version {version!r} is not supported "
                         f"(expected {MODEL_FORMAT_VERSION})")
    name, kwargs, state = payload.get("model_name"), payload.get("model_kwargs"), payload.get("state_dict")
    if not (isinstance(name, str) and isinstance(kwargs, dict) and isinstance(state, dict)):
        raise ValueError(f"{path}: expected model_name, model_kwargs and state_dict (python -m dnn train)")
    try:
        with torch.device("meta"):
            skeleton = build_model(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: model_name {name!r} / model_kwargs {kwargs}: {exc}") from None
    thin = sorted(k for k, v in state.items() if isinstance(v, torch.Tensor)
                  and v.untyped_storage().nbytes() < v.numel() * v.element_size())
    if thin:  # an expanded or strided view: a few stored bytes that stand for a far larger tensor
        raise ValueError(f"{path}: weight {thin[0]!r} holds fewer stored bytes than its shape needs; a model file "
                         "stores every weight in full (python -m dnn train)")
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    got = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
    if got != expected:
        wrong = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        raise ValueError(f"{path}: its weights do not fit {name} {kwargs} (first of {len(wrong)} mismatches: "
                         f"{wrong[0]!r})")
    model = build_model(name, **kwargs)
    model.load_state_dict(state)
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.eval(), meta
