"""The workflow's whole config, checked against every stage's own settings before any job runs.

``rules/common.smk`` calls :func:`validate_config` when Snakemake parses the workflow, so
``snakemake -n`` fails on any mistake, with one :class:`ConfigError` naming the key. Torch-free:
it builds each stage's settings (``CircuitSpec`` with its vetted circuit file, ``SamplingConfig``,
``TrainParams``, ``TrainSettings``, ``EvaluationSettings``, ``CrossbarConfig``, ``ReportSettings``)
exactly as the stage will, and reads the header of every external ``surrogate_file``.

Layering: ``xbarchar.files``, ``xbarchar.cli`` and ``xbarchar.settings`` sit below the stages;
this module sits above them (the workflow's view).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCENARIO_WORKFLOW_KEYS = ("circuits", "device_preset")
"""Scenario keys the workflow reads; every other key of a scenario is a CrossbarConfig key."""
CIRCUIT_STAGE_KEYS = ("sampling", "surrogate", "surrogate_file")
"""Keys of a ``circuits:`` entry that belong to later stages (the rest describe the circuit)."""


class ConfigError(ValueError):
    """The workflow config is wrong; the message starts with the key (``circuits.x.sampling.seed``)."""


def _named(where: str, exc: Exception) -> ConfigError:
    """``exc`` with ``where`` in front, unless its message already starts with (the end of) it."""
    text = str(exc)
    if text.startswith(where):
        return ConfigError(text)
    head, _, tail = where.rpartition(".")
    if head and (text.startswith(tail + ".") or text.startswith(tail + ":")):
        return ConfigError(f"{head}.{text}")
    return ConfigError(f"{where}: {text}")


def crossbar_settings(config: dict[str, Any], scenario: str) -> dict[str, Any]:
    """The crossbar settings of one scenario: shared ``crossbar`` defaults overridden by the scenario."""
    entry = config["scenarios"][scenario]
    return {**config.get("crossbar", {}),
            **{k: v for k, v in entry.items() if k not in SCENARIO_WORKFLOW_KEYS}}


def validate_config(config: dict[str, Any], base_dir: str | Path = ".") -> None:
    """Raise :class:`ConfigError` for the first mistake found (see the module docstring)."""
    from dnn.config import DEVICE_PRESETS, CrossbarConfig
    from dnn.report import ReportSettings
    from dnn.settings import EvaluationSettings, TrainSettings
    from spice.circuit import spec_from_config
    from spice.sampling import SamplingConfig
    from surrogate.contract import file_problems
    from surrogate.params import TrainParams
    from xbarchar.settings import from_dict

    models = dict(config.get("models") or {})
    for name, entry in models.items():
        try:
            from_dict(TrainSettings, entry, f"models.{name}")
        except ValueError as exc:
            raise _named(f"models.{name}", exc) from None
    circuits = dict(config.get("circuits") or {})
    for name, entry in circuits.items():
        where = f"circuits.{name}"
        try:
            spec = spec_from_config(name, entry, base_dir=base_dir)
        except ValueError as exc:
            raise _named(where, exc) from None
        sampling = {k: v for k, v in (entry.get("sampling") or {}).items() if k != "source_model"}
        try:
            SamplingConfig.from_dict(sampling)
        except ValueError as exc:
            raise _named(f"{where}.sampling", exc) from None
        source = (entry.get("sampling") or {}).get("source_model")
        if source and source not in models:
            raise ConfigError(f"{where}.sampling.source_model: unknown model '{source}'; expected one of "
                              f"{sorted(models)}")
        try:
            TrainParams.from_dict(entry.get("surrogate"), where=f"{where}.surrogate")
        except ValueError as exc:
            raise _named(f"{where}.surrogate", exc) from None
        external = entry.get("surrogate_file")
        if external:
            path = Path(external) if Path(external).is_absolute() else Path(base_dir) / external
            problem = file_problems(path, spec)
            if problem:
                raise ConfigError(f"{where}.surrogate_file: {problem}")
    try:
        from_dict(EvaluationSettings, config.get("evaluation"), "evaluation")
    except ValueError as exc:
        raise _named("evaluation", exc) from None
    for name, entry in (config.get("scenarios") or {}).items():
        where = f"scenarios.{name}"
        unknown = sorted(set(entry.get("circuits") or []) - set(circuits))
        if unknown:
            raise ConfigError(f"{where}.circuits: unknown circuit(s) {unknown}; expected some of {sorted(circuits)}")
        preset = entry.get("device_preset")
        if preset is not None and preset not in DEVICE_PRESETS:
            raise ConfigError(f"{where}.device_preset: unknown preset '{preset}'; expected one of "
                              f"{sorted(DEVICE_PRESETS)}")
        try:
            CrossbarConfig.from_dict(crossbar_settings(config, name))
        except ValueError as exc:
            raise ConfigError(f"{where} (with `crossbar` defaults): {exc}") from None
    try:
        ReportSettings.from_dict(config.get("report"))
    except ValueError as exc:
        raise _named("report", exc) from None
