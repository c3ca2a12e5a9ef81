"""The workflow's whole config, checked against every stage's own settings before any job runs.

``rules/common.smk`` calls :func:`validate_config` when Snakemake parses the workflow, so
``snakemake -n`` fails on any mistake, with one :class:`ConfigError` naming the key. Torch-free:
it builds each stage's settings (``CircuitSpec`` with its vetted circuit file, ``SamplingConfig``,
``TrainParams``, ``TrainSettings``, ``EvaluationSettings``, ``CrossbarConfig``, ``ReportSettings``)
exactly as the stage will, and reads the header of every external ``surrogate_file``.

Before Snakemake merges, validates or prints the config, the Snakefile calls :func:`check_sources`
(each config file within its size, the tree within its expanded size: ``xbarchar.yamlsafe``) and
:func:`check_schema` (the schema, with a short message); :func:`exit_on_config_error` turns a
mistake into one line on stderr and exit status 2. :func:`check_memory` refuses a circuit whose
ngspice array or dataset is estimated above ``limits.memory_gb`` (:class:`Limits`).

Layering: ``xbarchar`` (files, cli, settings, yamlsafe) sits below the stages; this package,
``pipeline``, sits above them (the workflow's view) and no stage imports it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xbarchar.settings import check, is_number
from xbarchar.yamlsafe import ConfigTreeError, check_tree, load_config_file, short_repr, short_text

MAX_MESSAGE_CHARS = 600
"""Longest config error message (one line)."""
SCENARIO_WORKFLOW_KEYS = ("circuits", "device_preset")
"""Scenario keys the workflow reads; every other key of a scenario is a CrossbarConfig key."""
CIRCUIT_STAGE_KEYS = ("sampling", "surrogate", "surrogate_file")
"""Keys of a ``circuits:`` entry that belong to later stages (the rest describe the circuit)."""


class ConfigError(ValueError):
    """The workflow config is wrong; the message starts with the key (``circuits.x.sampling.seed``)."""


@dataclass(frozen=True)
class Limits:
    """Resource bounds checked before any job runs (the config's ``limits:``)."""

    memory_gb: float = 16.0
    """Largest estimated memory, GB (1e9 bytes), of one ngspice solve of a circuit's array and of a
    circuit's dataset held as float64 samples (``spice.sampling.ngspice_bytes``, ``dataset_bytes``)."""

    def __post_init__(self) -> None:
        check(is_number(self.memory_gb) and 0 < self.memory_gb <= 1e6, "memory_gb", "a number of GB in (0, 1e6]",
              self.memory_gb)


def check_sources(config: dict[str, Any], configfiles: list[str | Path], default_configfile: str | Path) -> None:
    """Before Snakemake merges or validates the config: each config file (the command line's and the
    workflow's default) read within its size and expanded-tree bounds, and the config given so far too
    (``xbarchar.yamlsafe``). Raises :class:`ConfigError` naming the file."""
    for path in [*configfiles, default_configfile]:
        if Path(path).exists():
            try:
                load_config_file(path)
            except ConfigTreeError as exc:
                raise ConfigError(str(exc)) from None
    try:
        check_tree(config, "config")
    except ConfigTreeError as exc:
        raise ConfigError(str(exc)) from None


def check_schema(config: dict[str, Any], schema_path: str | Path) -> None:
    """The config against the workflow schema, with a short message (Snakemake's own ``validate`` prints
    the whole offending value); run it before ``validate``, which then only fills the defaults."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "config"
        raise ConfigError(f"{short_text(where)}: {short_text(error.message, 200)} (config/schema.yaml)")


def exit_on_config_error(check: Callable[..., None], *args: Any) -> None:
    """Run one config check; on a mistake print one line to stderr and exit with status 2 (no job has run)."""
    try:
        check(*args)
    except (ConfigError, ConfigTreeError) as exc:
        print(f"config error: {short_text(str(exc), MAX_MESSAGE_CHARS)}", file=sys.stderr)
        raise SystemExit(2) from None


def _named(where: str, exc: Exception) -> ConfigError:
    """``exc`` with ``where`` in front, unless its message already starts with (the end of) it."""
    text = str(exc)
    if text.startswith(where):
        return ConfigError(text)
    head, _, tail = where.rpartition(".")
    if head and (text.startswith(tail + ".") or text.startswith(tail + ":")):
        return ConfigError(f"{head}.{text}")
    return ConfigError(f"{where}: {text}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """``value`` when it is a mapping (None is an empty one), else :class:`ConfigError` naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} = {short_repr(value)}: expected a mapping")
    return value


