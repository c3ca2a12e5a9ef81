"""Convert a float model into one whose Conv2d (and optionally Linear) layers run on crossbar tiles."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from .config import CrossbarConfig
from .layers import CrossbarConv2d, CrossbarLayerBase, CrossbarLinear
from .mvm import TileMVM

logger = logging.getLogger(__name__)

DEFAULT_MAPPING: dict[type[nn.Module], type[CrossbarLayerBase]] = {
    nn.Conv2d: CrossbarConv2d,
    nn.Linear: CrossbarLinear,
}


def convert_to_crossbar(
    model: nn.Module,
    xbar_config: CrossbarConfig,
    mvm: TileMVM,
    mapping: Mapping[type[nn.Module], type[CrossbarLayerBase]] | None = None,
    exclude: Iterable[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Replace mapped layers of `model` by crossbar layers built with `cls.from_float(module, cfg, mvm, name)`.

    - `mapping`: {float layer type: crossbar class}, matched on the exact type (default Conv2d, Linear).
    - `xbar_config.analog_layers`: 'conv' converts only Conv2d layers (Paper 1: BN, pooling,
      activations and the classifier stay digital); 'all' converts every mapped layer.
    - `exclude` (plus `xbar_config.exclude`): qualified module names kept digital.
    - `overrides`: {qualified name: partial CrossbarConfig dict} for individual layers.
    - The model is deep-copied unless `inplace`. Unknown names in `exclude`/`overrides` are an error.
    """
    mapping = dict(DEFAULT_MAPPING if mapping is None else mapping)
    excluded = set(exclude) | set(xbar_config.exclude)
    overrides = dict(overrides or {})
    names = {name for name, _ in model.named_modules()}
    for kind, given in (("exclude", excluded), ("overrides", set(overrides))):
        unknown = sorted(given - names)
        if unknown:
            raise ValueError(f"{kind} names {unknown} are not modules of the model; valid names: "
                             f"{sorted(n for n in names if n)}")

    target = model if inplace else copy.deepcopy(model)
    root_cls = mapping.get(type(target))
    if root_cls is not None:  # the model is a single layer
        if xbar_config.analog_layers == "conv" and not isinstance(target, nn.Conv2d):
            return target
        return root_cls.from_float(target, xbar_config, mvm, name="")
    converted: list[str] = []
    for name, module in list(target.named_modules()):
        cls = mapping.get(type(module))
        if cls is None or name in excluded:
            continue
        if xbar_config.analog_layers == "conv" and not isinstance(module, nn.Conv2d):
            continue
        cfg = xbar_config.replace(**overrides[name]) if name in overrides else xbar_config
        _set_submodule(target, name, cls.from_float(module, cfg, mvm, name=name))
        converted.append(name)

    not_converted = sorted(set(overrides) - set(converted))
    if not_converted:
        raise ValueError(f"overrides given for layers that were not converted: {not_converted}")
    logger.info("converted %d layer(s) to crossbar: %s", len(converted), ", ".join(converted) or "none")
    if not converted:
        logger.warning("no layer was converted (analog_layers=%r, exclude=%s)", xbar_config.analog_layers,
                       sorted(excluded))
    return target


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def crossbar_layers(model: nn.Module) -> dict[str, CrossbarLayerBase]:
    """Qualified name -> crossbar layer, for every crossbar layer in `model`."""
    return {n: m for n, m in model.named_modules() if isinstance(m, CrossbarLayerBase)}
