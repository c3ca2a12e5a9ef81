"""DNNs on analog crossbars: datasets, models, crossbar layers and conversion, noise, BN mitigation.

Layering (read in this order): config -> mapping / noise -> mvm (tiles) -> layers -> convert ->
mitigation; models, datasets, train and cli around it.
"""

from .config import DEVICE_PRESETS, CrossbarConfig, DevicePreset, get_device_preset
from .convert import convert_to_crossbar, crossbar_layers
from .layers import CrossbarConv2d, CrossbarLayerBase, CrossbarLinear, reprogram
from .mitigation import bn_adapt, bn_finetune, retrain, trainable_parameter_count
from .mvm import IdealTileMVM, TileMVM, TransferTileMVM

__all__ = [
    "CrossbarConfig", "DevicePreset", "DEVICE_PRESETS", "get_device_preset",
    "TileMVM", "IdealTileMVM", "TransferTileMVM",
    "CrossbarLayerBase", "CrossbarLinear", "CrossbarConv2d", "reprogram",
    "convert_to_crossbar", "crossbar_layers",
    "bn_adapt", "bn_finetune", "retrain", "trainable_parameter_count",
]
