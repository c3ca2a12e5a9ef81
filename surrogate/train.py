"""Train a surrogate on the training split: seeded, Adam, early stopping on the validation split.

Batches follow the structure of the data: the samples are ordered matrix by matrix (matrices and
the vectors within each in a seeded random order) and cut into batches of ``batch_size`` samples,
so a batch touches only a few conductance matrices and the G-only work (``fold``) is done once per
matrix per batch, as in the DNN loop. The loss is the mean squared column-current error as a
fraction of the full-scale current ``g_on * v_max * rows``. Adam with a cosine learning-rate
schedule (to lr/100 at ``epochs``); the weights with the best validation error are kept.
Deterministic for a given seed and torch thread count on CPU; the caller's global RNG state is
left untouched.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from surrogate.data import Split, SplitDataset
from surrogate.models import SurrogateMVM, build_model
from surrogate.params import TrainParams, TrainParamsError  # noqa: F401  (re-exported)
from surrogate.physics import TileSpec

log = logging.getLogger(__name__)


class TrainingDivergedError(ValueError):
    """The loss became NaN or infinite: no surrogate is written (the data or the settings are at fault)."""


@dataclass
class TrainResult:
    """A trained model and how training went."""

    model: SurrogateMVM
    history: dict[str, Any]


def resolve_v_order(params: TrainParams, all_linear: bool) -> int:
    if params.v_order != "auto":
        return int(params.v_order)
    return 1 if all_linear else 3


def make_model(params: TrainParams, tile: TileSpec, all_linear: bool) -> SurrogateMVM:
    """The untrained model that ``params`` describe."""
    if params.design == "mlp":
        return build_model("mlp", tile, hidden=params.hidden)
    return build_model("transfer", tile, cell_hidden=params.cell_hidden,
                       v_order=resolve_v_order(params, all_linear))


class _Tensors:
    """One split as float32 tensors (conductances in S, voltages in V, targets as fractions of full scale)."""

    def __init__(self, split: Split, full_scale_a: float) -> None:
        self.g_s = torch.as_tensor(split.g_s, dtype=torch.float32)
        self.g_index = torch.as_tensor(split.g_index, dtype=torch.long)
        self.v_v = torch.as_tensor(split.v_v, dtype=torch.float32)
        self.i_n = torch.as_tensor(split.i_a / full_scale_a, dtype=torch.float32)
        self.n = len(split.v_v)


def _predict_n(model: SurrogateMVM, data: _Tensors, sample_idx: torch.Tensor) -> torch.Tensor:
    """Normalized predictions for ``sample_idx``; folds each matrix the batch touches once."""
    g_idx = data.g_index[sample_idx]
    unique, inverse = torch.unique(g_idx, return_inverse=True)
    folded = model.fold(data.g_s[unique])
    gathered = tuple(t[inverse] for t in folded)
    return model.apply_n(gathered, data.v_v[sample_idx].unsqueeze(1))[:, 0]


def _batches(data: _Tensors, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    n_g = int(data.g_index.max()) + 1 if data.n else 0
    order_g = torch.randperm(n_g, generator=gen)
    rank = torch.empty(n_g, dtype=torch.long)
    rank[order_g] = torch.arange(n_g)
    jitter = torch.rand(data.n, generator=gen)
    order = torch.argsort(rank[data.g_index].double() + jitter.double())
    return list(torch.split(order, batch_size))


@torch.no_grad()
def _rms_n(model: SurrogateMVM, data: _Tensors, batch_size: int = 8192) -> float:
    if data.n == 0:
        return float("nan")
    idx = torch.argsort(data.g_index)
    sq = 0.0
    for part in torch.split(idx, batch_size):
        sq += float(((_predict_n(model, data, part) - data.i_n[part]) ** 2).sum())
    return float(np.sqrt(sq / (data.n * data.i_n.shape[1])))


def train(splits: SplitDataset, params: TrainParams, progress: bool = True) -> TrainResult:
    """Train a surrogate of ``params.design`` on ``splits.train``; early stopping on ``splits.val``."""
    tile = TileSpec.from_circuit(splits.spec)
    gen = torch.Generator().manual_seed(params.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        model = make_model(params, tile, splits.all_linear)
    model.init_from_data(splits.train)
    train_t = _Tensors(splits.train, tile.full_scale_a)
    val_t = _Tensors(splits.val, tile.full_scale_a)
    v_order = getattr(model, "v_order", None)  # transfer design only
    lr = params.learning_rate(v_order or 1)
    decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
    keep = [p for name, p in model.named_parameters() if not name.endswith("weight")]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": params.l2},
                            {"params": keep, "weight_decay": 0.0}], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=params.epochs, eta_min=lr / 100)
    start_val = _rms_n(model, val_t)
    if val_t.n and not np.isfinite(start_val):
        raise TrainingDivergedError(f"{splits.path or 'dataset'}: the initial validation error is {start_val}; "
                                    "no surrogate written (the data hold numbers the model cannot represent: "
                                    "check them with python -m spice inspect)")
    best_val, best_epoch, best_state = start_val, 0, copy.deepcopy(model.state_dict())
    log.info("training %s surrogate (%d parameters) on %d samples of %d matrices; initial val rms %.3e of full scale",
             params.design, sum(p.numel() for p in model.parameters()), train_t.n, splits.train.n_matrices,
             start_val)
    t0 = time.perf_counter()
    bar = tqdm(range(1, params.epochs + 1), desc=f"train {params.design}", unit="epoch", disable=not progress)
    epoch = 0
    for epoch in bar:
        model.train()
        sq, count = 0.0, 0
        for batch in _batches(train_t, params.batch_size, gen):
            loss = torch.mean((_predict_n(model, train_t, batch) - train_t.i_n[batch]) ** 2)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"{splits.path or 'dataset'}: the training loss became {float(loss)} at epoch {epoch}; "
                    f"no surrogate written (check the dataset with python -m spice inspect, or lower lr)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sq += float(loss.detach()) * len(batch)
            count += len(batch)
        model.eval()
        val = _rms_n(model, val_t)
        if val_t.n and not np.isfinite(val):
            raise TrainingDivergedError(
                f"{splits.path or 'dataset'}: the validation error became {val} at epoch {epoch}; "
                "no surrogate written (check the dataset with python -m spice inspect, or lower lr)")
        sched.step()
        if val < best_val * (1.0 - 1e-4):
            best_val, best_epoch, best_state = val, epoch, copy.deepcopy(model.state_dict())
        bar.set_postfix(train=f"{np.sqrt(sq / max(count, 1)):.2e}", val=f"{val:.2e}", best=f"{best_val:.2e}")
        if epoch >= params.epochs // 2 and epoch - best_epoch >= params.patience:
            log.info("early stop at epoch %d (best epoch %d)", epoch, best_epoch)
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    seconds = time.perf_counter() - t0
    history = {
        "epochs_run": epoch,
        "best_epoch": best_epoch,
        "initial_val_rms_fs": start_val,
        "best_val_rms_fs": best_val,
        "train_seconds": round(seconds, 3),
        "n_train_samples": train_t.n,
        "n_val_samples": val_t.n,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "torch_threads": torch.get_num_threads(),
        "lr": lr,
        "weight_decay": params.l2,
        "v_order": v_order,
    }
    log.info("trained %s in %.1f s: val rms %.3e of full scale (initial %.3e), best epoch %d",
             params.design, seconds, best_val, start_val, best_epoch)
    return TrainResult(model=model, history=history)
