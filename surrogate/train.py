"""Train a surrogate on the training split: seeded, Adam, early stopping on the validation split.

The ``ridge`` design has no gradient training: it is fitted in closed form on the training split
(:meth:`surrogate.ridge.RidgeMVM.init_from_data`). ``design: auto`` trains every design of
``candidates`` with the same settings and keeps the one with the lowest RMS error on the validation
split (never the test split, which the fidelity report keeps for held-out numbers).

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
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from surrogate.data import Split, SplitDataset
from surrogate.models import SurrogateMVM, build_model
from surrogate.params import AUTO, TrainParams, TrainParamsError  # noqa: F401  (re-exported)
from surrogate.physics import TileSpec

log = logging.getLogger(__name__)


class TrainingDivergedError(ValueError):
    """The loss became NaN or infinite: no surrogate is written (the data or the settings are at fault)."""


class TooLittleDataError(ValueError):
    """The validation error of a design started from random weights never fell during training: no surrogate
    is written, and the message says how much more data the design needs (or, when the training error did
    not fall either, which setting). A design that starts at a physics prior keeps the prior, with a warning."""


NOTHING_TO_LEARN_FS = 1e-5
"""A design whose starting validation error (e.g. the transfer design's physics prior on a linear array)
is already below this fraction of full scale has nothing left to learn: not falling is no underfit."""
TRAIN_FELL_FRACTION = 0.9
"""The training error fell when its last epoch's is below this fraction of the untrained weights'."""


def underfit_message(design: str, history: dict[str, Any], n_matrices: int, n_train_matrices: int, where: str
                     ) -> str | None:
    """Why the kept weights are the untrained ones (None when training improved on them or there was
    nothing to learn): the validation error never fell below its start. When the training error fell,
    the training matrices do not determine the design: the message asks for at least twice the
    training matrices (``sampling.n_conductance``, the whole dataset doubled), else for more epochs or
    another ``lr``."""
    start = float(history["initial_val_rms_fs"])
    if history["best_epoch"] != 0 or not history["n_val_samples"] or not start > NOTHING_TO_LEARN_FS:
        return None
    first, last = history["initial_train_rms_fs"], history["final_train_rms_fs"]
    head = (f"{where}: the {design} surrogate's validation error never fell below its initial {start:.3e} of "
            f"full scale in {history['epochs_run']} epochs: ")
    if last < TRAIN_FELL_FRACTION * first:
        return head + (f"the training error fell ({first:.3e} -> {last:.3e}), so {n_train_matrices} training "
                       f"matrices are too few for this design: simulate at least {n_matrices} more "
                       f"(sampling.n_conductance >= {2 * n_matrices}) or choose surrogate.design ridge")
    return head + (f"the training error did not fall either ({first:.3e} -> {last:.3e}): raise surrogate.epochs "
                   f"or change surrogate.lr")


CLOSED_FORM = ("ridge", "cell_iv")
"""Designs fitted in closed form (no epochs)."""

SELECTION_RULE = "lowest validation rms_fs"
"""How ``design: auto`` chooses (RMS error on the validation split as a fraction of full scale; on equal
errors the candidate listed first)."""


@dataclass
class TrainResult:
    """A trained model and how training went."""

    model: SurrogateMVM
    history: dict[str, Any]
    selection: Selection | None = None
    """``design: auto``: every candidate trained and which was kept (``model`` is the chosen one)."""


@dataclass
class Selection:
    """How ``design: auto`` chose: each candidate's training result, by design, in the order of ``candidates``."""

    results: dict[str, TrainResult]
    chosen: str
    left_out: dict[str, str] | None = None
    """Candidates whose validation error never fell (:class:`TooLittleDataError`), with the message."""

    @property
    def val_rms_fs(self) -> dict[str, float]:
        """The validation error of each candidate (of the weights it kept), fraction of full scale."""
        return {design: float(r.history["best_val_rms_fs"]) for design, r in self.results.items()}

    def reason(self) -> str:
        val = self.val_rms_fs
        others = ", ".join(f"{d} {val[d]:.3e}" for d in self.results if d != self.chosen)
        left = "".join(f"; {d} left out: its validation error never fell" for d in (self.left_out or {}))
        return (f"{self.chosen} has the lowest validation RMS error, {val[self.chosen]:.3e} of full scale"
                + (f" ({others})" if others else " (the only candidate)") + left)

    def to_dict(self) -> dict[str, Any]:
        """json-able: rule, candidates, chosen, reason, each candidate's validation error and history."""
        return {"rule": SELECTION_RULE, "candidates": list(self.results), "chosen": self.chosen,
                "reason": self.reason(), "val_rms_fs": self.val_rms_fs,
                "histories": {d: r.history for d, r in self.results.items()}, "left_out": dict(self.left_out or {})}


def resolve_v_order(params: TrainParams, all_linear: bool) -> int:
    if params.v_order != "auto":
        return int(params.v_order)
    return 1 if all_linear else 3


def make_model(params: TrainParams, tile: TileSpec, all_linear: bool) -> SurrogateMVM:
    """The untrained model that ``params`` describe."""
    if params.design == "mlp":
        return build_model("mlp", tile, hidden=params.hidden)
    if params.design in ("ridge", "cell_iv"):
        return build_model(params.design, tile)
    return build_model("transfer", tile, cell_hidden=params.cell_hidden,
                       v_order=resolve_v_order(params, all_linear), v_basis=params.v_basis)


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
    """Train a surrogate of ``params.design`` on ``splits.train``; early stopping on ``splits.val``.

    ``ridge`` and ``cell_iv`` are fitted in closed form; ``auto`` trains every design of ``params.candidates`` and keeps
    the one with the lowest validation error (:class:`Selection` in the result).
    """
    if params.design == AUTO:
        return _train_auto(splits, params, progress)
    if params.design in CLOSED_FORM:
        return _fit_closed_form(splits, params)
    return _train_gradient(splits, params, progress)


def _train_auto(splits: SplitDataset, params: TrainParams, progress: bool) -> TrainResult:
    results: dict[str, TrainResult] = {}
    left_out: dict[str, str] = {}
    for n, design in enumerate(params.candidates, 1):
        log.info("design auto: candidate %d of %d: %s", n, len(params.candidates), design)
        try:
            results[design] = train(splits, params.for_design(design), progress)
        except TooLittleDataError as e:
            log.warning("design auto: candidate %s left out: %s", design, e)
            left_out[design] = str(e)
    if not results:
        raise TooLittleDataError("design auto: no candidate's validation error fell; " + " | ".join(left_out.values()))

    def val_error(design: str) -> float:
        value = float(results[design].history["best_val_rms_fs"])
        return value if math.isfinite(value) else math.inf

    chosen = min(results, key=val_error)  # the first listed on equal errors
    selection = Selection(results=results, chosen=chosen, left_out=left_out)
    log.info("design auto: %s", selection.reason())
    best = results[chosen]
    return TrainResult(model=best.model, history={**best.history, "selection": selection.to_dict()},
                       selection=selection)


def _fit_closed_form(splits: SplitDataset, params: TrainParams) -> TrainResult:
    """The ``ridge`` and ``cell_iv`` designs: one closed-form fit on the training split, measured on the
    validation split."""
    tile = TileSpec.from_circuit(splits.spec)
    model = make_model(params, tile, splits.all_linear)
    t0 = time.perf_counter()
    model.init_from_circuit(splits.spec)
    model.init_from_data(splits.train)
    model.eval()
    val_t = _Tensors(splits.val, tile.full_scale_a)
    val = _rms_n(model, val_t)
    if val_t.n and not np.isfinite(val):
        raise TrainingDivergedError(f"{splits.path or 'dataset'}: the {params.design} fit gives a validation error of {val}; "
                                    "no surrogate written (check the dataset with python -m spice inspect)")
    seconds = time.perf_counter() - t0
    history = {
        "epochs_run": 0,
        "best_epoch": 0,
        "initial_val_rms_fs": val,
        "best_val_rms_fs": val,
        "train_seconds": round(seconds, 3),
        "n_train_samples": splits.train.n_samples,
        "n_val_samples": val_t.n,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "torch_threads": torch.get_num_threads(),
        "lr": None,
        "weight_decay": None,
        "v_order": None,
    }
    log.info("fitted %s in %.1f s: val rms %.3e of full scale", params.design, seconds, val)
    return TrainResult(model=model, history=history)


def _train_gradient(splits: SplitDataset, params: TrainParams, progress: bool) -> TrainResult:
    """The neural designs: Adam with a cosine schedule, early stopping on the validation split."""
    tile = TileSpec.from_circuit(splits.spec)
    gen = torch.Generator().manual_seed(params.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        model = make_model(params, tile, splits.all_linear)
    model.init_from_circuit(splits.spec)
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
    start_train = _rms_n(model, train_t)
    best_val, best_epoch, best_state = start_val, 0, copy.deepcopy(model.state_dict())
    log.info("training %s surrogate (%d parameters) on %d samples of %d matrices; initial val rms %.3e of full scale",
             params.design, sum(p.numel() for p in model.parameters()), train_t.n, splits.train.n_matrices,
             start_val)
    t0 = time.perf_counter()
    bar = tqdm(range(1, params.epochs + 1), desc=f"train {params.design}", unit="epoch", disable=not progress)
    epoch = 0
    train_rms: list[float] = []
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
        train_rms.append(math.sqrt(sq / max(count, 1)))
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
        "initial_train_rms_fs": start_train,
        "final_train_rms_fs": train_rms[-1] if train_rms else math.nan,
    }
    log.info("trained %s in %.1f s: val rms %.3e of full scale (initial %.3e), best epoch %d",
             params.design, seconds, best_val, start_val, best_epoch)
    n_matrices = splits.train.n_matrices + splits.val.n_matrices + splits.test.n_matrices
    underfit = underfit_message(params.design, history, n_matrices, splits.train.n_matrices,
                                splits.path or "dataset")
    history["improved_on_start"] = underfit is None
    if underfit is not None and not model.starts_at_physics_prior:
        raise TooLittleDataError(underfit + "; no surrogate written")
    if underfit is not None:
        log.warning("%s; kept the physics prior it started from", underfit)
    return TrainResult(model=model, history=history)
