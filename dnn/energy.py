"""Energy and latency of a DNN on crossbar tiles, per layer and per inference.

An :class:`EnergyMeter` is attached to the crossbar layers of a model (:func:`metering`) while test
images run through it; each layer forward tells it what it read (``CrossbarLayerBase._matmul_chunk``
calls :meth:`EnergyMeter.record` with the DAC'd row voltages). What one layer forward costs:

- **Reads.** A layer forward of ``B`` input vectors (one per output position and image) reads every
  physical tile ``B x phases`` times: ``phases`` = 2 with ``input_polarity: two_phase`` when some input
  is negative (else 1; ``signed``: 1). A layer has ``T = S x P x n_r x n_c`` tiles (bit slices x
  polarity arrays x row tiles x column tiles, :meth:`CrossbarLayerBase.tile_count`).
- **Array**: ``sum over tiles and reads of p_w x t_read_s``; ``p_w`` from the tile model's
  ``bind_power`` (:class:`dnn.mvm.PoweredTileMVM`: cells + wires + driver + sense), bound once per
  programming to the programmed, noise-free conductances. With ``power_sample_vectors`` = k > 0 the
  power is computed for k evenly spaced vectors of each forward and their mean stands for every read of
  that forward. A tile model without power model: the ideal formula ``sum v^2 G``, marked as a fallback.
  The ideal formula is also reported beside it (``array_ideal_formula_j``): the difference is what wires,
  driver, sense and the cells' loading add.
- **Array parts** (``array_parts_j``): where the array energy goes, per part of :data:`dnn.mvm.POWER_PARTS`
  (cells, row wires, column wires, driver, sense), from the tile model's ``bind_power_parts``
  (:class:`dnn.mvm.PartsPoweredTileMVM`; ``power_split`` names how: exact per-part quadratic forms, the
  surrogate energy model's lumped array, or the ideal array with everything in the cells), sampled and
  scaled like the total, which is then their sum. None when the tile model tells only the total. Where the
  parts are quadratic forms (:class:`dnn.mvm.FormsPoweredTileMVM`: the exact tile model, a linear surrogate
  energy model), the forms of the ``S x P x n_c`` tiles that read one row tile's voltages are summed once per
  programming and applied once per row tile (float64): the same sums, one matmul per row tile, not per tile.
- **DAC**: one conversion per driven row of every physical tile and read: ``B x phases x S x P x n_c x
  n_in`` (``n_in`` = rows in use over all row tiles), at ``input_bits - 1`` (two_phase: unipolar
  magnitude) or ``input_bits`` (signed) bits.
- **ADC, sense, shift-and-add**: one each per column signal after the analog pair (or reference)
  subtraction, for the columns in use: ``B x phases x S x n_r x n_out``, at ``adc_bits``.
- **Latency**: all tiles of a layer read in parallel, reads one after another: ``B x phases x (t_read_s
  + min(columns_per_adc, cols) / adc_sample_rate_hz)`` (:class:`dnn.periphery.PeripheryModel`). Layers
  run one after another; digital layers (BN, pooling, activations, a digital classifier) cost nothing here.

Converters with 0 bits (``input_bits`` or ``adc_bits`` 0: ideal, unquantized) have no cost model: their
energy is NaN (so is the total), never a silent 0.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layers import CrossbarLayerBase
from .mvm import (
    POWER_PARTS,
    BoundPower,
    FormsPoweredTileMVM,
    PartsPoweredTileMVM,
    PoweredTileMVM,
    all_in_cells,
    bind_power_forms,
    ideal_power,
)
from .periphery import EnergySettings, PeripheryModel

logger = logging.getLogger(__name__)

ENERGY_PARTS = ("array", "dac", "adc", "sense", "shift_add")
"""The parts of the energy breakdown: the array (tile model) and the periphery."""
PERIPHERY_PARTS = ("dac", "adc", "sense", "shift_add")
IDEAL_FORMULA = "ideal v^2 G"
IDEAL_SPLIT = "ideal formula: all in the cells"
"""How the array energy is split when it comes from the ideal formula (a fallback)."""


@dataclass(frozen=True)
class _BoundArray:
    """A layer's power functions bound to its programmed conductances (:meth:`EnergyMeter._bound_power`)."""

    power: BoundPower
    """v_v [T, B, rows] -> p_w [T, B] (W)."""
    parts: BoundPower | None
    """v_v [T, B, rows] -> p_w [T, B, len(POWER_PARTS)] (W); None when the tile model tells only the total."""
    g_group: torch.Tensor
    power_model: str
    power_split: str
    group_parts: BoundPower | None = None
    """v_v [n_r, B, rows] -> p_w [n_r, B, len(POWER_PARTS)] (W) summed over the tiles that read row tile r's
    voltages (the sum of their quadratic forms, :class:`dnn.mvm.FormsPoweredTileMVM`); None: ``parts`` per tile."""


