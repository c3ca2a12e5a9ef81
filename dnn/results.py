"""The evaluation result: a versioned, validated record that ``evaluate`` writes and the report reads.

Torch-free. ``EvaluationResult.to_dict`` is the JSON file's layout (with ``kind`` and
``format_version``); ``from_dict`` refuses anything else with a message naming the file and the key,
so no reader re-parses a hand-built dict.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xbarchar.files import atomic_write_text

RESULT_KIND = "xbarchar.evaluation"
RESULT_FORMAT_VERSION = 1


class ResultFileError(ValueError):
    """A file is not an evaluation result this version can read."""


@dataclass(frozen=True)
class MethodResult:
    """One mitigation method over every seed x test pass. Accuracies are fractions in [0, 1]."""

    accuracy_mean: float
    accuracy_std: float
    accuracies: list[float]
    """Every seed x evaluation draw."""
    accuracy_per_seed: list[float]
    """Mean over the draws of each seed."""
    trainable_params: int
    wall_s: float
    """Mean wall time of the method per seed, seconds."""
    peak_mem_mb: float
    """Mean peak memory per seed, MiB (see ``memory_kind``)."""
    memory_kind: str
    pc2_per_layer: dict[str, float] = field(default_factory=dict)
    pc2_mean: float = float("nan")
    energy: dict[str, Any] = field(default_factory=dict)
    """Energy and latency per inference and per layer on the first seed (``dnn.energy.EnergyMeter.summary``);
    empty when not measured (or in files written before it existed)."""
    method: str = ""
    """The mitigation method this entry ran (its key may add ``_r<rank>``, ``_n<images>``); "" in files
    written before the field existed, where the key is the method."""
    bytes_per_chip: int | None = None
    """Bytes the method stores per deployed chip beside the shared software model
    (``dnn.mitigation.stored_per_chip``); None in older files."""
    calibration_images: int | None = None
    """Training images the method used (0 for 'none'); None in older files."""
    rank: int | None = None
    """Adapter rank (lora, vera)."""
    param_budget_x_bn: list[float] = field(default_factory=list)
    """The parameter budgets (x the BN gamma/beta count) this rank was chosen for."""
    safeguard: list[dict[str, Any]] = field(default_factory=list)
    """Per seed, what the fine-tune safeguard scored and kept (``dnn.mitigation.SafeguardRecord``)."""
    start_method: str = ""
    """The method this one equals after zero training steps (``dnn.settings.starting_method``): what the
    report's below-start warning compares it with; "" for methods that do not train, and in older files."""


@dataclass(frozen=True)
class EvaluationResult:
    """Accuracy of one trained model on one circuit in one scenario, per mitigation method."""

    circuit: str
    model: str
    scenario: str
    architecture: str
    model_path: str
    software_accuracy: float
    methods: dict[str, MethodResult]
    circuit_spec: dict[str, Any] | None = None
    """Sizes and resistances of the circuit (None without one)."""
    dataset: dict[str, Any] = field(default_factory=dict)
    mvm: dict[str, Any] = field(default_factory=dict)
    """The tile model: kind ('surrogate', 'exact', 'ideal'), path, rows, cols, conductance and voltage range."""
    device_preset: str | None = None
    xbar_config: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    device_stats: dict[str, Any] = field(default_factory=dict)
    """What each seed's programming did to the devices (``dnn.layers.device_stats_per_seed``): ``per_seed``
    {seed: {layer: {cells, stuck_on, stuck_off, tiles, tiles_all_stuck, verify_redraws, working_cells}}} and
    ``layers_without_working_cells``; empty in files written before it existed."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": RESULT_KIND, "format_version": RESULT_FORMAT_VERSION, **asdict(self)}

    def write(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<result>") -> EvaluationResult:
        """Validate and build; files without ``kind`` (written before it existed) are read as version 1."""
        def bad(key: str, expected: str) -> ResultFileError:
            return ResultFileError(f"{source}: not an evaluation result ({key}: expected {expected})")

        if not isinstance(d, dict):
            raise bad("top level", "a JSON object")
        d = dict(d)
        kind, version = d.pop("kind", RESULT_KIND), d.pop("format_version", RESULT_FORMAT_VERSION)
        if kind != RESULT_KIND:
            raise bad("kind", repr(RESULT_KIND))
        if version != RESULT_FORMAT_VERSION:
            raise ResultFileError(f"{source}: format_version {version!r} is not supported (this xbarchar reads "
                                  f"{RESULT_FORMAT_VERSION})")
        for key in ("circuit", "model", "scenario"):
            if not isinstance(d.get(key), str):
                raise bad(key, "a string")
        if not isinstance(d.get("methods"), dict) or not d["methods"]:
            raise bad("methods", "a non-empty object of method results")
        methods = {}
        for name, m in d["methods"].items():
            if not isinstance(m, dict):
                raise bad(f"methods.{name}", "an object")
            for key in ("accuracy_mean", "accuracy_std"):
                if not _is_number(m.get(key)):
                    raise bad(f"methods.{name}.{key}", "a number")
            known = {k: v for k, v in m.items() if k in MethodResult.__dataclass_fields__}
            known.setdefault("accuracies", [m["accuracy_mean"]])
            known.setdefault("accuracy_per_seed", list(known["accuracies"]))
            for key, default in (("trainable_params", 0), ("wall_s", float("nan")), ("peak_mem_mb", float("nan")),
                                 ("memory_kind", "")):
                known.setdefault(key, default)
            methods[name] = MethodResult(**known)
        if not _is_number(d.get("software_accuracy")):
            raise bad("software_accuracy", "a number")
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "methods"}
        fields.setdefault("architecture", "")
        fields.setdefault("model_path", "")
        return cls(methods=methods, **fields)

    @classmethod
    def read(cls, path: str | Path) -> EvaluationResult:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultFileError(f"{path}: not an evaluation result ({exc})") from None
        return cls.from_dict(data, str(path))


def _is_number(x: Any) -> bool:
    """A number, NaN included (a method may not have run): finiteness is the report's question."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and (math.isfinite(x) or math.isnan(x))
