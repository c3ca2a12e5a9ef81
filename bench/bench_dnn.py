"""DNN-stage throughput and surrogate-vs-exact accuracy: digital, ideal-quantized, surrogate and exact crossbars.

Usage::

    python bench/bench_dnn.py                                  # default model trained here, default surrogate
    python bench/bench_dnn.py --model results/models/mnist_bncnn.pt --surrogate results/surrogate/paper1_64.h5
    python bench/bench_dnn.py --quick                          # smoke run: batch 64, smaller model (~1-2 min)
    python bench/bench_dnn.py --json bench/dnn.json            # also write every figure
    python bench/bench_dnn.py --no-timing --crossbar-json '{"adc_bits": 0}'   # accuracy gap without the ADC
    python bench/bench_dnn.py --model results/models/digits_vgg8.pt --surrogate sinh32.h5 --circuit-name sinh32 \
        --circuit '{"netlist": "data/circuits/memristor_sinh.cir", "preset": "paper1_32_w5", "v_read_max_v": 0.5}' \
        --no-exact                                             # non-linear cells: no linear exact mode

What is measured (all in one process, one run, with a fixed ``torch.set_num_threads``, on CPU or with
``--device cuda`` on a GPU: models and batches live there, timings wait for the device):

- Throughput, images/s at batch 256 (``--batch-size``), of the same trained model run as
  digital (float), ideal-quantized crossbar (``dnn.mvm.IdealTileMVM`` of the circuit's tile: rows x
  cols, conductance range, v_max; default ``CrossbarConfig``: 8-bit weights as 2x4-bit cells,
  differential pairs, 8-bit DAC/ADC, conv layers analog), surrogate crossbar (each ``--surrogate``
  file through ``surrogate.io.load_surrogate``), exact physics (``dnn.evaluate.exact_tile_model``:
  ``dnn.mvm.TransferTileMVM`` with ``spice.nodal.transfer_matrix`` per tile for linear cells, the
  batched Newton solve of ``spice.exact`` for the sinh and 1T1R cells; ``--reference spice``: ngspice
  solves every MVM, for tiny runs) and, with per-forward read noise on (G redrawn
  and the MVM re-bound every forward), ideal-quantized and surrogate crossbars.
  Every G-only step (quantize, slice, map, bind) is cached by the crossbar layers, so each mode
  reports its *first forward* (programming + bind included; for exact mode this is dominated by
  the nodal solves, and it is what every forward costs once read noise redraws G) and its
  *steady state*: the median over ``--rounds`` rounds of the time per batch, the modes interleaved
  within each round so that load changes on a shared machine hit every mode alike. Ratios are
  steady-state time per batch relative to the ideal-quantized crossbar and to digital.
- Accuracy (noise-free, parasitics only): test accuracy of the converted model with each tile
  model, without mitigation and after BN adaptation (``dnn.mitigation.bn_adapt`` on a seeded subset
  of ``--calibration-samples`` training images); the gap |surrogate - exact| in points is the
  surrogate's DNN-level error against the circuit's exact physics (non-linear cells included). ``--crossbar-json`` overrides
  the CrossbarConfig of every crossbar mode (e.g. ``{"adc_bits": 0}``: on the Paper-1 preset the
  1 kOhm driver/sense shrink the column currents to ~20% of the fixed ADC range, which by itself
  takes exact physics to near chance, so the gap is best read with and without the ADC).

Targets (issues): surrogate crossbar <= 3x the ideal-quantized time on CPU; surrogate accuracy
within 1 point of exact mode. Both are printed as met / not met; nothing is asserted.

Default model: ``bn_cnn`` on ``mnist_subset``, trained here (seeded, ``--epochs`` 2) unless
``--model`` gives a ``.pt`` from ``python -m dnn train`` (its own dataset split is then used).
Default circuit: the Paper-1 64x64 preset (``paper1_64_w5``). Default surrogate:
``results/surrogate/paper1_64.h5`` (from the workflow); ``--surrogate`` may be repeated.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from dnn import evaluate as dnn_evaluate
from dnn.config import CrossbarConfig
from dnn.convert import convert_to_crossbar, crossbar_layers
from dnn.datasets import DatasetSplit, load_dataset
from dnn.mitigation import bn_adapt
from dnn.models import build_model
from dnn.mvm import TileMVM
from dnn.train import evaluate, load_model, make_loader, seed_everything, train_model
from spice.circuit import CircuitSpec, spec_from_config

logger = logging.getLogger("bench_dnn")

DEFAULT_SURROGATE = Path("results/surrogate/paper1_64.h5")
SURROGATE_TIME_TARGET = 3.0
"""Issue target: surrogate crossbar time per batch <= this many times the ideal-quantized crossbar's."""
ACCURACY_GAP_TARGET_POINTS = 1.0
"""Issue target: |surrogate - exact| test accuracy within this many percentage points."""
FULL = {"batch_size": 256, "epochs": 2, "lr": 1e-3, "n_train": None, "width": 1.0, "n_test": None, "rounds": 3,
        "batches_per_round": 1, "calibration_samples": 512, "read_noise_sigma": 0.1}
