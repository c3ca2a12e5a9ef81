"""Surrogate HDF5 files: self-describing, units on every dataset, written atomically, checked on load.

Layout (format_version 3; version 2 files, without an energy model, are read too)::

    /weights/<state_dict key>   float32  the module's parameters and buffers (ridge: float64); attr ``units``
                                         (most act on normalized quantities: '1'; see ``normalization``)

Root attributes: format_version, kind ('xbarchar.surrogate'), design, architecture (json: design,
tile constants, hyperparameters), normalization (json), circuit_spec (json), netlist_sha256,
training_data_sha256 (of the dataset file's bytes), training_data_path, train_params (json),
split (json: seed, fractions, rows of /g_s per split), history (json), fidelity (json, '{}' when
not measured), energy_model (json of :class:`surrogate.energy.EnergyModel` with its fidelity; absent when the
dataset had no read power or the circuit has no energy model), created, package_version, torch_version,
content_sha256. A loaded surrogate whose file has an energy model is a ``dnn.mvm.PoweredTileMVM``.

Integrity: Fletcher32 on every weight, and ``content_sha256`` (:mod:`xbarchar.integrity`) over every
weight's bytes, dtype, shape and units and every attribute, recomputed on every read; a mismatch is one
:class:`SurrogateFileError` naming the file. Format version 1 files predate the record and are refused.
A read also checks the meaning: each weight's units against the architecture, the tile against the
stored circuit, and the stored split (rows of /g_s, distinct, in no two splits).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spice.circuit import CircuitSpec
from spice.io import (
    DatasetFileError,
    atomic_h5,
    checksum_report,
    open_checked,
    package_version,
    read_array,
    write_array,
)
from surrogate.contract import (  # noqa: F401
    COMPATIBILITY_KEYS,
    FORMAT_VERSION,
    KIND,
    READABLE_VERSIONS,
    compatibility_problems,
)
from surrogate.data import SPLITS
from surrogate.energy import EnergyModel, EnergyModelError, attach
from surrogate.models import SurrogateMVM, from_architecture
from xbarchar.integrity import HASH_ATTR

log = logging.getLogger(__name__)


class SurrogateFileError(DatasetFileError):
    """A surrogate file is missing, corrupt, of an unknown format version or does not fit the circuit."""


def save_surrogate(path: str | Path, model: SurrogateMVM, spec: CircuitSpec, *, train_params: dict[str, Any],
                   history: dict[str, Any], data_sha256: str, data_path: str, split: dict[str, Any],
                   fidelity: dict[str, Any] | None = None, energy: EnergyModel | None = None) -> None:
    """Write ``model`` and its provenance to ``path`` atomically (temp name, then rename); ``energy``: the
    circuit's energy model (:mod:`surrogate.energy`), when there is one."""
    units = model.param_units()
    with atomic_h5(path) as f:
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["kind"] = KIND
        f.attrs["design"] = model.design
        f.attrs["architecture"] = json.dumps(model.architecture(), sort_keys=True)
        f.attrs["normalization"] = json.dumps(model.normalization(), sort_keys=True)
        f.attrs["circuit_spec"] = spec.to_json()
        f.attrs["netlist_sha256"] = spec.netlist_sha256
        f.attrs["training_data_sha256"] = data_sha256
        f.attrs["training_data_path"] = str(data_path)
        f.attrs["train_params"] = json.dumps(train_params, sort_keys=True)
        f.attrs["split"] = json.dumps(split, sort_keys=True)
        f.attrs["history"] = json.dumps(history, sort_keys=True)
        f.attrs["fidelity"] = json.dumps(fidelity or {}, sort_keys=True)
        if energy is not None:
            f.attrs["energy_model"] = energy.to_json()
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs["package_version"] = package_version()
        f.attrs["torch_version"] = str(torch.__version__)
        group = f.create_group("weights")
        for name, tensor in model.state_dict().items():
            write_array(group, name, tensor.detach().cpu().numpy(), units.get(name, "1"))