def _summed(parts: BoundPower) -> BoundPower:
    """The total power [T, B] of a split one [T, B, parts]."""
    return lambda v_v: parts(v_v).sum(dim=-1)


@dataclass
class LayerTally:
    """What one crossbar layer read while the meter watched (sums over its forwards)."""

    name: str
    rows: int
    cols: int
    grid: tuple[int, int, int, int]
    """(slices S, polarity arrays P, row tiles n_r, column tiles n_c)."""
    n_in: int
    n_out: int
    vectors: int = 0
    """Input vectors (one per output position and image)."""
    reads: int = 0
    """Reads of each tile: vectors x phases."""
    array_j: float = 0.0
    array_parts_j: list[float] | None = None
    """The array energy per part of :data:`dnn.mvm.POWER_PARTS` (J, summed over forwards); None when the tile
    model tells only the total."""
    array_ideal_j: float = 0.0
    dac_conversions: int = 0
    adc_conversions: int = 0
    dac_bits: int = 0
    adc_bits: int = 0
    t_read_s: float = 0.0
    power_model: str = ""
    power_split: str = ""

    @property
    def tiles(self) -> int:
        s, p, n_r, n_c = self.grid
        return s * p * n_r * n_c


class EnergyMeter:
    """Counts the reads of crossbar layers and the array energy they draw (see the module docstring)."""

    def __init__(self, periphery: PeripheryModel, power_sample_vectors: int = 0) -> None:
        self.periphery = periphery
        self.power_sample_vectors = power_sample_vectors
        self.layers: dict[str, LayerTally] = {}
        self._power: dict[int, tuple[Any, _BoundArray]] = {}  # id(layer) -> (g_s, bound)

    def _bound_power(self, layer: CrossbarLayerBase, g_s: torch.Tensor, grid: tuple[int, int, int, int]
                     ) -> _BoundArray:
        """The tile model's power function bound to ``g_s`` (split over the parts when the model can), the row
        conductance sums [n_r, rows] (S) of the tiles that read each row tile (for the ideal formula) and the
        power model's and split's names; cached while the layer keeps the same programmed tensor."""
        cached = self._power.get(id(layer))
        if cached is not None and cached[0] is g_s:
            return cached[1]
        g = g_s.detach()
        s, p, n_r, n_c = grid
        g_row = g.sum(dim=2)  # [T, rows]
        g_group = g_row.reshape(s, p, n_r, n_c, -1).sum(dim=(0, 1, 3))  # [n_r, rows]

        power = ideal_power(g)
        model = f"{IDEAL_FORMULA} (fallback: the tile model has no power model)"
        parts: BoundPower | None = all_in_cells(power)
        split = IDEAL_SPLIT
        group_parts: BoundPower | None = None
        mvm = layer.mvm
        if isinstance(mvm, PoweredTileMVM):
            split_parts: BoundPower | None = None
            split = "none: the tile model tells only the total"
            if isinstance(mvm, PartsPoweredTileMVM):  # the parts, when there are any, give the total too
                try:
                    q = None
                    if isinstance(mvm, FormsPoweredTileMVM):  # quadratic forms: the tiles of a row tile summed
                        with contextlib.suppress(ValueError):  # none (e.g. a non-linear model): per tile below
                            q = mvm.power_forms(g)  # [T, parts, rows, rows] (float64)
                    if q is None:
                        split_parts = mvm.bind_power_parts(g)
                    else:  # summed once per programming, applied in float64 to each row tile's voltages
                        split_parts = bind_power_forms(q, torch.float64)
                        group_parts = bind_power_forms(q.reshape(s, p, n_r, n_c, *q.shape[1:]).sum(dim=(0, 1, 3)),
                                                       torch.float64)
                    split = mvm.power_split
                except ValueError as exc:
                    split = f"none: {exc}"
            try:
                power = mvm.bind_power(g) if split_parts is None else _summed(split_parts)
                parts, model = split_parts, mvm.power_model
            except ValueError as exc:
                model, split, group_parts = f"{IDEAL_FORMULA} (fallback: {exc})", IDEAL_SPLIT, None
        if model.startswith(IDEAL_FORMULA + " (fallback"):
            logger.warning("layer %s: array energy from the ideal formula: %s", layer.name or "?", model)
        bound = _BoundArray(power=power, parts=parts, g_group=g_group, power_model=model, power_split=split,
                            group_parts=group_parts)
        self._power[id(layer)] = (g_s, bound)
        return bound

    @torch.no_grad()
    def record(self, layer: CrossbarLayerBase, v_read: torch.Tensor, g_s: torch.Tensor,
               grid: tuple[int, int, int, int], vectors: int) -> None:
        """One layer forward: ``v_read`` [n_r, vectors x phases, rows] the row voltages every tile of row
        tile r read (V), ``g_s`` [T, rows, cols] the programmed conductances (S), ``grid`` (S, P, n_r, n_c).

        The ideal formula is summed over every read (cheap: the tiles of a row tile share its voltages).
        The tile model's power is computed for ``power_sample_vectors`` evenly spaced reads (all when 0 or
        fewer reads) and scaled by the ideal formula's ratio, every read to the sampled ones (a ratio
        estimator: exact when the power is proportional to the ideal formula, and when every read is
        sampled)."""
        cfg, tile = layer.config, layer.mvm.tile
        n_in, n_out = layer.weight_matrix().shape
        tally = self.layers.get(layer.name)
        if tally is None:
            tally = self.layers[layer.name] = LayerTally(
                name=layer.name, rows=tile.rows, cols=tile.cols, grid=grid, n_in=int(n_in), n_out=int(n_out),
                dac_bits=(cfg.input_bits - 1 if cfg.input_polarity == "two_phase" else cfg.input_bits)
                if cfg.input_bits else 0, adc_bits=cfg.adc_bits, t_read_s=tile.t_read_s)
        s, p, n_r, n_c = grid
        reads = int(v_read.shape[1])
        bound = self._bound_power(layer, g_s, grid)
        g_group, tally.power_model, tally.power_split = bound.g_group, bound.power_model, bound.power_split
        v64 = v_read.detach().to(g_group.dtype)
        ideal_all = float(((v64 * v64).sum(dim=1) * g_group).sum())  # W summed over every read
        k = reads if self.power_sample_vectors <= 0 else min(self.power_sample_vectors, reads)
        if k < reads:
            v64 = v64.index_select(1, torch.linspace(0, reads - 1, k, device=v64.device).round().long())
        if bound.group_parts is not None:  # the summed forms of each row tile's tiles, on its voltages
            sampled_parts = bound.group_parts(v64.double()).sum(dim=(0, 1))
            sampled = float(sampled_parts.sum())
        elif bound.parts is not None:  # W per part summed over the sampled reads; the total is their sum
            v_all = v64[None, None, :, None].expand(s, p, n_r, n_c, k, tile.rows).reshape(-1, k, tile.rows)
            sampled_parts = bound.parts(v_all.to(g_s.dtype)).double().sum(dim=(0, 1))
            sampled = float(sampled_parts.sum())
        else:
            v_all = v64[None, None, :, None].expand(s, p, n_r, n_c, k, tile.rows).reshape(-1, k, tile.rows)
            sampled_parts, sampled = None, float(bound.power(v_all.to(g_s.dtype)).sum())  # W over the sampled reads
        scale = 1.0
        if k < reads:
            ideal_sampled = float(((v64 * v64).sum(dim=1) * g_group).sum())
            scale = ideal_all / ideal_sampled if ideal_sampled > 0 else reads / k
        tally.array_j += sampled * scale * tile.t_read_s
        if sampled_parts is None:
            tally.array_parts_j = None
        elif tally.vectors == 0 or tally.array_parts_j is not None:
            add = (sampled_parts * (scale * tile.t_read_s)).tolist()
            tally.array_parts_j = add if tally.array_parts_j is None else [
                a + b for a, b in zip(tally.array_parts_j, add, strict=True)]
        tally.array_ideal_j += ideal_all * tile.t_read_s
        tally.vectors += vectors
        tally.reads += reads
        tally.dac_conversions += reads * s * p * n_c * int(n_in)
        tally.adc_conversions += reads * s * n_r * int(n_out)

    # ------------------------------------------------------------------ results
    def layer_costs(self, tally: LayerTally, n_images: int) -> dict[str, Any]:
        """Per-image energy (J, by part) and latency (s) of one layer, and the counts behind them."""
        per = self.periphery
        dac_j = tally.dac_conversions * per.dac_energy_j(tally.dac_bits) if tally.dac_bits else math.nan
        adc_j = tally.adc_conversions * per.adc_energy_j(tally.adc_bits) if tally.adc_bits else math.nan
        parts = {"array": tally.array_j, "dac": dac_j, "adc": adc_j,
                 "sense": tally.adc_conversions * per.sense_energy_j,
                 "shift_add": tally.adc_conversions * per.shift_add_energy_j}
        parts = {k: v / n_images for k, v in parts.items()}
        read_s = per.read_time_s(tally.t_read_s, tally.cols)
        return {
            "name": tally.name, "rows": tally.rows, "cols": tally.cols, "tiles": tally.tiles,
            "grid": {"slices": tally.grid[0], "polarity_arrays": tally.grid[1], "row_tiles": tally.grid[2],
                     "column_tiles": tally.grid[3]},
            "n_in": tally.n_in, "n_out": tally.n_out,
            "vectors_per_inference": tally.vectors / n_images, "reads_per_inference": tally.reads / n_images,
            "dac_conversions_per_inference": tally.dac_conversions / n_images,
            "adc_conversions_per_inference": tally.adc_conversions / n_images,
            "dac_bits": tally.dac_bits, "adc_bits": tally.adc_bits, "t_read_s": tally.t_read_s,
            "read_time_s": read_s, "power_model": tally.power_model,
            "energy_j": sum(parts.values()), "energy_breakdown_j": parts,
            "array_parts_j": None if tally.array_parts_j is None else {
                name: e / n_images for name, e in zip(POWER_PARTS, tally.array_parts_j, strict=True)},
            "power_split": tally.power_split,
            "array_ideal_formula_j": tally.array_ideal_j / n_images,
            "latency_s": tally.reads / n_images * read_s,
        }

    def summary(self, n_images: int) -> dict[str, Any]:
        """Per-layer and per-inference energy and latency (JSON-able), per image of the ``n_images`` run."""
        layers = [self.layer_costs(t, n_images) for t in self.layers.values()]
        breakdown = {k: sum(layer["energy_breakdown_j"][k] for layer in layers) for k in ENERGY_PARTS}
        models = sorted({layer["power_model"] for layer in layers})
        splits = sorted({layer["power_split"] for layer in layers})
        known = bool(layers) and all(layer["array_parts_j"] is not None for layer in layers)
        return {
            "energy_per_inference_j": sum(breakdown.values()),
            "latency_per_inference_s": sum(layer["latency_s"] for layer in layers),
            "energy_breakdown_j": breakdown,
            "array_j": breakdown["array"],
            "periphery_j": sum(breakdown[k] for k in PERIPHERY_PARTS),
            "array_ideal_formula_j": sum(layer["array_ideal_formula_j"] for layer in layers),
            "array_parts_j": {k: sum(layer["array_parts_j"][k] for layer in layers) for k in POWER_PARTS}
            if known else None,
            "power_model": models[0] if len(models) == 1 else models,
            "power_split": splits[0] if len(splits) == 1 else splits,
            "n_images": n_images,
            "periphery": self.periphery.to_dict(),
            "per_layer": layers,
        }


