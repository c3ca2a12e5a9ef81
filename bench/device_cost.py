"""The device model's cost per programming against the crossbar forward it feeds.

Usage::

    python bench/device_cost.py --json bench/device_cost.json      # about a minute on one core
    python bench/device_cost.py --quick                            # fewer repeats

Run it from the repository root, after the default run made ``results/models/digits_bncnn.pt`` and
``results/surrogate/paper1_64.h5`` (or name others with ``--model`` and ``--surrogate``). One thread.

The default run's BN-CNN on the default array's surrogate, converted twice with the default crossbar
settings: once with no device effect and once with every device step on (the ``aihwkit_pcm`` preset's
programming noise with 3 program-and-verify iterations, 64 conductance levels, 1% stuck devices, a
range spread of 0.1, aihwkit's nu(g) drift at 1 day). The device model runs once per programming of a
layer (``dnn.layers``: cached with the conductances until the weights or the programming change), so:

- *device model*: its steps alone on every crossbar layer (``_program_devices``: levels, programming noise
  with verify, faults, range spread; then the nu(g) draw and the drift), from the layers' target
  conductances, median of the repeats: its cost per programming;
- *programming*: every crossbar layer programmed from its weights and bound to the surrogate (``reprogram``
  then ``programmed_conductances``), with and without the device model (context: the bind dominates, and
  on a loaded machine the difference of the two is noisier than the device model's own time);
- *forward*: one forward of a test batch of ``--batch`` images through the programmed model
  (conductances and the surrogate's bind cached), median of the repeats.

The ratio device cost / forward is the share the device model adds per programming to one batch
(an evaluation reads every programming with the whole test set, several batches, in every method).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dnn.config import CrossbarConfig, get_device_preset  # noqa: E402
from dnn.convert import convert_to_crossbar  # noqa: E402
from dnn.datasets import load_dataset  # noqa: E402
from dnn.evaluate import surrogate_tile_model  # noqa: E402
from dnn.layers import CrossbarLayerBase  # noqa: E402
from dnn.noise import apply_drift  # noqa: E402
from dnn.train import load_model  # noqa: E402

BASE = {"weight_bits": 8, "bits_per_cell": 4, "input_bits": 8, "adc_bits": 8, "adc_range_fraction": 0.25,
        "analog_layers": "conv"}
"""config/config.yaml's crossbar settings."""
DEVICE = {**get_device_preset("aihwkit_pcm").device_config(t_drift_s=86400.0 + 20.0),
          "program_verify_iterations": 3, "conductance_levels": 64, "stuck_on_probability": 0.005,
          "stuck_off_probability": 0.005, "g_range_spread": 0.1}
"""Every device step on."""
NO_VERIFY = {k: v for k, v in DEVICE.items() if k != "program_verify_iterations"}
"""The same without program-and-verify (its three re-draws of most devices are the model's largest part)."""


def _layers(model: torch.nn.Module) -> list[CrossbarLayerBase]:
    return [m for m in model.modules() if isinstance(m, CrossbarLayerBase)]


def time_programming(model: torch.nn.Module, repeats: int) -> list[float]:
    """Seconds to program every crossbar layer from its weights, per repeat."""
    out = []
    cpu, f32 = torch.device("cpu"), torch.float32
    for _ in range(repeats):
        for lay in _layers(model):
            lay.reprogram()
        t0 = time.perf_counter()
        for lay in _layers(model):
            lay.programmed_conductances(cpu, f32)
        out.append(time.perf_counter() - t0)
    return out


def time_device_model(model: torch.nn.Module, targets: list[torch.Tensor], repeats: int) -> list[float]:
    """Seconds per repeat of the device model alone on every crossbar layer of `model`: the steps of
    ``CrossbarLayerBase._program_devices`` (levels, programming noise and verify, faults, range spread) and the
    drift exponents with the drift (``_drift_nu``, ``dnn.noise.apply_drift``), from the layers' target
    conductances `targets`; each repeat a new programming (``reprogram``)."""
    out = []
    cpu = torch.device("cpu")
    for _ in range(repeats):
        layers = _layers(model)
        for lay in layers:
            lay.reprogram()
        t0 = time.perf_counter()
        for lay, g_target in zip(layers, targets, strict=True):
            g, _ = lay._program_devices(g_target)
            cfg = lay.config
            if cfg.drift_on:
                nu = lay._drift_nu(g.shape, cpu, g.dtype, g_target / lay.mvm.tile.g_on_s)
                g = apply_drift(g, nu, cfg.t_drift_s, cfg.t0_s)
        out.append(time.perf_counter() - t0)
    return out


