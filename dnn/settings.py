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
METHOD_NAMES = ("none", "bn_adapt", "bn_finetune", "adapt_finetune", "retrain")
"""Mitigation methods of ``dnn.mitigation.METHODS``; 'adapt_finetune' = bn_adapt, then bn_finetune."""


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
class EvaluationSettings:
    """What ``evaluate`` measures: which methods, over which seeds, with how much data."""

    methods: tuple[str, ...] = ("none", "bn_adapt", "bn_finetune", "retrain")
    seeds: tuple[int, ...] = (0,)
    """One programming (noise and drift draws, calibration subset) per seed."""
    calibration_samples: int | None = 1000
    """Training images every method may use (seeded subset; None = the whole training split)."""
    eval_draws: int = 1
    """Test-set passes per seed, each with new read-noise draws; mean and std are over seeds x draws."""
    bn_adapt: BnAdaptSettings = field(default_factory=BnAdaptSettings)
    bn_finetune: BnFinetuneSettings = field(default_factory=BnFinetuneSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
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
