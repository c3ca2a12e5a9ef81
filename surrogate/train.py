"""Train a surrogate on the training split: seeded, Adam, early stopping on the validation split.

The ``ridge`` and ``cell_iv`` designs have no gradient training: they are fitted in closed form on the
training split (:meth:`surrogate.ridge.RidgeMVM.init_from_data`). ``design: auto`` (the default) chooses
per circuit among ``candidates``, all with the same settings: it fits the closed-form ones first and
trains the others (transfer, mlp) only when no closed-form candidate is ``closed_form_target_x`` times
better than the ideal model on both the validation matrices and their DNN-like ones; the candidate with
the lowest :func:`selection_score` (the worse of its two error ratios to the ideal model) is kept. The
test split is never used (the fidelity report keeps it for held-out numbers).

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

from surrogate.data import Split, SplitDataset
from surrogate.models import SurrogateMVM, build_model
from surrogate.params import AUTO, TrainParams, TrainParamsError  # noqa: F401  (re-exported)
from surrogate.physics import TileSpec
from xbarchar.progress import Progress

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
"""Designs fitted in closed form (no epochs): ``design: auto`` fits them first."""

LINEAR_SKIPS_CELL_IV = ("linear array (every matrix passed ngspice's linearity check): the cell's I-V is a line, "
                        "and cell_iv is no better than ridge there")
"""Why ``design: auto`` does not fit cell_iv on a linear array (its ngspice I-V sweep would cost as much as
training transfer on a small array, for no gain: bench/default_design.py)."""

SELECTION_RULE = ("score = the worse of (RMS error / the ideal model's RMS error) on the validation matrices and "
                  "on their DNN-like matrices; closed-form candidates first, the others trained only when the best "
                  "closed-form score misses 1/closed_form_target_x; lowest score wins, the first listed on a tie")
"""How ``design: auto`` chooses (:func:`selection_score`, :class:`Selection`)."""


def _rms_ratio(pred_a: np.ndarray, true_a: np.ndarray, ideal_a: np.ndarray, full_scale_a: float
               ) -> tuple[float, float]:
    """(RMS error, the ideal model's RMS error), fractions of full scale; NaN on no samples."""
    if len(true_a) == 0:
        return math.nan, math.nan
    return (float(np.sqrt(np.mean((pred_a - true_a) ** 2))) / full_scale_a,
            float(np.sqrt(np.mean((ideal_a - true_a) ** 2))) / full_scale_a)


def selection_score(model: SurrogateMVM, splits: SplitDataset) -> dict[str, Any]:
    """How well ``model`` does on the validation split, next to the ideal model v.G, on all its matrices and
    on its DNN-like ones (``splits.dnn_like_g_rows``: the tiles and sparse reads the DNN stage sees).

    ``score`` is the worse (larger) of the two ratios error / ideal error: a candidate must do well on
    both, and the ratio puts the two sets on one footing (the ideal model errs far less on sparse DNN
    reads than on dense uniform ones). With no DNN-like validation matrix, the validation ratio alone.
    """
    from surrogate.models import predict_a  # torch model evaluation, same as the fidelity report

    val = splits.val
    pred = predict_a(model, val.g_s, val.g_index, val.v_v)
    fs = model.full_scale_a
    val_rms, val_ideal = _rms_ratio(pred, val.i_a, val.i_ideal_a, fs)
    dnn = np.isin(val.g_rows[val.g_index], np.asarray(splits.dnn_like_g_rows, dtype=np.int64))
    dnn_rms, dnn_ideal = _rms_ratio(pred[dnn], val.i_a[dnn], val.i_ideal_a[dnn], fs)
    ratios = [r for r in (val_rms / val_ideal if val_ideal > 0 else math.nan,
                          dnn_rms / dnn_ideal if dnn_ideal > 0 else math.nan) if math.isfinite(r)]
    score = max(ratios) if len(ratios) == (2 if dnn.any() else 1) else math.inf
    return {"score": score, "val_rms_fs": val_rms, "val_ideal_rms_fs": val_ideal,
            "val_x_better_than_ideal": val_ideal / val_rms if val_rms > 0 else math.inf,
            "dnn_like_rms_fs": dnn_rms, "dnn_like_ideal_rms_fs": dnn_ideal,
            "dnn_like_x_better_than_ideal": dnn_ideal / dnn_rms if dnn_rms > 0 else math.nan,
            "n_val_samples": int(len(val.v_v)), "n_dnn_like_samples": int(dnn.sum()),
            "n_dnn_like_matrices": int(len(np.unique(val.g_index[dnn])))}


@dataclass
class TrainResult:
    """A trained model and how training went."""

    model: SurrogateMVM
    history: dict[str, Any]
    selection: Selection | None = None
    """``design: auto``: every candidate trained and which was kept (``model`` is the chosen one)."""


@dataclass
class Selection:
    """How ``design: auto`` chose: each trained candidate's result and score, by design, in the order of
    ``candidates``."""

    results: dict[str, TrainResult]
    chosen: str
    scores: dict[str, dict[str, Any]]
    """:func:`selection_score` of each trained candidate."""
    target_x: float
    """``closed_form_target_x``: a closed-form candidate this many times better than ideal on both sets stops the search."""
    not_trained: dict[str, str] | None = None
    """Candidates the search never trained, with why (a closed-form candidate met the target)."""
    left_out: dict[str, str] | None = None
    """Candidates whose validation error never fell (:class:`TooLittleDataError`), with the message."""
    seconds: dict[str, float] | None = None
    """Wall time of each trained candidate (s)."""

    @property
    def val_rms_fs(self) -> dict[str, float]:
        """The validation error of each candidate (of the weights it kept), fraction of full scale."""
        return {design: float(r.history["best_val_rms_fs"]) for design, r in self.results.items()}

    def reason(self) -> str:
        def worst_x(design: str) -> str:
            return f"{1.0 / self.scores[design]['score']:.0f}x"

        s = self.scores[self.chosen]
        dnn = (f" and {s['dnn_like_x_better_than_ideal']:.0f}x on {s['n_dnn_like_matrices']} DNN-like matrices"
               if s["n_dnn_like_samples"] else " (no DNN-like validation matrix: held-out only)")
        others = ", ".join(f"{d} {worst_x(d)}" for d in self.results if d != self.chosen)
        text = (f"{self.chosen} has the lowest score, {s['val_x_better_than_ideal']:.0f}x better than ideal "
                f"on validation{dnn}" + (f" (the worse of the two for the others: {others})" if others else " (the only candidate)"))
        for design, why in (self.not_trained or {}).items():
            text += f"; {design} not trained: {why}"
        return text + "".join(f"; {d} left out: its validation error never fell" for d in (self.left_out or {}))

    def to_dict(self) -> dict[str, Any]:
        """json-able: rule, target, candidates trained, chosen, reason, each candidate's scores and history."""
        return {"rule": SELECTION_RULE, "closed_form_target_x": self.target_x, "candidates": list(self.results),
                "chosen": self.chosen, "reason": self.reason(), "val_rms_fs": self.val_rms_fs,
                "scores": self.scores, "train_seconds": dict(self.seconds or {}),
                "not_trained": dict(self.not_trained or {}),
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

    ``ridge`` and ``cell_iv`` are fitted in closed form; ``auto`` fits the closed-form designs of
    ``params.candidates`` first, trains the others only when none of those meets ``closed_form_target_x``, and
    keeps the one with the lowest :func:`selection_score` (:class:`Selection` in the result).
    """
    if params.design == AUTO:
        return _train_auto(splits, params, progress)
    if params.design in CLOSED_FORM:
        return _fit_closed_form(splits, params)
    return _train_gradient(splits, params, progress)


def _train_auto(splits: SplitDataset, params: TrainParams, progress: bool) -> TrainResult:
    """Closed-form candidates first; the gradient-trained ones only when no closed-form candidate is
    ``closed_form_target_x`` times better than ideal on both the validation and the DNN-like validation
    matrices; the lowest :func:`selection_score` wins (the first listed on a tie)."""
    results: dict[str, TrainResult] = {}
    scores: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    left_out: dict[str, str] = {}
    not_trained: dict[str, str] = {}
    cheap = [d for d in params.candidates if d in CLOSED_FORM]
    costly = [d for d in params.candidates if d not in CLOSED_FORM]
    if "cell_iv" in cheap and len(params.candidates) > 1 and splits.all_linear:
        cheap.remove("cell_iv")
        not_trained["cell_iv"] = LINEAR_SKIPS_CELL_IV

    def fit(design: str) -> None:
        log.info("design auto: candidate %s", design)
        t0 = time.perf_counter()
        try:
            results[design] = train(splits, params.for_design(design), progress)
        except TooLittleDataError as e:
            log.warning("design auto: candidate %s left out: %s", design, e)
            left_out[design] = str(e)
            return
        scores[design] = selection_score(results[design].model, splits)
        seconds[design] = round(time.perf_counter() - t0, 3)
        log.info("design auto: %s: %.0fx better than ideal on validation, %.0fx on DNN-like validation", design,
                 scores[design]["val_x_better_than_ideal"], scores[design]["dnn_like_x_better_than_ideal"])

    def score(design: str) -> float:
        value = float(scores[design]["score"])
        return value if math.isfinite(value) else math.inf

    for design in cheap:
        fit(design)
    best_cheap = min((d for d in cheap if d in results), key=score, default=None)
    met = best_cheap is not None and score(best_cheap) <= 1.0 / params.closed_form_target_x
    for design in costly:
        if met:
            not_trained[design] = (f"{best_cheap} is {1.0 / score(best_cheap):.0f}x better than ideal on both sets "
                                   f"(closed_form_target_x {params.closed_form_target_x:g})")
        else:
            fit(design)
    if not results:
        raise TooLittleDataError("design auto: no candidate's validation error fell; " + " | ".join(left_out.values()))
    order = [d for d in params.candidates if d in results]
    chosen = min(order, key=score)  # the first listed on equal scores
    selection = Selection(results={d: results[d] for d in order}, chosen=chosen, scores={d: scores[d] for d in order},
                          target_x=params.closed_form_target_x, not_trained=not_trained, left_out=left_out,
                          seconds={d: seconds[d] for d in order})
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
    bar = Progress(params.epochs, f"train {params.design}", "epoch", enabled=progress, logger=log).start()
    epoch = 0
    train_rms: list[float] = []
    try:
        for epoch in range(1, params.epochs + 1):
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
            bar.advance(1, f"train {np.sqrt(sq / max(count, 1)):.2e}, val {val:.2e}, best {best_val:.2e}")
            if epoch >= params.epochs // 2 and epoch - best_epoch >= params.patience:
                log.info("early stop at epoch %d (best epoch %d)", epoch, best_epoch)
                break
    finally:
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
