"""Training settings of a surrogate (torch-free: the workflow validates them before any job runs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from xbarchar.settings import SEED_EXPECTED, SettingsError, is_int, is_number, is_seed, reject_unknown
from xbarchar.yamlsafe import short_repr

DESIGNS = ("cell_iv", "mlp", "ridge", "transfer")
"""Surrogate designs (``surrogate.models``)."""
AUTO = "auto"
"""``design: auto`` (the default): choose among ``candidates`` by circuit, on held-out and DNN-like validation
matrices, closed-form candidates first (``surrogate.train``)."""


MAX_COUNT = 1_000_000
"""Largest width, epoch count, batch size or patience accepted."""


class TrainParamsError(ValueError):
    """Training hyperparameters are unknown or out of range."""


@dataclass(frozen=True)
class TrainParams:
    """Training hyperparameters (the keys of ``--params-json`` and of the config's ``surrogate:``)."""

    design: str = "auto"
    """'auto' (default: the design is chosen per circuit, see ``candidates``), 'transfer' (effective transfer
    matrix: as cheap as the ideal MVM), 'mlp' (GENIEx), 'ridge' (closed-form ridge on the physics features of
    the ridge baseline) or 'cell_iv' (closed-form ridge on the cell's ngspice-measured I-V basis with loading
    maps: strongly non-linear cells)."""
    candidates: tuple[str, ...] = ("transfer", "ridge", "cell_iv")
    """auto: the designs to choose from (each with the other keys of these settings). Each is scored on the
    validation matrices by the worse of its error / the ideal model's error on all of them and on the
    DNN-like ones; the closed-form ones (ridge, cell_iv) are fitted first (cell_iv not on a linear array,
    where it is no better than ridge), the others trained only when none of those reaches
    ``closed_form_target_x``; the lowest score wins, the first listed on a tie. ``mlp`` (GENIEx) is left
    out by default: far behind on every measured circuit, at up to half the cost of ``transfer``
    (docs/benchmarks/surrogate-fidelity.md)."""
    closed_form_target_x: float = 1000.0
    """auto: a closed-form candidate at least this many times better than the ideal model v.G on the
    validation matrices and on their DNN-like ones is kept without training transfer (or mlp): its error
    is then a thousandth of what the array's non-idealities cause."""
    hidden: int = 500
    """mlp: width of the hidden ReLU layer (GENIEx: 500)."""
    cell_hidden: int = 32
    """transfer: width of the per-cell correction network."""
    v_order: int | str = "auto"
    """transfer: 1 (i linear in v), 3 (adds v^2, v^3 terms) or 'auto' (1 when every matrix of the
    dataset passed ngspice's linearity check, else 3)."""
    v_basis: str = "cubic"
    """transfer with v_order 3: the voltage terms beyond v, 'cubic' (v^2, v^3) or 'learned' (two functions of v
    learned with the maps, started at v^2 and v^3: cells far from a cubic, e.g. a selector's exponential)."""
    epochs: int = 200
    """Upper bound on passes over the training samples (early stopping usually ends sooner)."""
    batch_size: int = 256
    """Samples per optimizer step."""
    lr: float | None = None
    """Adam learning rate; None = the design's default (mlp 1e-3; transfer 1e-2, 3e-3 with v_order 3)."""
    weight_decay: float | None = None
    """Adam L2 penalty on the weight matrices of linear layers (not on biases or physics parameters);
    None = the design's default (mlp 1e-3: without it the G half of the first layer overfits the
    few training matrices; transfer 0)."""
    patience: int = 20
    """Stop after this many epochs without a better validation loss (best weights are kept); never in
    the first half of the cosine learning-rate schedule, whose large early steps may not beat a good
    physics prior at first."""
    seed: int = 0
    """Seeds the split, the initialization and the batch order (training is deterministic on CPU)."""
    val_fraction: float = 0.15
    """Fraction of conductance matrices held out for early stopping."""
    test_fraction: float = 0.15
    """Fraction of conductance matrices held out for the fidelity report."""

    def __post_init__(self) -> None:
        def bad(key: str, expected: str) -> TrainParamsError:
            return TrainParamsError(f"surrogate training parameter {key}={short_repr(getattr(self, key))}: "
                                    f"expected {expected}")

        if not isinstance(self.design, str) or self.design not in DESIGNS + (AUTO,):
            raise bad("design", f"one of {DESIGNS + (AUTO,)}")
        if not isinstance(self.candidates, (list, tuple)):
            raise bad("candidates", f"a non-empty list of distinct designs from {DESIGNS}")
        object.__setattr__(self, "candidates", tuple(self.candidates))
        if (not self.candidates or any(not isinstance(c, str) or c not in DESIGNS for c in self.candidates)
                or len(set(self.candidates)) != len(self.candidates)):
            raise bad("candidates", f"a non-empty list of distinct designs from {DESIGNS}")
        for key in ("hidden", "cell_hidden", "epochs", "batch_size", "patience"):
            value = getattr(self, key)
            if not is_int(value) or not 1 <= value <= MAX_COUNT:
                raise bad(key, f"an integer in [1, {MAX_COUNT}]")
        if not (self.v_order == "auto" or (is_int(self.v_order) and self.v_order in (1, 3))):
            raise bad("v_order", "'auto', 1 or 3")
        if not isinstance(self.v_basis, str) or self.v_basis not in ("cubic", "learned"):
            raise bad("v_basis", "'cubic' or 'learned'")
        if not is_seed(self.seed):
            raise bad("seed", SEED_EXPECTED)
        for key in ("lr", "weight_decay"):
            value = getattr(self, key)
            if value is not None and (not is_number(value) or value < 0):
                raise bad(key, "null (design default) or a finite number >= 0")
        if not is_number(self.closed_form_target_x) or not self.closed_form_target_x >= 1.0:
            raise bad("closed_form_target_x", "a number >= 1 (times better than the ideal model)")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not is_number(value) or not 0.0 < value < 0.5:
                raise bad(key, "a number in (0, 0.5)")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, where: str = "surrogate") -> TrainParams:
        """From a config slice or ``--params-json``; unknown keys are an error naming ``where``."""
        if d is not None and not isinstance(d, dict):
            raise TrainParamsError(f"{where} = {short_repr(d)}: expected a mapping of training parameters")
        try:
            reject_unknown(dict(d or {}), {f.name for f in dataclasses.fields(cls)}, where)
        except SettingsError as exc:
            raise TrainParamsError(str(exc)) from None
        return cls(**(d or {}))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["candidates"] = list(self.candidates)
        return d

    def for_design(self, design: str) -> TrainParams:
        """These settings for one design (a candidate of ``design: auto``)."""
        return dataclasses.replace(self, design=design)

    def learning_rate(self, v_order: int = 1) -> float:
        """The Adam learning rate: ``lr``, else the design's default (mlp 1e-3; transfer 1e-2 when
        linear in v, 3e-3 with the cubic terms, whose coefficients start from a fitted prior that
        larger steps throw away)."""
        if self.lr is not None:
            return float(self.lr)
        if self.design == "mlp":
            return 1e-3
        return 1e-2 if v_order == 1 else 3e-3

    @property
    def l2(self) -> float:
        if self.weight_decay is not None:
            return float(self.weight_decay)
        return 1e-3 if self.design == "mlp" else 0.0