def _attr_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Root attributes of a surrogate file (json attributes decoded), after the kind/version check."""
    try:
        f = open_checked(path, KIND, READABLE_VERSIONS)
    except DatasetFileError as exc:
        raise SurrogateFileError(str(exc)) from exc
    with f:
        meta: dict[str, Any] = {}
        for key, value in f.attrs.items():
            value = _attr_text(value) if isinstance(value, (bytes, str)) else value
            if key in ("architecture", "normalization", "train_params", "split", "history", "fidelity", "energy_model"):
                try:
                    value = json.loads(value)
                except (TypeError, ValueError) as exc:
                    raise SurrogateFileError(f"{path}: attribute '{key}' is not valid json ({exc})") from exc
            meta[key] = value
    check_split_record(meta.get("split"), path)
    return meta


def check_split_record(split: Any, path: str | Path) -> None:
    """The stored split: for each of train/val/test a list of distinct non-negative rows of /g_s, no row
    in two splits. One :class:`SurrogateFileError` naming the file otherwise."""
    if split is None or split == {}:
        return
    if not isinstance(split, dict):
        raise SurrogateFileError(f"{path}: attribute 'split' must be a json object, found {type(split).__name__}")
    owner: dict[int, str] = {}
    for name in SPLITS:
        rows = split.get(f"{name}_g_rows", [])
        if not isinstance(rows, list) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0
                                                 for r in rows):
            raise SurrogateFileError(f"{path}: split record {name}_g_rows must list non-negative rows of /g_s, "
                                     f"found {rows!r}")
        for row in rows:
            if row in owner:
                raise SurrogateFileError(f"{path}: split record puts row {row} of /g_s in both {owner[row]} "
                                         f"and {name}; splits must be disjoint")
            owner[row] = name


def check_compatible(model: SurrogateMVM, spec: CircuitSpec, path: str | Path) -> None:
    """Raise one :class:`SurrogateFileError` listing every way ``model`` does not fit ``spec``."""
    tile = model.tile.to_dict()
    problems = compatibility_problems(tile, spec)
    if problems:
        raise SurrogateFileError(
            f"{path}: surrogate does not fit circuit '{spec.name}' ({spec.rows}x{spec.cols}): "
            + "; ".join(problems) + "; train a surrogate for this circuit or point the config at a matching file"
        )
    for key in ("r_driver_ohm", "r_sense_ohm", "r_wire_row_ohm", "r_wire_col_ohm"):
        want = getattr(spec, key)
        if not np.isclose(float(want), float(tile[key]), rtol=1e-9):
            log.warning("%s: surrogate was trained with %s=%r, circuit '%s' has %r", path, key, tile[key],
                        spec.name, want)


def load_surrogate(path: str | Path, expect_spec: CircuitSpec | None = None,
                   device: str | torch.device | None = None) -> SurrogateMVM:
    """Load a surrogate (parameters frozen, eval mode) and check it against ``expect_spec``.

    Raises :class:`SurrogateFileError` naming the file when it is missing, not HDF5, of another
    kind or format_version, incomplete, or made for another array size, conductance range or
    voltage range than ``expect_spec``. A different netlist or different resistances only log a
    warning (the caller may deliberately reuse a surrogate).
    """
    meta = read_metadata(path)
    try:
        model = from_architecture(meta["architecture"])
        with open_checked(path, KIND, READABLE_VERSIONS) as f:
            state = {name: torch.as_tensor(np.asarray(read_array(ds, path))) for name, ds in f["weights"].items()}
            units = {name: _attr_text(ds.attrs.get("units", "")) for name, ds in f["weights"].items()}
        expected = model.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"/weights is missing {missing} and has unexpected {unexpected}")
        for name, tensor in state.items():
            if tensor.shape != expected[name].shape:
                raise ValueError(f"/weights/{name} has shape {tuple(tensor.shape)}, the architecture needs "
                                 f"{tuple(expected[name].shape)}")
        wrong_units = {name: (unit, want) for name, unit in units.items()
                       if unit != (want := model.param_units().get(name, "1"))}
        if wrong_units:
            name, (unit, want) = sorted(wrong_units.items())[0]
            raise SurrogateFileError(f"{path}: /weights/{name} has units {unit!r}, expected {want!r}")
        model.load_state_dict(state, strict=True)
        model.spec = CircuitSpec.from_json(meta["circuit_spec"])
        problems = compatibility_problems(model.tile.to_dict(), model.spec)
        if problems:
            raise SurrogateFileError(f"{path}: the architecture's tile contradicts the stored circuit "
                                     f"(circuit_spec): {'; '.join(problems)}; the file is inconsistent, retrain it")
    except DatasetFileError as exc:
        raise SurrogateFileError(str(exc)) from exc
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:
        raise SurrogateFileError(f"{path}: corrupt or incomplete surrogate file ({exc})") from exc
    model.metadata = meta
    if "energy_model" in meta:
        try:
            attach(model, EnergyModel.from_dict(meta["energy_model"]))
        except EnergyModelError as exc:
            raise SurrogateFileError(f"{path}: {exc}") from None
    model.requires_grad_(False)
    model.eval()
    if expect_spec is not None:
        check_compatible(model, expect_spec, path)
        if expect_spec.netlist_sha256 != meta.get("netlist_sha256"):
            log.warning("%s: surrogate was trained on another circuit file than %s (netlist sha256 differs)",
                        path, expect_spec.netlist_path or expect_spec.name)
    if device is not None:
        model.to(device)
    return model


def describe(path: str | Path) -> str:
    """Human-readable summary of a surrogate file (the ``inspect`` CLI)."""
    meta = read_metadata(path)
    model = load_surrogate(path)
    spec = json.loads(meta["circuit_spec"])
    spec.pop("netlist_text", None)
    lines = [str(path), "provenance:"]
    for key in ("format_version", "design", "created", "package_version", "torch_version", "netlist_sha256",
                "training_data_path", "training_data_sha256"):
        lines.append(f"  {key}: {meta.get(key)}")
    lines.append(f"integrity: content hash verified ({HASH_ATTR} {meta[HASH_ATTR]})")
    with open_checked(path, KIND, READABLE_VERSIONS) as f:
        lines.append(f"checksums: {checksum_report(f, path)}")
    lines.append(f"circuit: {json.dumps(spec, sort_keys=True)}")
    lines.append(f"architecture: {json.dumps(meta['architecture']['hyperparameters'], sort_keys=True)}")
    lines.append(f"parameters: {sum(p.numel() for p in model.parameters())}  "
                 f"MACs per vector after bind: {model.macs_per_vector()}")
    lines.append(f"train_params: {json.dumps(meta.get('train_params'), sort_keys=True)}")
    lines.append(f"history: {json.dumps(meta.get('history'), sort_keys=True)}")
    fid = meta.get("fidelity") or {}
    if fid:
        for name, m in fid.get("models", {}).items():
            lines.append(f"  fidelity {name:>9}: rms {m['rel_rms_fs']:.3e} of full scale, worst "
                         f"{m['worst_abs_fs']:.3e}, {fid['improvement_over_ideal'].get(name, float('nan')):.1f}x "
                         "better than ideal")
        selection = fid.get("selection") or {}
        if selection:
            lines.append(f"  design auto: {selection['reason']}")
            for name, c in selection.get("metrics", {}).items():
                lines.append(f"  candidate {name:>9}: val rms {c['val']['rel_rms_fs']:.3e}, test rms "
                             f"{c['test']['rel_rms_fs']:.3e} of full scale, {c['macs_per_vector']} MACs per vector")
    else:
        lines.append("fidelity: not measured")
    energy = meta.get("energy_model")
    if energy:
        test = (energy.get("fidelity") or {}).get("test") or {}
        lines.append(f"energy model: {', '.join(energy['features'])}; wire fractions {energy['wire_fraction_row']:g} "
                     f"(rows) {energy['wire_fraction_col']:g} (columns)"
                     + (f"; held-out RMS relative error {test['rms_rel']:.2e} (ideal formula {test['ideal_rms_rel']:.2e})"
                        if test else ""))
    else:
        lines.append("energy model: none")
    return "\n".join(lines)
