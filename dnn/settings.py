"""Settings of the DNN stage's commands: the only place their defaults are written (torch-free).

``TrainSettings`` is one ``models:`` entry of the workflow config (``python -m dnn train``);
``EvaluationSettings`` is its ``evaluation:`` entry (``python -m dnn evaluate``). The workflow schema
repeats these defaults for users to read, and ``tests/test_contracts.py`` checks that it agrees.
Both commands use one precedence rule: defaults < the JSON argument < explicit flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xbarchar.settings import MAX_SEED, SEED_EXPECTED, check, is_int, is_number, is_seed

from .periphery import EnergySettings

MODEL_NAMES = ("bn_cnn", "vgg8", "vgg11", "vgg16", "resnet20", "resnet18")
"""Architectures of ``dnn.models.MODELS`` (checked equal by a test; listed here so that the
workflow can validate a config without importing torch)."""
DATASET_NAMES = ("digits", "mnist_subset", "cifar10")
OPTIMIZERS = ("adam", "sgd")
MONITORS = ("val_loss", "val_accuracy")
"""What the software model's early stopping watches (``TrainSettings.monitor``)."""
METHOD_NAMES = ("none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain", "drift_compensation", "lora", "vera")
"""Mitigation methods of ``dnn.mitigation.METHODS``; 'adapt_finetune' = bn_adapt, then bn_finetune;
'drift_compensation', 'lora' and 'vera' are the light rivals of BN-only mitigation (``dnn.adapters``)."""
METHOD_SETTINGS = {
    "none": (), "bn_adapt": ("bn_adapt",), "bn_finetune": ("bn_adapt", "bn_finetune", "safeguard"),
    "adapt_finetune": ("bn_adapt", "bn_finetune", "safeguard"), "retrain": ("bn_adapt", "retrain"),
    "drift_compensation": ("drift_compensation",), "lora": ("bn_adapt", "lora", "safeguard"),
    "vera": ("bn_adapt", "vera", "safeguard"),
}
"""The ``evaluation`` blocks each method reads (``dnn.evaluate.method_kwargs``; checked by a test): a
block no listed method reads decides nothing (``used_evaluation``)."""
TRAIN_SPLIT_SIZES = {"digits": 1437, "mnist_subset": 4000, "cifar10": 50000}
"""Images in each dataset's training split (``dnn.datasets``; checked by a test): the most calibration
images a config may ask for before the data is loaded."""
DATASET_INPUTS = {"digits": (1, 8, 10), "mnist_subset": (1, 28, 10), "cifar10": (3, 32, 10)}
"""(in_channels, image_size, num_classes) of each dataset (checked by a test), so that a config's
adapter ranks can be checked against the model's layers before the data is loaded."""


MAX_COUNT = 10**9
"""Largest count a setting accepts (samples, draws, batches); each setting may bound itself lower."""


def _count(value: object, high: int = MAX_COUNT) -> bool:
    return is_int(value) and 1 <= value <= high  # type: ignore[operator]


def _optional_count(value: object) -> bool:
    return value is None or _count(value)