def check_memory(where: str, spec: Any, sampling: Any, limits: Limits) -> None:
    """:class:`ConfigError` when ngspice's array or the dataset of one circuit is estimated above
    ``limits.memory_gb``; the message names the key and the setting that raises the limit."""
    from spice.sampling import NGSPICE_BYTES_PER_CELL, dataset_bytes, ngspice_bytes

    limit = limits.memory_gb * 1e9
    raise_it = f"above limits.memory_gb = {limits.memory_gb:g}; raise limits.memory_gb to allow it"
    need = ngspice_bytes(spec)
    if need > limit:
        raise ConfigError(f"{where}.rows: a {spec.rows}x{spec.cols} array needs about {need / 1e9:.3g} GB in ngspice "
                          f"({NGSPICE_BYTES_PER_CELL / 1e3:g} kB per cell), {raise_it}")
    need = dataset_bytes(spec, sampling)
    if need > limit:
        raise ConfigError(f"{where}.sampling.n_conductance: {sampling.n_conductance} matrices x {sampling.n_vectors} "
                          f"vectors of a {spec.rows}x{spec.cols} array need about {need / 1e9:.3g} GB as float64 "
                          f"samples, {raise_it}")


def crossbar_settings(config: dict[str, Any], scenario: str) -> dict[str, Any]:
    """The crossbar settings of one scenario: shared ``crossbar`` defaults overridden by the scenario."""
    entry = _mapping(config["scenarios"][scenario], f"scenarios.{scenario}")
    return {**_mapping(config.get("crossbar"), "crossbar"),
            **{k: v for k, v in entry.items() if k not in SCENARIO_WORKFLOW_KEYS}}


def check_evaluation_fits(evaluation: Any, config: dict[str, Any], models: dict[str, Any]) -> None:
    """The evaluation against every model: calibration sizes within its dataset's training split
    (``dnn.settings.TRAIN_SPLIT_SIZES``, or the model's ``n_train``), and explicit lora/vera ranks within
    its crossbar layers in every scenario (``dnn.adapters.model_layer_shapes``)."""
    from dnn.settings import TRAIN_SPLIT_SIZES, TrainSettings
    from xbarchar.settings import from_dict

    for name, entry in models.items():
        train = from_dict(TrainSettings, entry, f"models.{name}")
        n_train = min(TRAIN_SPLIT_SIZES[train.dataset], train.n_train or TRAIN_SPLIT_SIZES[train.dataset])
        try:
            evaluation.check_training_size(n_train, f"models.{name}, {train.dataset}")
        except ValueError as exc:
            raise ConfigError(f"evaluation.{exc}") from None
        ranked = [m for m in ("lora", "vera") if m in evaluation.methods and getattr(evaluation, m).ranks]
        if not ranked:
            continue
        from dnn.adapters import check_rank, model_layer_shapes

        for scenario in _mapping(config.get("scenarios"), "scenarios"):
            xbar = crossbar_settings(config, scenario)
            shapes = model_layer_shapes(train.model, train.dataset, train.width, xbar.get("analog_layers", "conv"),
                                        tuple(xbar.get("exclude") or ()))
            for method in ranked:
                for rank in getattr(evaluation, method).ranks:
                    try:
                        check_rank(method, shapes, rank)
                    except ValueError as exc:
                        raise ConfigError(f"evaluation.{method}.ranks: {exc} in models.{name} "
                                          f"(scenario {scenario})") from None


def validate_config(config: dict[str, Any], base_dir: str | Path = ".") -> None:
    """Raise :class:`ConfigError` for the first mistake found (see the module docstring); its message is
    one line of at most :data:`MAX_MESSAGE_CHARS` characters."""
    try:
        _validate_config(config, base_dir)
    except ConfigError as exc:
        raise ConfigError(short_text(str(exc), MAX_MESSAGE_CHARS)) from None