@contextlib.contextmanager
def metering(model: nn.Module, meter: EnergyMeter) -> Iterator[EnergyMeter]:
    """Attach ``meter`` to every crossbar layer of ``model`` for the duration (detached afterwards)."""
    layers = [m for m in model.modules() if isinstance(m, CrossbarLayerBase)]
    for m in layers:
        m.energy_meter = meter
    try:
        yield meter
    finally:
        for m in layers:
            m.energy_meter = None


@torch.no_grad()
def measure_energy(model: nn.Module, images: torch.Tensor, settings: EnergySettings) -> dict[str, Any]:
    """Energy and latency per inference of ``model`` on ``images`` [N, ...] (one forward in eval mode),
    per layer and in total (:meth:`EnergyMeter.summary`)."""
    meter = EnergyMeter(settings.periphery(), settings.power_sample_vectors)
    was_training = model.training
    model.eval()
    try:
        with metering(model, meter):
            model(images)
    finally:
        model.train(was_training)
    return meter.summary(len(images))


def first_images(loader: Any, n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The first ``n`` inputs of ``loader`` (fewer when it holds fewer)."""
    out, have = [], 0
    for x, _y in loader:
        out.append(x[: n - have])
        have += len(out[-1])
        if have >= n:
            break
    x = torch.cat(out)
    return x if device is None else x.to(device)


__all__ = ["EnergyMeter", "LayerTally", "metering", "measure_energy", "first_images", "ENERGY_PARTS",
           "PERIPHERY_PARTS", "POWER_PARTS"]
