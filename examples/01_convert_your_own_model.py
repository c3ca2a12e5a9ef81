"""Run your own PyTorch model on crossbar tiles, then recover its BatchNorm statistics.

Builds a tiny BN-CNN, converts its conv layers to crossbar layers on a 16x16 Paper-1 circuit
(1 kOhm driver and sense, 5 Ohm wire segments) solved exactly (``spice.nodal``), and compares the
outputs with the float model: first through an ideal array (only quantization), then through the
real one, then after BN adaptation (re-estimated BN statistics, no training). Runs in seconds on CPU:

    python examples/01_convert_your_own_model.py
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dnn import CrossbarConfig, IdealTileMVM, bn_adapt, convert_to_crossbar, crossbar_layers
from dnn.evaluate import exact_tile_model
from spice import spec_from_config


def tiny_bn_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """RMS difference relative to the RMS of the reference output."""
    return float((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())


def main() -> None:
    torch.manual_seed(0)
    images = torch.rand(64, 1, 8, 8)
    model = tiny_bn_cnn()
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.momentum = None  # cumulative average: the float model's exact statistics of these images
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()
    features = model[:-1]  # everything before the classifier: what the crossbar layers change
    with torch.no_grad():
        reference = features(images)

    # The circuit: a shipped circuit file through a preset, shrunk to 16x16 tiles.
    spec = spec_from_config("paper1_16", {"preset": "paper1_32_w5", "rows": 16, "cols": 16})
    config = CrossbarConfig()  # 8-bit weights as 2 x 4-bit cells, 8-bit DAC and ADC, conv layers analog
    ideal = IdealTileMVM(spec.rows, spec.cols, spec.g_off_s, spec.g_on_s, spec.v_read_max_v)
    exact, _ = exact_tile_model(spec)

    for label, tile_model in (("ideal array", ideal), ("real array", exact)):
        analog = convert_to_crossbar(model, config, tile_model)  # a deep copy; `model` is untouched
        with torch.no_grad():
            out = analog.eval()[:-1](images)
        print(f"{label}: {len(crossbar_layers(analog))} crossbar layers, "
              f"feature error vs float {relative_error(out, reference):.3f}")

    loader = DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=32)
    bn_adapt(analog, loader, n_draws=1)
    with torch.no_grad():
        out = analog[:-1](images)
    print(f"real array after BN adaptation: feature error vs float {relative_error(out, reference):.3f}")


if __name__ == "__main__":
    main()