def _names(value: object) -> bool:
    """A list (tuple) of strings: YAML gives lists; a bare string or number is a mistake."""
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True)
class TrainSettings:
    """A software baseline: which network on which data, and how it is trained."""

    dataset: str = ""
    """One of :data:`DATASET_NAMES` (required)."""
    model: str = ""
    """One of :data:`MODEL_NAMES` (required)."""
    dataset_root: str = "data/datasets"
    """Folder of downloaded datasets (cifar10); the offline datasets need none."""
    epochs: int = 8
    """Epochs of training; with ``patience`` set, the most epochs (training may stop earlier)."""
    batch_size: int = 64
    lr: float = 1e-3
    """Learning rate of the optimizer."""
    seed: int = 0
    """Seeds the data order, the initialization and the dataset subsets."""
    width: float = 1.0
    """Channel width multiplier."""
    optimizer: str = "adam"
    weight_decay: float = 0.0
    n_train: int | None = None
    """Seeded subset of the training split (None = all)."""
    n_test: int | None = None
    """Seeded subset of the test split (None = all)."""
    patience: int | None = None
    """Early stopping (``dnn.train.fit``): stop once the validation ``monitor`` has not improved for this
    many epochs and keep the weights of its best epoch. None = exactly ``epochs`` epochs on the whole
    training split, no validation split (Paper 1's fixed schedule)."""
    val_fraction: float = 0.1
    """With ``patience``: the share of the training split held out (seeded by ``seed``) as the
    validation split the stopping rule watches; the model never trains on it."""
    monitor: str = "val_loss"
    """With ``patience``: 'val_loss' (mean cross-entropy, lower is better) or 'val_accuracy'."""

    def __post_init__(self) -> None:
        check(isinstance(self.dataset, str) and self.dataset in DATASET_NAMES, "dataset", f"one of {list(DATASET_NAMES)}", self.dataset)
        check(isinstance(self.model, str) and self.model in MODEL_NAMES, "model", f"one of {list(MODEL_NAMES)}", self.model)
        check(isinstance(self.dataset_root, str), "dataset_root", "a folder path", self.dataset_root)
        check(_count(self.epochs, 100_000), "epochs", "an integer in [1, 100000]", self.epochs)
        check(_count(self.batch_size, 65_536), "batch_size", "an integer in [1, 65536]", self.batch_size)
        check(is_seed(self.seed), "seed", SEED_EXPECTED, self.seed)
        check(is_number(self.lr) and self.lr > 0, "lr", "a number > 0", self.lr)
        check(is_number(self.width) and 0 < self.width <= 16, "width", "a number in (0, 16]", self.width)
        check(isinstance(self.optimizer, str) and self.optimizer in OPTIMIZERS, "optimizer", f"one of {list(OPTIMIZERS)}", self.optimizer)
        check(is_number(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a number >= 0",
              self.weight_decay)
        for key in ("n_train", "n_test"):
            check(_optional_count(getattr(self, key)), key, "null (all) or an integer >= 1",
                  getattr(self, key))
        check(self.patience is None or _count(self.patience, 100_000), "patience",
              "null (a fixed number of epochs) or an integer in [1, 100000]", self.patience)
        check(is_number(self.val_fraction) and 0 < self.val_fraction <= 0.5, "val_fraction",
              "a number in (0, 0.5]", self.val_fraction)
        check(isinstance(self.monitor, str) and self.monitor in MONITORS, "monitor", f"one of {list(MONITORS)}",
              self.monitor)


@dataclass(frozen=True)
class BnAdaptSettings:
    """BN adaptation: running statistics re-estimated on clean data through the non-ideal network."""

    n_draws: int = 4
    """Passes over the calibration batches (each forward a new read-noise draw); one pass when the
    crossbar has no read noise (a deterministic forward)."""
    n_batches: int | None = None
    """Calibration batches per pass (None = all)."""

    def __post_init__(self) -> None:
        check(_count(self.n_draws, 10_000), "n_draws", "an integer in [1, 10000]", self.n_draws)
        check(_optional_count(self.n_batches), "n_batches", "null (all) or an integer >= 1",
              self.n_batches)


@dataclass(frozen=True)
class BnFinetuneSettings:
    """BN fine-tuning: only gamma/beta trained through the non-ideal forward (Paper 1's schedule)."""

    epochs: int = 5
    lr: float = 0.01
    lr_step_epochs: int = 2
    """The learning rate is multiplied by ``lr_gamma`` every this many epochs."""
    lr_gamma: float = 0.2
    optimizer: str = "adam"
    """'adam', or 'sgd' with momentum 0.9."""
    reestimate_stats: bool = True
    """Re-estimate the running statistics for the final gamma/beta (as bn_adapt)."""

    def __post_init__(self) -> None:
        for key in ("epochs", "lr_step_epochs"):
            check(_count(getattr(self, key), 100_000), key, "an integer in [1, 100000]", getattr(self, key))
        check(is_number(self.lr) and self.lr > 0, "lr", "a number > 0", self.lr)
        check(is_number(self.lr_gamma) and 0 < self.lr_gamma <= 1, "lr_gamma", "a number in (0, 1]",
              self.lr_gamma)
        check(isinstance(self.optimizer, str) and self.optimizer in OPTIMIZERS, "optimizer",
              f"one of {list(OPTIMIZERS)}", self.optimizer)
        check(isinstance(self.reestimate_stats, bool), "reestimate_stats", "true or false",
              self.reestimate_stats)


@dataclass(frozen=True)
class RetrainSettings:
    """Noise-aware retraining of every weight (the upper bound)."""

    epochs: int = 2
    lr: float = 1e-3

    def __post_init__(self) -> None:
        check(_count(self.epochs, 100_000), "epochs", "an integer in [1, 100000]", self.epochs)
        check(is_number(self.lr) and self.lr > 0, "lr", "a number > 0", self.lr)


@dataclass(frozen=True)
class SafeguardSettings:
    """How a fine-tune (bn_finetune, adapt_finetune, lora, vera) avoids ending below its own starting point.

    With ``holdout_fraction`` > 0 a seeded share of the calibration images is held out (the method trains
    on the rest); the starting state and the state after every epoch are scored on it (after the BN
    statistics are re-estimated, as the deployed state would be) and the best one is kept: the highest
    held-out accuracy, ties broken by the lower held-out loss, the earlier state on a full tie, so the
    result is never worse on the held-out images than the start. ``holdout_fraction: 0`` is Paper 1's
    setting: every calibration image trains, the fixed schedule runs to its end, its last state is kept."""

    holdout_fraction: float = 0.2
    """Share of the calibration images held out (at least one image, at least one left to train on);
    0 = Paper 1's setting (no holdout, the last state)."""

    def __post_init__(self) -> None:
        check(is_number(self.holdout_fraction) and 0 <= self.holdout_fraction <= 0.5, "holdout_fraction",
              "a number in [0, 0.5] (0 = Paper 1's setting: no holdout)", self.holdout_fraction)


@dataclass(frozen=True)
class DriftCompensationSettings:
    """aihwkit-style global drift compensation: one output scale per layer (or per column) from a
    calibration read; no training."""

    per_column: bool = False
    """One scale per output column (channel) instead of one per layer."""
    n_batches: int | None = None
    """Calibration batches read (None = all)."""

    def __post_init__(self) -> None:
        check(isinstance(self.per_column, bool), "per_column", "true or false", self.per_column)
        check(_optional_count(self.n_batches), "n_batches", "null (all) or an integer >= 1", self.n_batches)


def _budgets(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(is_number(v) and 0 < v <= 1e6 for v in value)  # type: ignore[operator]


def _ranks(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(is_int(v) for v in value)


@dataclass(frozen=True)
class LoraSettings(BnFinetuneSettings):
    """Rank-r digital adapters y = crossbar(x) + B A x on every crossbar layer, trained through the
    non-ideal forward with BN in train mode, with bn_finetune's schedule keys and defaults, then the BN
    statistics re-estimated (``reestimate_stats``). One evaluation per rank: the ranks whose
    trained-parameter count is nearest each ``param_budget_x_bn`` times the model's BN gamma/beta count,
    and the explicit ``ranks``."""

    param_budget_x_bn: tuple[float, ...] = (1.0, 4.0, 16.0)
    """Parameter budgets as multiples of the BN gamma/beta count (a budget below rank 1 or above the
    largest rank gets that rank; the result records the count it got)."""
    ranks: tuple[int, ...] = ()
    """Explicit ranks, beside the budgets' (1 <= r <= min(d_in, d_out) of every crossbar layer)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(_budgets(self.param_budget_x_bn), "param_budget_x_bn", "a list of numbers in (0, 1e6]",
              self.param_budget_x_bn)
        check(_ranks(self.ranks) and all(r >= 1 for r in self.ranks), "ranks",
              "a list of integers >= 1 (a rank of 0 adapts nothing)", self.ranks)
        object.__setattr__(self, "param_budget_x_bn", tuple(float(v) for v in self.param_budget_x_bn))
        object.__setattr__(self, "ranks", tuple(self.ranks))
        check(bool(self.param_budget_x_bn or self.ranks), "param_budget_x_bn",
              "at least one budget or one explicit rank", [])


@dataclass(frozen=True)
class VeraSettings(LoraSettings):
    """VeRA: y = crossbar(x) + diag(b) B diag(d) A x with A, B frozen random matrices shared by every layer
    (drawn from ``matrix_seed``, the same on every chip) and only d (r per layer) and b (d_out per layer)
    trained. Ranks: 1 <= r <= d_in x d_out of every crossbar layer."""

    d_init: float = 0.1
    """Initial value of every entry of d (b starts at 0, so the adapter starts as a no-op)."""
    matrix_seed: int = 0
    """Seed of the shared frozen matrices."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(is_number(self.d_init) and self.d_init != 0, "d_init", "a non-zero number", self.d_init)
        check(is_seed(self.matrix_seed), "matrix_seed", SEED_EXPECTED, self.matrix_seed)


def used_evaluation(evaluation: dict) -> dict:
    """A config's ``evaluation`` mapping without the method blocks (``METHOD_SETTINGS``) that none of its
    ``methods`` reads, so that editing such a block changes no job's parameters (and reruns nothing)."""
    methods = evaluation.get("methods", EvaluationSettings.methods)
    if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
        return dict(evaluation)  # left for EvaluationSettings to reject, naming the key
    blocks = {b for names in METHOD_SETTINGS.values() for b in names}
    used = {b for m in methods for b in METHOD_SETTINGS.get(m, ())}
    return {k: v for k, v in evaluation.items() if k not in blocks - used}


def starting_method(method: str, reestimate_stats: bool = True) -> str:
    """The method whose result a trained method equals after zero training steps ('' for one that does not
    train): the fine-tunes and the adapters (which start as no-ops) re-estimate the BN statistics at their
    end (``reestimate_stats``), so they start from ``bn_adapt``; without the re-estimate, ``bn_finetune``,
    ``lora`` and ``vera`` start from the converted network (``none``). ``adapt_finetune`` adapts first, and
    ``retrain`` always re-estimates. The report's below-start warning compares a method with this one."""
    if method in ("adapt_finetune", "retrain"):
        return "bn_adapt"
    if method in ("bn_finetune", "lora", "vera"):
        return "bn_adapt" if reestimate_stats else "none"
    return ""


@dataclass(frozen=True)
class EvaluationSettings:
    """What ``evaluate`` measures: which methods, over which seeds, with how much data."""

    methods: tuple[str, ...] = ("none", "bn_adapt", "bn_finetune", "retrain")
    seeds: tuple[int, ...] = (0,)
    """One programming (noise and drift draws, calibration subset) per seed."""
    calibration_samples: int | None = 1000
    """Training images every method may use (seeded subset; None = the whole training split)."""
    eval_draws: int = 1
    """Test-set passes per seed, each with new read-noise draws; mean and std are over seeds x draws."""
    calibration_sizes: tuple[int, ...] = ()
    """Calibration-data sweep: when given, every method but 'none' runs once per size (nested seeded
    subsets of the training split; ``calibration_samples`` then only sets the ADC calibration)."""
    bn_adapt: BnAdaptSettings = field(default_factory=BnAdaptSettings)
    bn_finetune: BnFinetuneSettings = field(default_factory=BnFinetuneSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    safeguard: SafeguardSettings = field(default_factory=SafeguardSettings)
    drift_compensation: DriftCompensationSettings = field(default_factory=DriftCompensationSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    vera: VeraSettings = field(default_factory=VeraSettings)
    energy: EnergySettings = field(default_factory=EnergySettings)
    """Energy and latency per layer and per inference (``dnn.energy``; periphery: ``dnn.periphery``)."""

    def __post_init__(self) -> None:
        check(_names(self.methods), "methods", f"a non-empty list from {list(METHOD_NAMES)}", self.methods)
        check(isinstance(self.seeds, (list, tuple)), "seeds", "a non-empty list of integers >= 0", self.seeds)
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        unknown = [m for m in self.methods if m not in METHOD_NAMES]
        check(bool(self.methods) and not unknown, "methods",
              f"a non-empty list from {list(METHOD_NAMES)} (unknown: {unknown})", list(self.methods))
        check(bool(self.seeds) and all(is_seed(s) for s in self.seeds), "seeds",
              f"a non-empty list of integers in [0, {MAX_SEED}]", list(self.seeds))
        check(_optional_count(self.calibration_samples), "calibration_samples",
              "null (all) or an integer >= 1", self.calibration_samples)
        check(_count(self.eval_draws, 10_000), "eval_draws", "an integer in [1, 10000]", self.eval_draws)
        check(isinstance(self.calibration_sizes, (list, tuple)) and all(_count(n) for n in self.calibration_sizes),
              "calibration_sizes", "a list of integers >= 1 (images)", self.calibration_sizes)
        object.__setattr__(self, "calibration_sizes", tuple(self.calibration_sizes))

    def calibration_image_counts(self) -> tuple[int | None, ...]:
        """The calibration sizes the methods run at: ``calibration_sizes``, else ``calibration_samples``."""
        return self.calibration_sizes or (self.calibration_samples,)

    def check_training_size(self, n_train: int, where: str) -> None:
        """SettingsError naming the key when a calibration size exceeds ``n_train`` training images
        (``where`` names the model whose data it is)."""
        for key, sizes in (("calibration_samples", (self.calibration_samples,)),
                           ("calibration_sizes", self.calibration_sizes)):
            too_big = [n for n in sizes if n is not None and n > n_train]
            check(not too_big, key, f"at most {n_train} images (the training split of {where})",
                  too_big[0] if too_big else None)
