"""Distribution-matched SPICE samples (as GENIEx does): the conductance tiles a trained model programs
onto a circuit and the row voltages its real activations produce, saved as an ``.npz`` that the SPICE
stage's ``from_file`` sampler draws from (``g_s`` [n, rows, cols] S, ``v_v`` [m, rows] V).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spice.tilebank import save_tile_bank

from .config import CrossbarConfig
from .convert import convert_to_crossbar, crossbar_layers
from .layers import CrossbarConv2d
from .mapping import dac_quantize, tile_inputs, unfold_conv_input
from .mvm import IdealTileMVM

log = logging.getLogger(__name__)


@torch.no_grad()
def tile_bank(model: nn.Module, config: CrossbarConfig, rows: int, cols: int, g_off_s: float, g_on_s: float,
              v_read_max_v: float, images: torch.Tensor, n_tiles: int, n_vectors: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Conductance tiles and row-voltage vectors of ``model`` mapped onto ``rows`` x ``cols`` tiles.

    Row voltages are the DAC outputs of every crossbar layer's real inputs for ``images``; with the
    two-phase read the positive and the negative read are both kept (each is a non-negative vector).
    Returns ``(g_s [n_tiles, rows, cols], v_v [n_vectors, rows])`` drawn without replacement (seeded).
    """
    mvm = IdealTileMVM(rows, cols, g_off_s, g_on_s, v_read_max_v)
    xmodel = convert_to_crossbar(model, config, mvm).eval()
    layers = crossbar_layers(xmodel)
    inputs: dict[str, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(lambda mod, inp, out, name=name: inputs.__setitem__(name, inp[0]))
             for name, layer in layers.items()]
    try:
        xmodel(images)
    finally:
        for h in hooks:
            h.remove()
    g_all, v_all = [], []
    for name, layer in layers.items():
        g_all.append(layer.programmed_conductances(images.device, images.dtype))
        x = inputs[name]
        if isinstance(layer, CrossbarConv2d):
            x = unfold_conv_input(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
        else:
            x = x.reshape(-1, x.shape[-1])
        v, _ = dac_quantize(tile_inputs(x, rows), config.input_bits, v_read_max_v)  # [n_r, B, rows]
        v = v.reshape(-1, rows)
        v_all += [v.clamp_min(0.0), (-v).clamp_min(0.0)]
    g = torch.cat(g_all).cpu().numpy()
    v = torch.cat(v_all).cpu().numpy()
    v = v[np.abs(v).sum(1) > 0]  # an all-zero read carries no information
    rng = np.random.default_rng(seed)
    g = g[rng.permutation(len(g))[:n_tiles]]
    v = v[rng.permutation(len(v))[:n_vectors]]
    log.info("tile bank: %d tiles (of %d) and %d voltage vectors from %d layers", len(g), len(torch.cat(g_all)),
             len(v), len(layers))
    # float32 rounding can step a hair outside the physical ranges; clip in float64
    return np.clip(g.astype(np.float64), g_off_s, g_on_s), np.clip(v.astype(np.float64), 0.0, v_read_max_v)


def save_bank(path: str | Path, g_s: np.ndarray, v_v: np.ndarray) -> None:
    """Write the tile bank (``spice.tilebank``: versioned, units, atomic)."""
    save_tile_bank(path, g_s, v_v)