"""Defaults of the full run: batch 256, bn_cnn (width 1) trained 2 epochs on the whole training split."""
QUICK = {"batch_size": 64, "epochs": 5, "lr": 1e-2, "n_train": 1000, "width": 0.25, "n_test": 128, "rounds": 2,
         "batches_per_round": 1, "calibration_samples": 64, "read_noise_sigma": 0.0}
"""--quick: batch 64, a quarter-width model (24 tiles of 64x64 instead of 60: the exact bind is ~1-2 s per
tile) trained on 1,000 images, 128 test images, 64 calibration images, no read-noise modes. A smoke run, not the figures to quote."""
MIN_MEANINGFUL_ACCURACY = 0.5
"""Below this digital test accuracy the accuracy figures are flagged as not meaningful."""


# ----------------------------------------------------------------------------- setup
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"smaller model and fewer batches (defaults {QUICK})")
    p.add_argument("--json", default="", help="write every figure to this path")
    p.add_argument("--model", default="", help=".pt from `python -m dnn train` (default: train bn_cnn here)")
    p.add_argument("--surrogate", action="append", default=[],
                   help=f"surrogate .h5 (repeatable; default {DEFAULT_SURROGATE})")
    p.add_argument("--circuit-name", default="paper1_64")
    p.add_argument("--circuit", default='{"preset": "paper1_64_w5"}', help="circuit config entry (JSON)")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward (default 256; quick 64)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]: where models and batches run")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (median taken)")
    p.add_argument("--batches-per-round", type=int, default=None, help="timed batches per mode and round")
    p.add_argument("--read-noise-sigma", type=float, default=None,
                   help="relative read noise of the noisy modes (default 0.1; 0 = skip them, quick's default)")
    p.add_argument("--calibration-samples", type=int, default=None, help="training images for BN adaptation")
    p.add_argument("--n-test", type=int, default=None, help="test images for accuracy (default: full split)")
    p.add_argument("--epochs", type=int, default=None, help="epochs when training the default model")
    p.add_argument("--n-train", type=int, default=None, help="training images when training the default model")
    p.add_argument("--width", type=float, default=None, help="bn_cnn width when training the default model")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate when training the default model")
    p.add_argument("--crossbar-json", default="",
                   help='CrossbarConfig overrides for every crossbar mode, e.g. \'{"adc_bits": 0}\' (default: none)')
    p.add_argument("--reference", choices=["exact", "spice"], default="exact",
                   help="exact mode: the circuit's exact physics (nodal transfer matrix for linear cells, Newton "
                        "solve for sinh/1T1R cells; default) or spice (ngspice solves every MVM: tiny runs only)")
    p.add_argument("--no-timing", action="store_true", help="accuracy only (skip the throughput measurement)")
    p.add_argument("--no-exact", action="store_true",
                   help="skip the exact mode and the accuracy gap (the time target is still judged): exact mode "
                        "solves every tile at bind, and for non-linear cells every tile-vector")
    p.add_argument("--bn-adapt-only", action="store_true",
                   help="accuracy after BN adaptation only (no test pass without mitigation: half the cost of "
                        "slow exact modes)")
    p.add_argument("--seed", type=int, default=0, help="data split, training, calibration and noise seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():  # flags given explicitly win
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not args.surrogate:
        args.surrogate = [str(DEFAULT_SURROGATE)]
    return args


def environment(threads: int) -> dict[str, Any]:
    """Where the figures come from: versions, cores, threads, load (1-minute load average)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": threads, "load_avg_1min_start": load}


def prepare_model(args: argparse.Namespace) -> tuple[nn.Module, DatasetSplit, dict[str, Any]]:
    """The trained float model and its dataset split (the model's own split when loaded from --model)."""
    if args.model:
        model, meta = load_model(args.model)
        spec = dict(meta["dataset"])
        data = load_dataset(spec["name"], spec.get("root"), spec.get("seed", 0), n_test=args.n_test)
        info = {"source": str(args.model), "architecture": meta["model_name"], "dataset": spec["name"],
                "model_kwargs": meta["model_kwargs"]}
        return model.eval(), data, info
    data = load_dataset("mnist_subset", None, args.seed, n_train=args.n_train, n_test=args.n_test)
    kwargs = {"in_channels": data.in_channels, "num_classes": data.num_classes, "image_size": data.image_size,
              "width": args.width}
    seed_everything(args.seed)
    model = build_model("bn_cnn", **kwargs)
    t0 = time.perf_counter()
    train_model(model, make_loader(data.train, 64, shuffle=True, seed=args.seed), epochs=args.epochs, lr=args.lr,
                device=torch.device(args.device), seed=args.seed, progress=not args.no_progress)
    info = {"source": "trained in bench", "architecture": "bn_cnn", "dataset": "mnist_subset", "model_kwargs": kwargs,
            "epochs": args.epochs, "lr": args.lr, "n_train": len(data.train), "train_s": time.perf_counter() - t0}
    return model.eval(), data, info


# ----------------------------------------------------------------------------- tile models
@dataclass
class SolveStats:
    """Cost of the exact mode's nodal solves: tiles solved and wall seconds spent in them."""

    tiles: int = 0
    seconds: float = 0.0


def exact_tile_model(spec: CircuitSpec, stats: SolveStats, reference: str = "exact") -> tuple[TileMVM, str]:
    """The reference tile model and its label: ``exact`` = ``dnn.evaluate.exact_tile_model`` (the circuit's
    exact physics: nodal transfer matrix for linear cells, Newton solve for sinh/1T1R cells), its binds
    counted in `stats`; ``spice`` = ``dnn.evaluate.spice_tile_model`` (ngspice solves every MVM; tiny runs only)."""

    def count(tiles: int, seconds: float) -> None:
        stats.tiles += tiles
        stats.seconds += seconds

    if reference == "spice":
        mvm, info = dnn_evaluate.spice_tile_model(spec)
    else:
        mvm, info = dnn_evaluate.exact_tile_model(spec, on_solve=count)
    return mvm, f"exact ({info['solver']})"


def load_surrogates(paths: list[str], spec: CircuitSpec) -> dict[str, tuple[TileMVM, dict[str, Any]]]:
    """{label: (surrogate tile model, description)} for each file; a clear exit when one is missing."""
    out = {}
    for path in paths:
        if not Path(path).is_file():
            raise SystemExit(f"surrogate file {path} not found: run the workflow (`snakemake`) or train one, e.g. "
                             "`xbarchar spice simulate --circuit-name paper1_64 --preset paper1_64_w5 --sampling "
                             "'{\"n_conductance\": 8, \"n_vectors\": 256}' --out /tmp/x.h5` then "
                             "`xbarchar surrogate train --data /tmp/x.h5 --out /tmp/s.h5`, and pass --surrogate")
        mvm, _ = dnn_evaluate.surrogate_tile_model(path, spec)
        label = f"surrogate {mvm.design} ({Path(path).name})"
        out[label] = (mvm, {"path": str(path), "design": mvm.design, "hyperparameters": mvm.hyperparameters(),
                            "macs_per_vector": mvm.macs_per_vector(),
                            "parameters": sum(p.numel() for p in mvm.parameters())})
    return out


# ----------------------------------------------------------------------------- modes
@dataclass
class Mode:
    """One way of running the model: a label, the (converted) model and whether it enters the accuracy table."""

    label: str
    model: nn.Module
    kind: str  # digital | ideal | surrogate | exact | noisy
    accuracy: bool = True
    first_forward_s: float = float("nan")
    batch_s: list[float] = field(default_factory=list)


def crossbar_config(args: argparse.Namespace) -> CrossbarConfig:
    """Default CrossbarConfig (8-bit weights as 2x4-bit cells, 8-bit DAC/ADC, conv layers analog) with the
    --seed and the --crossbar-json overrides."""
    overrides = json.loads(args.crossbar_json) if args.crossbar_json else {}
    return CrossbarConfig(seed=args.seed).replace(**overrides)


def build_modes(model: nn.Module, spec: CircuitSpec, surrogates: dict[str, tuple[TileMVM, dict[str, Any]]],
                exact: TileMVM | None, sigma: float, cfg: CrossbarConfig,
                exact_label: str = "exact (nodal transfer matrix)") -> list[Mode]:
    """Every mode of the bench, each an independent converted copy of `model` (noise-free modes use `cfg`;
    no exact mode when `exact` is None)."""
    ideal, _ = dnn_evaluate.ideal_tile_model(spec.rows, spec.cols, spec.g_off_s, spec.g_on_s, spec.v_read_max_v)
    modes = [Mode("digital (float)", copy.deepcopy(model), "digital"),
             Mode("ideal-quantized crossbar", convert_to_crossbar(model, cfg, ideal), "ideal")]
    modes += [Mode(label, convert_to_crossbar(model, cfg, mvm), "surrogate") for label, (mvm, _) in surrogates.items()]
    if exact is not None:
        modes.append(Mode(exact_label, convert_to_crossbar(model, cfg, exact), "exact"))
    if sigma > 0:
        # per_forward: G redrawn and the MVM re-bound on every forward (the cost measured here)
        noisy = cfg.replace(read_noise_sigma=sigma, read_noise_mode="per_forward")
        modes.append(Mode(f"ideal-quantized + read noise {sigma:g}", convert_to_crossbar(model, noisy, ideal),
                          "noisy", accuracy=False))
        modes += [Mode(f"{label} + read noise {sigma:g}", convert_to_crossbar(model, noisy, mvm), "noisy",
                       accuracy=False) for label, (mvm, _) in surrogates.items()]
    return modes


def tile_counts(model: nn.Module) -> dict[str, int]:
    """Physical tiles per crossbar layer of a converted model."""
    return {name: layer.tile_count() for name, layer in crossbar_layers(model).items()}


# ----------------------------------------------------------------------------- timing
def timing_batches(data: DatasetSplit, batch_size: int, n: int) -> list[torch.Tensor]:
    """`n` batches of `batch_size` test images (the test split repeated when it is smaller)."""
    x = data.test.tensors[0]
    idx = torch.arange(n * batch_size) % len(x)
    return list(x[idx].split(batch_size))


@torch.no_grad()
def _timed_forward(model: nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model(x)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - t0


def time_modes(modes: list[Mode], batches: list[torch.Tensor], rounds: int, progress: bool) -> None:
    """First forward (programming and bind included) and one more warm-up per mode, then `rounds` rounds in
    which every mode runs all `batches` in turn (modes interleaved); fills `first_forward_s` and `batch_s`
    (seconds per batch, one value per round)."""
    for mode in modes:
        mode.model.eval()
        mode.first_forward_s = _timed_forward(mode.model, batches[0])
        _timed_forward(mode.model, batches[-1])
        logger.info("%s: first forward %.3f s", mode.label, mode.first_forward_s)
    for _ in tqdm(range(rounds), desc="timing rounds", disable=not progress):
        for mode in modes:
            mode.batch_s.append(sum(_timed_forward(mode.model, x) for x in batches) / len(batches))


def throughput(modes: list[Mode], batch_size: int) -> dict[str, dict[str, Any]]:
    """Per mode: first-forward s, median steady s/batch, images/s, time ratios vs ideal-quantized and digital."""
    med = {m.label: statistics.median(m.batch_s) for m in modes}
    t_ideal = next(med[m.label] for m in modes if m.kind == "ideal")
    t_digital = next(med[m.label] for m in modes if m.kind == "digital")
    return {m.label: {"kind": m.kind, "first_forward_s": m.first_forward_s, "batch_s_median": med[m.label],
                      "batch_s_samples": m.batch_s, "batch_s_min": min(m.batch_s), "batch_s_max": max(m.batch_s),
                      "images_per_s": batch_size / med[m.label],
                      "first_forward_images_per_s": batch_size / m.first_forward_s,
                      "time_x_ideal": med[m.label] / t_ideal, "time_x_digital": med[m.label] / t_digital}
            for m in modes}


# ----------------------------------------------------------------------------- accuracy
def accuracies(modes: list[Mode], data: DatasetSplit, n_calib: int, batch_size: int, seed: int,
               device: torch.device, bn_adapt_only: bool = False) -> dict[str, dict[str, float]]:
    """Test accuracy (fraction) of each accuracy mode without mitigation (NaN with `bn_adapt_only`) and
    after BN adaptation (in place)."""
    test = make_loader(data.test, batch_size)
    out = {}
    for mode in (m for m in modes if m.accuracy):
        none = float("nan") if bn_adapt_only else evaluate(mode.model, test, device)
        bn_adapt(mode.model, dnn_evaluate.calibration_loader(data, n_calib, 64, seed), device=device)
        out[mode.label] = {"none": none, "bn_adapt": evaluate(mode.model, test, device)}
        logger.info("%s: accuracy %.4f, after BN adaptation %.4f", mode.label, none, out[mode.label]["bn_adapt"])
    return out


def gaps(acc: dict[str, dict[str, float]], surrogate_labels: list[str], exact_label: str) -> dict[str, dict[str, float]]:
    """|surrogate - exact| accuracy in percentage points, per surrogate and method."""
    return {label: {k: 100.0 * abs(acc[label][k] - acc[exact_label][k]) for k in ("none", "bn_adapt")}
            for label in surrogate_labels}


# ----------------------------------------------------------------------------- report
def throughput_table(tp: dict[str, dict[str, Any]], batch_size: int) -> str:
    lines = [f"| mode (batch {batch_size}) | images/s | s/batch median [min-max] | time x ideal-quantized | "
             "time x digital | first forward s (bind incl.) | first-forward images/s |",
             "|---|---|---|---|---|---|---|"]
    for label, r in tp.items():
        lines.append(f"| {label} | {r['images_per_s']:.0f} | {r['batch_s_median']:.2f} [{r['batch_s_min']:.2f}-"
                     f"{r['batch_s_max']:.2f}] | {r['time_x_ideal']:.2f}x | {r['time_x_digital']:.1f}x | "
                     f"{r['first_forward_s']:.2f} | {r['first_forward_images_per_s']:.1f} |")
    return "\n".join(lines)


def accuracy_table(acc: dict[str, dict[str, float]], gap: dict[str, dict[str, float]], n_test: int,
                   n_calib: int) -> str:
    lines = [f"| tile model ({n_test} test images) | no mitigation | BN adapt ({n_calib} images) |", "|---|---|---|"]
    for label, r in acc.items():
        lines.append(f"| {label} | {100 * r['none']:.1f}% | {100 * r['bn_adapt']:.1f}% |")
    for label, g in gap.items():
        lines.append(f"| gap \\|{label} - exact\\| | {g['none']:.1f} pts | {g['bn_adapt']:.1f} pts |")
    return "\n".join(lines)


def targets(tp: dict[str, dict[str, Any]], gap: dict[str, dict[str, float]],
            surrogate_labels: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each surrogate (those of `gap`, else `surrogate_labels`) against the two issue targets (time
    fields None without timing, accuracy fields None without an exact mode)."""
    labels = list(gap) if gap else list(surrogate_labels or [])
    return {label: {"time_x_ideal": tp[label]["time_x_ideal"] if tp else None,
                    "time_target_met": tp[label]["time_x_ideal"] <= SURROGATE_TIME_TARGET if tp else None,
                    "max_gap_points": max(gap[label].values()) if label in gap else None,
                    "accuracy_target_met": max(gap[label].values()) <= ACCURACY_GAP_TARGET_POINTS
                    if label in gap else None}
            for label in labels}


def target_lines(tg: dict[str, dict[str, Any]]) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = []
    for label, t in tg.items():
        time_part = ("not timed" if t["time_x_ideal"] is None else
                     f"{t['time_x_ideal']:.2f}x the ideal-quantized time (target <= {SURROGATE_TIME_TARGET:g}x: "
                     f"{verdict(t['time_target_met'])})")
        gap_part = ("no exact mode, accuracy gap not measured" if t["max_gap_points"] is None else
                    f"accuracy gap to exact <= {t['max_gap_points']:.1f} points "
                    f"(target <= {ACCURACY_GAP_TARGET_POINTS:g}: {verdict(t['accuracy_target_met'])})")
        lines.append(f"- {label}: {time_part}; {gap_part}")
    return lines


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Atomic write (temp name, then rename)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, out)


# ----------------------------------------------------------------------------- main
def header(args: argparse.Namespace, spec: CircuitSpec, model_info: dict[str, Any], tiles: dict[str, int],
           cfg: CrossbarConfig, env: dict[str, Any]) -> str:
    """One line saying what ran where."""
    overrides = f"; crossbar overrides {args.crossbar_json}" if args.crossbar_json else ""
    timing = ("no timing" if args.no_timing else
              f"median of {args.rounds} rounds x {args.batches_per_round} batch(es) of {args.batch_size}")
    return (f"{args.circuit_name} {spec.rows}x{spec.cols}; model {model_info['architecture']} ({model_info['source']}); "
            f"{sum(tiles.values())} tiles {tiles}; {cfg.weight_bits}-bit weights as {cfg.bits_per_cell}-bit cells, "
            f"DAC {cfg.input_bits} / ADC {cfg.adc_bits} bits{overrides}; {args.device}; torch {env['torch']}, {args.threads} "
            f"thread(s) of {env['cpu_count']} cores, load {env['load_avg_1min_start']:.1f} -> "
            f"{env['load_avg_1min_end']:.1f}; {timing}")


def run(args: argparse.Namespace, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole bench; prints the tables through `say` and returns every figure."""
    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    spec = spec_from_config(args.circuit_name, json.loads(args.circuit))
    cfg = crossbar_config(args)
    surrogates = load_surrogates(args.surrogate, spec)
    model, data, model_info = prepare_model(args)
    stats = SolveStats()
    exact, exact_label = (None, "") if args.no_exact else exact_tile_model(spec, stats, args.reference)
    modes = build_modes(model, spec, surrogates, exact, args.read_noise_sigma, cfg, exact_label)
    if args.no_timing:
        modes = [m for m in modes if m.accuracy]
    device = torch.device(args.device)
    for mode in modes:
        mode.model.to(device)
    tiles = tile_counts(modes[1].model)

    tp: dict[str, dict[str, Any]] = {}
    if not args.no_timing:
        batches = [x.to(device) for x in timing_batches(data, args.batch_size, args.batches_per_round)]
        time_modes(modes, batches, args.rounds, not args.no_progress)
        tp = throughput(modes, args.batch_size)
    acc = accuracies(modes, data, args.calibration_samples, args.batch_size, args.seed, device, args.bn_adapt_only)
    n_solves = stats.tiles  # equals the tile count when the bound exact MVM was reused by every later forward
    exact_label = next((m.label for m in modes if m.kind == "exact"), None)
    gap = gaps(acc, list(surrogates), exact_label) if exact_label else {}
    tg = targets(tp, gap, list(surrogates))
    env["load_avg_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    say(header(args, spec, model_info, tiles, cfg, env))
    if tp:
        say(throughput_table(tp, args.batch_size))
    if exact is not None:
        say(f"exact bind: {n_solves} nodal solves in the whole run, {stats.seconds / max(n_solves, 1):.2f} s per "
            "tile; with read noise on, exact mode would pay this bind every forward")
    say(accuracy_table(acc, gap, len(data.test), min(args.calibration_samples, len(data.train))))
    digital = next(acc[m.label]["none"] for m in modes if m.kind == "digital")
    if digital < MIN_MEANINGFUL_ACCURACY:
        logger.warning("digital accuracy %.1f%% < %.0f%%: the model is barely trained, the accuracy figures are "
                       "not meaningful (use --model or more --epochs)", 100 * digital, 100 * MIN_MEANINGFUL_ACCURACY)
    say("\n".join(target_lines(tg)))
    result = {"settings": {k: v for k, v in vars(args).items() if k != "json"}, "environment": env,
              "circuit": {"name": args.circuit_name, "rows": spec.rows, "cols": spec.cols,
                          "r_driver_ohm": spec.r_driver_ohm, "r_sense_ohm": spec.r_sense_ohm,
                          "r_wire_row_ohm": spec.r_wire_row_ohm, "r_wire_col_ohm": spec.r_wire_col_ohm},
              "model": model_info, "crossbar_config": cfg.to_dict(), "tiles": tiles,
              "surrogates": {label: info for label, (_, info) in surrogates.items()},
              "exact_bind": {"nodal_solves": n_solves, "seconds": stats.seconds,
                             "seconds_per_tile": stats.seconds / max(n_solves, 1)},
              "throughput": tp, "accuracy": acc, "n_test": len(data.test), "accuracy_gap_points": gap,
              "targets": tg}
    if args.json:
        write_json(args.json, result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(args)


if __name__ == "__main__":
    main()
