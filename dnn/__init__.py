"""DNNs on analog crossbars: datasets, models, crossbar layers and conversion, noise, BN mitigation.

Layering (read in this order): config / settings -> mapping / noise -> mvm (tiles) -> layers ->
convert -> mitigation -> evaluate; models, datasets, train and cli around it. Importing the package
imports nothing heavy: ``dnn.config`` and ``dnn.settings`` stay torch-free (the workflow validates
configs with them), the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CrossbarConfig": "config", "DevicePreset": "config", "DEVICE_PRESETS": "config", "get_device_preset": "config",
    "TileMVM": "mvm", "IdealTileMVM": "mvm", "TransferTileMVM": "mvm",
    "CrossbarLayerBase": "layers", "CrossbarLinear": "layers", "CrossbarConv2d": "layers", "reprogram": "layers",
    "convert_to_crossbar": "convert", "crossbar_layers": "convert",
    "bn_adapt": "mitigation", "bn_finetune": "mitigation", "retrain": "mitigation",
    "trainable_parameter_count": "mitigation",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dnn' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dnn.{_EXPORTS[name]}"), name)
