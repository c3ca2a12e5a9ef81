"""PC2 diagnostic (Bhattacharjee et al. 2023): how far a crossbar layer's distortion is from a gain.

For every crossbar layer, the software layer and the crossbar layer see the *same* input (captured in
the non-ideal forward); the scatter of (software output, crossbar output) is reduced by PCA. A pure
per-channel gain/offset — what BatchNorm can undo — puts every point on a line (PC2 = 0); random read
noise, non-linear cells and coarse ADC levels spread the points across it. The figure reported is
``pc2_ratio = sqrt(lambda_2 / lambda_1)`` of the standardized scatter (0 = a line, 1 = no relation).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .layers import CrossbarLayerBase


def pc2_ratio(ideal: np.ndarray, measured: np.ndarray) -> float:
    """sqrt(lambda_2 / lambda_1) of the covariance of the standardized 2-D scatter."""
    pts = np.stack([np.ravel(ideal), np.ravel(measured)], axis=1).astype(float)
    pts = pts - pts.mean(0)
    std = pts.std(0)
    if np.any(std == 0):
        return float("nan")
    pts = pts / std
    lam = np.sort(np.linalg.eigvalsh(np.cov(pts.T)))[::-1]
    return float(np.sqrt(max(lam[1], 0.0) / lam[0]))


@torch.no_grad()
def layer_pc2(software: nn.Module, crossbar: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """PC2 ratio per crossbar layer for one input batch ``x`` (both models in eval mode)."""
    float_modules = dict(software.named_modules())
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for name, module in crossbar.named_modules():
        if isinstance(module, CrossbarLayerBase):
            def hook(mod, inputs, output, name=name):
                captured[name] = (inputs[0].detach(), output.detach())
            hooks.append(module.register_forward_hook(hook))
    try:
        crossbar.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    result = {}
    for name, (inp, out) in captured.items():
        ref = float_modules[name].eval()(inp)
        result[name] = pc2_ratio(ref.cpu().numpy(), out.cpu().numpy())
    return result