def _validate_config(config: dict[str, Any], base_dir: str | Path) -> None:
    from dnn.config import DEVICE_PRESETS, CrossbarConfig
    from dnn.report import ReportSettings
    from dnn.settings import EvaluationSettings, TrainSettings
    from spice.circuit import MAX_PATH_CHARS, spec_from_config
    from spice.sampling import SamplingConfig
    from surrogate.contract import file_problems
    from surrogate.params import TrainParams
    from xbarchar.settings import from_dict

    try:
        check_tree(config, "config")
    except ConfigTreeError as exc:
        raise ConfigError(str(exc)) from None
    config = _mapping(config, "config")
    try:
        limits = from_dict(Limits, config.get("limits"), "limits")
    except ValueError as exc:
        raise _named("limits", exc) from None
    models = _mapping(config.get("models"), "models")
    for name, entry in models.items():
        try:
            from_dict(TrainSettings, entry, f"models.{name}")
        except ValueError as exc:
            raise _named(f"models.{name}", exc) from None
    circuits = _mapping(config.get("circuits"), "circuits")
    for name, entry in circuits.items():
        where = f"circuits.{name}"
        try:
            spec = spec_from_config(name, entry, base_dir=base_dir)
        except ValueError as exc:
            raise _named(where, exc) from None
        sampling_entry = _mapping(entry.get("sampling"), f"{where}.sampling")
        sampling = {k: v for k, v in sampling_entry.items() if k != "source_model"}
        try:
            sampling_config = SamplingConfig.from_dict(sampling)
        except ValueError as exc:
            raise _named(f"{where}.sampling", exc) from None
        check_memory(where, spec, sampling_config, limits)
        source = sampling_entry.get("source_model")
        if source is not None and (not isinstance(source, str) or source not in models):
            raise ConfigError(f"{where}.sampling.source_model: unknown model {short_repr(source)}; expected one of "
                              f"{sorted(models)}")
        try:
            TrainParams.from_dict(entry.get("surrogate"), where=f"{where}.surrogate")
        except ValueError as exc:
            raise _named(f"{where}.surrogate", exc) from None
        external = entry.get("surrogate_file")
        if external is not None and (not isinstance(external, str) or not 0 < len(external) <= MAX_PATH_CHARS):
            raise ConfigError(f"{where}.surrogate_file = {short_repr(external)}: expected the path of a surrogate "
                              f"file (at most {MAX_PATH_CHARS} characters)")
        if external:
            path = Path(external) if Path(external).is_absolute() else Path(base_dir) / external
            problem = file_problems(path, spec)
            if problem:
                raise ConfigError(f"{where}.surrogate_file: {problem}")
    try:
        evaluation = from_dict(EvaluationSettings, config.get("evaluation"), "evaluation")
    except ValueError as exc:
        raise _named("evaluation", exc) from None
    check_evaluation_fits(evaluation, config, models)
    for name, entry in _mapping(config.get("scenarios"), "scenarios").items():
        where = f"scenarios.{name}"
        entry = _mapping(entry, where)
        names = entry.get("circuits") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}.circuits = {short_repr(names)}: expected a list of circuit names")
        unknown = sorted(set(names) - set(circuits))
        if unknown:
            raise ConfigError(f"{where}.circuits: unknown circuit(s) {short_repr(unknown)}; expected some of "
                              f"{sorted(circuits)}")
        preset = entry.get("device_preset")
        if preset is not None and (not isinstance(preset, str) or preset not in DEVICE_PRESETS):
            raise ConfigError(f"{where}.device_preset: unknown preset {short_repr(preset)}; expected one of "
                              f"{sorted(DEVICE_PRESETS)}")
        preset_keys = DEVICE_PRESETS[preset].device_config() if preset is not None else {}
        try:
            CrossbarConfig.from_dict({**preset_keys, **crossbar_settings(config, name)})
        except ValueError as exc:
            with_preset = f" and device_preset {preset}" if preset is not None else ""
            raise ConfigError(f"{where} (with `crossbar` defaults{with_preset}): {exc}") from None
    report = _mapping(config.get("report"), "report")
    for key, value in report.items():  # ReportSettings takes true for 1: refuse it here
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"report.{key} = {short_repr(value)}: expected a number of percentage points")
    try:
        ReportSettings.from_dict(report)
    except ValueError as exc:
        raise _named("report", exc) from None