def time_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> list[float]:
    """Seconds per forward of batch x through the programmed model (conductances and bind cached)."""
    with torch.no_grad():
        model(x)  # programs and binds
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            out.append(time.perf_counter() - t0)
    return out


def run(model_path: Path, surrogate: Path, batch: int, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    model, meta = load_model(model_path)
    data = load_dataset(**{k: v for k, v in meta["dataset"].items() if k != "name"}, name=meta["dataset"]["name"])
    x = torch.stack([data.test[k][0] for k in range(min(batch, len(data.test)))])
    mvm, info = surrogate_tile_model(surrogate, None)
    plain = convert_to_crossbar(model, CrossbarConfig.from_dict(BASE), mvm)
    device = convert_to_crossbar(model, CrossbarConfig.from_dict({**BASE, **DEVICE}), mvm)
    no_verify = convert_to_crossbar(model, CrossbarConfig.from_dict({**BASE, **NO_VERIFY}), mvm)
    cells = sum(lay.device_stats().cells for lay in _layers(device))
    cpu, f32 = torch.device("cpu"), torch.float32
    targets = [lay.programmed_conductances(cpu, f32) for lay in _layers(plain)]  # no device effect: the targets
    rounds: dict[str, list[float]] = {"device_model_s": [], "device_model_no_verify_s": [],
                                      "programming_plain_s": [], "programming_device_s": [], "forward_s": []}
    per_round = []
    for _ in range(3):  # interleaved rounds: a load change on the machine hits every part alike
        model_s = time_device_model(device, targets, repeats)
        forward_s = time_forward(device, x, repeats)
        per_round.append(statistics.median(model_s) / statistics.median(forward_s))
        rounds["device_model_s"] += model_s
        rounds["device_model_no_verify_s"] += time_device_model(no_verify, targets, repeats)
        rounds["forward_s"] += forward_s
        rounds["programming_plain_s"] += time_programming(plain, repeats)
        rounds["programming_device_s"] += time_programming(device, repeats)
    med = {k: statistics.median(v) for k, v in rounds.items()}
    cost = med["device_model_s"]
    return {
        "device_model_s": cost, "programming_plain_s": med["programming_plain_s"],
        "programming_device_s": med["programming_device_s"], "forward_s": med["forward_s"],
        "ratio_device_to_forward": cost / med["forward_s"],
        "ratio_programming_to_forward": med["programming_device_s"] / med["forward_s"],
        "device_model_no_verify_s": med["device_model_no_verify_s"],
        "ratio_no_verify_to_forward": med["device_model_no_verify_s"] / med["forward_s"],
        "ratio_per_round": per_round, "target_ratio": 0.10, "met": cost / med["forward_s"] <= 0.10,
        "devices": cells, "crossbar_layers": len(_layers(device)), "batch": int(x.shape[0]),
        "repeats": 3 * repeats, "samples": rounds, "device_settings": DEVICE, "crossbar": BASE,
        "tile_model": info, "model": str(model_path),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
                    "platform": platform.platform()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=REPO / "results" / "models" / "digits_bncnn.pt")
    p.add_argument("--surrogate", type=Path, default=REPO / "results" / "surrogate" / "paper1_64.h5")
    p.add_argument("--batch", type=int, default=256, help="test images per forward (the evaluation's batch)")
    p.add_argument("--quick", action="store_true", help="3 repeats per round instead of 7")
    p.add_argument("--json", type=Path)
    ns = p.parse_args(argv)
    for flag, path in (("--model", ns.model), ("--surrogate", ns.surrogate)):
        if not path.is_file():
            print(f"device_cost: {flag} {path} not found (run the default pipeline first, or name the file)",
                  file=sys.stderr)
            return 2
    out = run(ns.model, ns.surrogate, ns.batch, 3 if ns.quick else 7)
    out["command"] = "python bench/device_cost.py" + (" --quick" if ns.quick else "") + (
        f" --json {ns.json}" if ns.json else "")
    print(f"device model {1e3 * out['device_model_s']:.2f} ms per programming of {out['devices']} devices; "
          f"forward of {out['batch']} images {1e3 * out['forward_s']:.1f} ms; ratio {out['ratio_device_to_forward']:.3f} "
          f"({out['ratio_no_verify_to_forward']:.3f} without program-and-verify)")
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
