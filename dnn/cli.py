"""Command line of the DNN stage: ``xbarchar dnn {train,evaluate,export-tiles,report}`` (or ``python -m dnn``).

  xbarchar dnn train --dataset digits --model bn_cnn --epochs 2 --out results/models/digits_bn_cnn.pt
  xbarchar dnn train --params-json '{"dataset": "mnist_subset", "model": "bn_cnn", "epochs": 8}' --out m.pt
  xbarchar dnn evaluate --model m.pt --surrogate results/surrogate/paper1_64.h5 --circuit-name paper1_64 \\
      --circuit '{"preset": "paper1_64_w5"}' --scenario noise_0.1 --crossbar-json '{"read_noise_sigma": 0.1}' \\
      --evaluation-json '{"methods": ["none", "bn_adapt"], "seeds": [0, 1]}' --out eval.json
  xbarchar dnn evaluate --model m.pt --mvm ideal --device-preset rram --out eval.json   # no SPICE needed
  xbarchar dnn report results/eval/*/*/*.json --md r.md --csv r.csv --plot r.png

Tile models for `evaluate`: `--surrogate PATH` (surrogate.io.load_surrogate), `--mvm exact` (exact
array physics: spice.nodal's transfer matrix for linear cells, spice.exact's Newton solve for the sinh
and 1T1R cells; needs --circuit), `--mvm spice` (ngspice solves every MVM, any circuit file, small
evaluations only; needs --circuit), `--mvm ideal` (i = v @ G; tile from --circuit, or
--rows/--cols/--g-*-s/--v-max-v, or --device-preset). The options every subcommand shares
(``--threads``, ``-v``/``-q``, ``--no-progress``, ``--debug``) come from :mod:`xbarchar.cli`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch

from spice.circuit import spec_from_config
from xbarchar import cli as xcli
from xbarchar.files import atomic_write_text, refuse_overwriting_inputs
from xbarchar.settings import MAX_SEED, from_dict, reject_unknown, to_dict

from .checkpoint import SeedCheckpoint, checkpoint_key, partial_path
from .config import CrossbarConfig, get_device_preset
from .datasets import DatasetSplit, load_dataset
from .evaluate import (
    evaluate_methods,
    exact_tile_model,
    ideal_tile_model,
    spice_tile_model,
    surrogate_tile_model,
)
from .layers import device_stats_per_seed
from .mitigation import METHODS
from .models import MODELS, build_model
from .mvm import TileMVM
from .results import EvaluationResult
from .settings import EvaluationSettings, TrainSettings
from .train import (
    evaluate,
    load_model,
    make_loader,
    resolve_device,
    save_model,
    seed_everything,
    train_software_model,
)

logger = logging.getLogger(__name__)


class DnnInputError(ValueError):
    """A command-line argument of the DNN stage is missing, malformed or inconsistent."""

def _write_json(path: str | Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _load_data(spec: dict[str, Any], download: bool = False) -> DatasetSplit:
    kwargs: dict[str, Any] = {"n_train": spec.get("n_train"), "n_test": spec.get("n_test")}
    if spec["name"] == "cifar10":
        kwargs["download"] = download
    return load_dataset(spec["name"], spec.get("root"), spec.get("seed", 0), **kwargs)


# ----------------------------------------------------------------------------- train
def _train_settings(ns: argparse.Namespace) -> TrainSettings:
    """Defaults < --params-json (the workflow's model entry) < explicit flags."""
    params = xcli.load_json_object(ns.params_json, "--params-json")
    flags = {"dataset": ns.dataset, "dataset_root": ns.data_root, "model": ns.model, "epochs": ns.epochs,
             "batch_size": ns.batch_size, "lr": ns.lr, "seed": ns.seed, "width": ns.width,
             "optimizer": ns.optimizer, "weight_decay": ns.weight_decay, "n_train": ns.n_train,
             "n_test": ns.n_test, "patience": ns.patience, "val_fraction": ns.val_fraction,
             "monitor": ns.monitor}
    reject_unknown(params, set(flags), "--params-json")
    merged = {**params, **{k: v for k, v in flags.items() if v is not None}}
    for key in ("dataset", "model"):
        if not merged.get(key):
            raise DnnInputError(f"train: --{key} (or '{key}' in --params-json) is required")
    return from_dict(TrainSettings, merged, "model")


def cmd_train(ns: argparse.Namespace) -> int:
    refuse_overwriting_inputs({"--out": ns.out, "--metrics": ns.metrics},
                              {"--params-json": xcli.json_file(ns.params_json)})
    settings = _train_settings(ns)
    p = to_dict(settings)
    device = resolve_device(ns.device)
    spec = {"name": p["dataset"], "root": p["dataset_root"], "seed": p["seed"], "n_train": p["n_train"],
            "n_test": p["n_test"]}
    data = _load_data(spec, ns.download)
    model_kwargs = {"in_channels": data.in_channels, "num_classes": data.num_classes,
                    "image_size": data.image_size, "width": p["width"]}
    seed_everything(p["seed"])
    model = build_model(p["model"], **model_kwargs)
    history, stopping = train_software_model(model, data.train, settings, device, progress=xcli.show_progress(ns))
    acc = evaluate(model, make_loader(data.test, ns.eval_batch_size), device)
    logger.info("%s on %s: test accuracy %.4f", p["model"], p["dataset"], acc)
    metrics = {"test_accuracy": acc, "history": history, "stopping": stopping, "params": p, "device": str(device),
               "n_train": len(data.train), "n_test": len(data.test)}
    save_model(ns.out, model, p["model"], model_kwargs, dataset=spec, metrics=metrics)
    if ns.metrics:
        _write_json(ns.metrics, {"model": p["model"], "dataset": spec, **metrics})
    return 0


# ----------------------------------------------------------------------------- evaluate
def _evaluation_settings(ns: argparse.Namespace) -> EvaluationSettings:
    """Defaults < --evaluation-json (the workflow's `evaluation` entry) < explicit flags."""
    given = xcli.load_json_object(ns.evaluation_json, "--evaluation-json")
    merged: dict[str, Any] = copy.deepcopy(given)
    nested = {"bn_adapt": {"n_draws": ns.adapt_draws, "n_batches": ns.adapt_batches},
              "bn_finetune": {"epochs": ns.finetune_epochs, "lr": ns.finetune_lr},
              "retrain": {"epochs": ns.retrain_epochs, "lr": ns.retrain_lr}}
    for group, flags in nested.items():
        set_flags = {k: v for k, v in flags.items() if v is not None}
        if set_flags:
            merged[group] = {**merged.get(group, {}), **set_flags}
    if ns.methods is not None:
        merged["methods"] = [m.strip() for m in ns.methods.split(",") if m.strip()]
    if ns.seed is not None:
        merged["seeds"] = [ns.seed]
    if ns.eval_draws is not None:
        merged["eval_draws"] = ns.eval_draws
    return from_dict(EvaluationSettings, merged, "evaluation")


def _xbar_config(ns: argparse.Namespace) -> CrossbarConfig:
    d: dict[str, Any] = {}
    if ns.device_preset:
        d.update(get_device_preset(ns.device_preset).device_config())
    d.update(xcli.load_json_object(ns.xbar_config, "--crossbar-json"))
    try:
        return CrossbarConfig.from_dict(d)
    except ValueError as e:
        raise DnnInputError(f"--crossbar-json: {e}") from None


def _circuit_spec(ns: argparse.Namespace) -> Any:
    entry = xcli.load_json_object(ns.circuit, "--circuit")
    if not entry:
        return None
    return spec_from_config(xcli.circuit_name(ns), entry)


def _spec_summary(spec: Any) -> dict[str, Any] | None:
    """The circuit's tile (``Tile.to_dict``: sizes, ranges and resistances) and circuit file for the results
    (None without --circuit)."""
    if spec is None:
        return None
    return {**spec.tile.to_dict(), "netlist_path": spec.netlist_path}


def _tile_model(ns: argparse.Namespace, spec: Any) -> tuple[TileMVM, dict[str, Any]]:
    if ns.surrogate:
        return surrogate_tile_model(ns.surrogate, spec)
    if ns.mvm in ("exact", "spice"):
        if spec is None:
            raise DnnInputError(f"--mvm {ns.mvm} needs --circuit (the array's circuit file and resistances)")
        return exact_tile_model(spec) if ns.mvm == "exact" else spice_tile_model(spec)
    if spec is not None:
        return ideal_tile_model(spec.rows, spec.cols, spec.g_off_s, spec.g_on_s, spec.v_read_max_v)
    preset = get_device_preset(ns.device_preset) if ns.device_preset else None
    g_min = ns.g_off_s if ns.g_off_s is not None else (preset.g_off_s if preset else 5e-6)
    g_max = ns.g_on_s if ns.g_on_s is not None else (preset.g_on_s if preset else 50e-6)
    return ideal_tile_model(ns.rows, ns.cols, g_min, g_max, ns.v_read_max_v)


def cmd_evaluate(ns: argparse.Namespace) -> int:
    refuse_overwriting_inputs({"--out": ns.out}, {
        "--model": ns.model_path, "--surrogate": ns.surrogate, "--circuit": xcli.json_file(ns.circuit),
        "--crossbar-json": xcli.json_file(ns.xbar_config), "--evaluation-json": xcli.json_file(ns.evaluation_json)})
    device = resolve_device(ns.device)
    settings = _evaluation_settings(ns)
    cfg = _xbar_config(ns)
    model, meta = load_model(ns.model_path)
    data_spec = dict(meta["dataset"])
    if ns.data_root:
        data_spec["root"] = ns.data_root
    data = _load_data(data_spec)
    spec = _circuit_spec(ns)
    mvm, mvm_info = _tile_model(ns, spec)
    logger.info("tile model %s", mvm_info)
    partial = SeedCheckpoint(partial_path(ns.out), checkpoint_key(
        {"model": ns.model_path, "surrogate": ns.surrogate, "netlist": spec.netlist_path if spec else None},
        circuit=_spec_summary(spec), mvm_kind=ns.mvm, config=cfg.to_dict(), evaluation=to_dict(settings),
        mvm=mvm_info, dataset=data_spec, scenario=ns.scenario, batch_size=ns.batch_size,
        eval_batch_size=ns.eval_batch_size, max_batches=ns.max_batches, device=str(device)))
    software, methods = evaluate_methods(model, data, mvm, cfg, settings, device, batch_size=ns.batch_size,
                                         eval_batch_size=ns.eval_batch_size, max_batches=ns.max_batches,
                                         progress=xcli.show_progress(ns), scenario=ns.scenario,
                                         done_seeds=partial.load(), on_seed_done=partial.save)
    EvaluationResult(
        circuit=ns.circuit_name or mvm_info["kind"], model=Path(ns.model_path).stem, scenario=ns.scenario,
        architecture=meta["model_name"], model_path=str(ns.model_path), software_accuracy=software,
        methods=methods, circuit_spec=_spec_summary(spec), dataset=data_spec, mvm=mvm_info,
        device_preset=ns.device_preset, xbar_config=cfg.to_dict(), evaluation=to_dict(settings),
        device=str(device), device_stats=device_stats_per_seed(model, cfg, mvm, list(settings.seeds)),
    ).write(ns.out)
    partial.remove()
    return 0


# ----------------------------------------------------------------------------- export-tiles
def cmd_export_tiles(ns: argparse.Namespace) -> int:
    from .export import save_bank, tile_bank

    refuse_overwriting_inputs({"--out": ns.out}, {"--model": ns.model_path, "--circuit": xcli.json_file(ns.circuit),
                                                  "--crossbar-json": xcli.json_file(ns.xbar_config)})
    spec = _circuit_spec(ns)
    if spec is None:
        raise DnnInputError("export-tiles: --circuit is required (the array the tiles are mapped onto)")
    cfg = _xbar_config(ns)
    model, meta = load_model(ns.model_path)
    data = _load_data(dict(meta["dataset"]))
    images = torch.stack([data.test[k][0] for k in range(min(ns.n_images, len(data.test)))])
    g, v = tile_bank(model, cfg, spec.rows, spec.cols, spec.g_off_s, spec.g_on_s, spec.v_read_max_v, images,
                     ns.n_tiles, ns.n_vectors, ns.seed)
    save_bank(ns.out, g, v)
    return 0


# ----------------------------------------------------------------------------- report
def cmd_report(ns: argparse.Namespace) -> int:
    from .report import ReportSettings, write_report

    refuse_overwriting_inputs(
        {"--md": ns.md, "--csv": ns.csv, "--plot": ns.plot, "--plot-sigma": ns.plot_sigma,
         "--plot-drift": ns.plot_drift, "--plot-size": ns.plot_size, "--summary-json": ns.summary_json},
        {"input": list(ns.inputs), "--settings-json": xcli.json_file(ns.settings_json)})
    try:
        settings = ReportSettings.from_dict(xcli.load_json_object(ns.settings_json, "--settings-json"))
        write_report(ns.inputs, ns.md, ns.csv, ns.plot, ns.plot_sigma, ns.plot_drift, ns.plot_size, settings,
                     fidelity_paths=ns.fidelity, summary_path=ns.summary_json)
    except ValueError as e:
        raise DnnInputError(f"report: {e}") from None
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser(prog: str = "python -m dnn") -> argparse.ArgumentParser:
    p = xcli.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,evaluate,export-tiles,report}")
    count, seed, positive = xcli.integer(1), xcli.integer(0, MAX_SEED), xcli.real(0, min_exclusive=True)

    def common(sp: argparse.ArgumentParser, seed_default: int | None, batch_default: int | None) -> None:
        sp.add_argument("--seed", type=seed, default=seed_default)
        sp.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', ...")
        sp.add_argument("--batch-size", type=count, default=batch_default)
        sp.add_argument("--eval-batch-size", type=count, default=256)
        sp.add_argument("--data-root", default=None, help="dataset folder (cifar10: batches or tarball)")

    t = sub.add_parser("train", help="train a software baseline and save it as .pt",
                       description="Flags override the keys of --params-json.")
    common(t, None, None)  # None: taken from --params-json or the defaults
    t.add_argument("--params-json", default=None,
                   help="JSON object (or file) with dnn.settings.TrainSettings keys")
    t.add_argument("--dataset", default=None, help="digits | mnist_subset | cifar10")
    t.add_argument("--model", default=None, help=f"one of {sorted(MODELS)}")
    t.add_argument("--width", type=positive, default=None, help="channel width multiplier")
    t.add_argument("--epochs", type=count, default=None)
    t.add_argument("--lr", type=positive, default=None)
    t.add_argument("--optimizer", default=None, choices=["adam", "sgd"])
    t.add_argument("--weight-decay", type=xcli.real(0), default=None)
    t.add_argument("--n-train", type=count, default=None, help="seeded subset of the training split")
    t.add_argument("--n-test", type=count, default=None, help="seeded subset of the test split")
    t.add_argument("--patience", type=count, default=None,
                   help="early stopping: epochs without a better validation score (default: fixed --epochs)")
    t.add_argument("--val-fraction", type=xcli.real(0, min_exclusive=True), default=None,
                   help="with --patience: share of the training split held out for validation (0.1)")
    t.add_argument("--monitor", default=None, choices=["val_loss", "val_accuracy"],
                   help="with --patience: the validation score watched (val_loss)")
    t.add_argument("--download", action="store_true", help="cifar10: download the official tarball if absent")
    t.add_argument("--out", required=True, help="output .pt (weights + metadata)")
    t.add_argument("--metrics", default=None, help="optional metrics .json")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="accuracy of a trained model on crossbars, per mitigation method",
                       description="Flags set the evaluation; --evaluation-json keys override them.")
    common(e, None, 64)  # --seed None: the seeds of --evaluation-json (default [0])
    e.add_argument("--model-path", "--model", dest="model_path", required=True, help=".pt written by `train`")
    e.add_argument("--surrogate", default=None, help="surrogate .h5 (surrogate.io.load_surrogate)")
    e.add_argument("--mvm", choices=["ideal", "exact", "spice"], default="ideal",
                   help="tile model without --surrogate (default ideal); exact: the circuit's array physics "
                        "(linear or sinh/1T1R cells), spice: ngspice solves every MVM (any circuit file; small "
                        "evaluations only); both need --circuit")
    xcli.add_circuit_name(e)
    e.add_argument("--circuit", default=None, help="circuit config entry as JSON (e.g. '{\"preset\": ...}')")
    e.add_argument("--scenario", default="default", help="scenario name (results metadata)")
    e.add_argument("--rows", type=count, default=64, help="ideal tile rows without --circuit")
    e.add_argument("--cols", type=count, default=64, help="ideal tile columns without --circuit")
    e.add_argument("--g-off-s", "--g-min-s", type=positive, default=None, help="ideal tile g_min, S (preset or 5e-6)")
    e.add_argument("--g-on-s", "--g-max-s", type=positive, default=None, help="ideal tile g_max, S (preset or 50e-6)")
    e.add_argument("--v-read-max-v", "--v-max-v", type=positive, default=0.2, help="ideal tile max row voltage, V")
    e.add_argument("--device-preset", default=None, help="rram | pcm_40 | pcm_80 | aihwkit_pcm | fefet (g range, drift, programming noise)")
    e.add_argument("--crossbar-json", "--xbar-config", dest="xbar_config", default=None,
                   help="CrossbarConfig keys as a JSON object or file")
    e.add_argument("--evaluation-json", default=None,
                   help="JSON object or file with dnn.settings.EvaluationSettings keys (explicit flags win)")
    e.add_argument("--methods", default=None,
                   help=f"comma list from {list(METHODS)}")
    e.add_argument("--eval-draws", type=count, default=None, help="test-set passes per seed (new read-noise draws)")
    e.add_argument("--adapt-batches", type=count, default=None, help="bn_adapt: batches per draw (all)")
    e.add_argument("--adapt-draws", type=count, default=None, help="bn_adapt: passes (noise draws)")
    e.add_argument("--finetune-epochs", type=count, default=None)
    e.add_argument("--finetune-lr", type=positive, default=None)
    e.add_argument("--retrain-epochs", type=count, default=None)
    e.add_argument("--retrain-lr", type=positive, default=None)
    e.add_argument("--max-batches", type=count, default=None, help="bn_finetune/retrain: batches per epoch")
    e.add_argument("--out", required=True, help="output .json")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export-tiles", help="conductance tiles and row voltages of a trained model on a "
                       "circuit, as .npz for the SPICE stage's from_file sampler")
    x.add_argument("--model-path", "--model", dest="model_path", required=True, help=".pt written by `train`")
    xcli.add_circuit_name(x)
    x.add_argument("--circuit", required=True, help="circuit config entry as JSON")
    x.add_argument("--crossbar-json", "--xbar-config", dest="xbar_config", default=None)
    x.add_argument("--device-preset", default=None)
    x.add_argument("--n-images", type=count, default=256, help="test images whose activations give the voltages")
    x.add_argument("--n-tiles", type=count, default=512)
    x.add_argument("--n-vectors", type=count, default=8192)
    x.add_argument("--seed", type=seed, default=0)
    x.add_argument("--out", required=True, help="output .npz (g_s, v_v)")
    x.set_defaults(func=cmd_export_tiles)

    r = sub.add_parser("report", help="tables and plots over evaluation results (dnn/report.py)")
    r.add_argument("inputs", nargs="+", help="evaluation .json files")
    r.add_argument("--md", required=True)
    r.add_argument("--csv", required=True)
    r.add_argument("--plot", required=True, help="bar chart per scenario and method")
    r.add_argument("--plot-sigma", default=None, help="accuracy vs read-noise sigma (.png)")
    r.add_argument("--plot-drift", default=None, help="accuracy vs drift time (.png)")
    r.add_argument("--plot-size", default=None, help="accuracy vs array size, parasitics only (.png)")
    r.add_argument("--summary-json", default=None,
                   help="statements (with their intervals over seeds) and warnings as JSON")
    r.add_argument("--settings-json", default=None,
                   help="thresholds of the shape check (dnn/report.py ReportSettings) as JSON object or file")
    r.add_argument("--fidelity", nargs="*", default=[], metavar="JSON",
                   help="surrogate fidelity files (*.fidelity.json, *.fidelity_dnn.json): tabled, and statements "
                        "resting on an untrustworthy surrogate are declined")
    r.set_defaults(func=cmd_report)
    for sp in sub.choices.values():
        xcli.add_common_options(sp)
    return p


def main(argv: list[str] | None = None, prog: str = "python -m dnn") -> int:
    return xcli.main(build_parser(prog), argv, bad_input=(ValueError, FileNotFoundError))
