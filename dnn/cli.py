"""Command line of the DNN stage.

  python -m dnn train --dataset digits --model bn_cnn --epochs 2 --out results/models/digits_bn_cnn.pt
  python -m dnn train --params-json '{"dataset": "mnist_subset", "model": "bn_cnn", "epochs": 8}' --out m.pt
  python -m dnn evaluate --model m.pt --surrogate results/surrogate/paper1_64.h5 --circuit-name paper1_64 \\
      --circuit '{"preset": "paper1_64_w5"}' --scenario noise_0.1 --crossbar-json '{"read_noise_sigma": 0.1}' \\
      --evaluation-json '{"methods": ["none", "bn_adapt"], "seeds": [0, 1]}' --out eval.json
  python -m dnn evaluate --model m.pt --mvm ideal --device-preset rram --out eval.json   # no SPICE needed
  python -m dnn report results/eval/*/*/*.json --md r.md --csv r.csv --plot r.png

Tile models for `evaluate`: `--surrogate PATH` (surrogate.io.load_surrogate), `--mvm exact` (linear
array physics from spice.nodal's transfer matrix; needs --circuit), `--mvm ideal` (i = v @ G; tile from
--circuit, or --rows/--cols/--g-*-s/--v-max-v, or --device-preset).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from .config import CrossbarConfig, get_device_preset
from .convert import convert_to_crossbar
from .datasets import DatasetSplit, load_dataset
from .diagnostics import layer_pc2
from .layers import calibrate_adc
from .mitigation import METHODS, apply_method
from .models import MODELS, build_model
from .mvm import IdealTileMVM, TileMVM, TransferTileMVM
from .train import evaluate, load_model, make_loader, resolve_device, save_model, seed_everything, train_model

logger = logging.getLogger(__name__)

TRAIN_DEFAULTS: dict[str, Any] = {"dataset": None, "dataset_root": None, "model": None, "epochs": 2,
                                  "batch_size": 64, "lr": 1e-3, "seed": 0, "width": 1.0, "optimizer": "adam",
                                  "weight_decay": 0.0, "n_train": None, "n_test": None}
DEFAULT_METHODS = ("none", "bn_adapt", "bn_finetune", "retrain")
EVAL_DEFAULTS: dict[str, Any] = {
    "methods": list(DEFAULT_METHODS), "seeds": [0], "calibration_samples": None, "eval_draws": 1,
    "bn_adapt": {"n_draws": 1, "n_batches": None},
    "bn_finetune": {"epochs": 5, "lr": 0.01, "lr_step_epochs": 2, "lr_gamma": 0.2, "optimizer": "adam"},
    "retrain": {"epochs": 1, "lr": 1e-3},
}


def _write_json(path: str | Path, data: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _json_arg(text: str | None, flag: str) -> dict[str, Any]:
    """A JSON object given inline or as a file path."""
    if not text:
        return {}
    if not text.lstrip().startswith("{"):  # a path (a long inline object is not a valid file name)
        path = Path(text)
        if not path.is_file():
            raise SystemExit(f"{flag}: {text!r} is neither a JSON object nor an existing file")
        text = path.read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{flag}: not a JSON object or a file holding one ({e})") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def _load_data(spec: dict[str, Any], download: bool = False) -> DatasetSplit:
    kwargs: dict[str, Any] = {"n_train": spec.get("n_train"), "n_test": spec.get("n_test")}
    if spec["name"] == "cifar10":
        kwargs["download"] = download
    return load_dataset(spec["name"], spec.get("root"), spec.get("seed", 0), **kwargs)


# ----------------------------------------------------------------------------- train
def _train_params(ns: argparse.Namespace) -> dict[str, Any]:
    """--params-json (the workflow's model entry) overridden by explicit flags."""
    params = _json_arg(ns.params_json, "--params-json")
    unknown = sorted(set(params) - set(TRAIN_DEFAULTS))
    if unknown:
        raise SystemExit(f"--params-json: unknown key(s) {unknown}; valid: {sorted(TRAIN_DEFAULTS)}")
    merged = {**TRAIN_DEFAULTS, **params}
    flags = {"dataset": ns.dataset, "dataset_root": ns.data_root, "model": ns.model, "epochs": ns.epochs,
             "batch_size": ns.batch_size, "lr": ns.lr, "seed": ns.seed, "width": ns.width,
             "optimizer": ns.optimizer, "weight_decay": ns.weight_decay, "n_train": ns.n_train,
             "n_test": ns.n_test}
    merged.update({k: v for k, v in flags.items() if v is not None})
    for key in ("dataset", "model"):
        if merged[key] is None:
            raise SystemExit(f"train: --{key} (or '{key}' in --params-json) is required")
    return merged


def cmd_train(ns: argparse.Namespace) -> int:
    p = _train_params(ns)
    device = resolve_device(ns.device)
    spec = {"name": p["dataset"], "root": p["dataset_root"], "seed": p["seed"], "n_train": p["n_train"],
            "n_test": p["n_test"]}
    data = _load_data(spec, ns.download)
    model_kwargs = {"in_channels": data.in_channels, "num_classes": data.num_classes,
                    "image_size": data.image_size, "width": p["width"]}
    seed_everything(p["seed"])
    model = build_model(p["model"], **model_kwargs)
    train_loader = make_loader(data.train, p["batch_size"], shuffle=True, seed=p["seed"])
    history = train_model(model, train_loader, p["epochs"], p["lr"], p["optimizer"], p["weight_decay"], device,
                          p["seed"], progress=not ns.no_progress)
    acc = evaluate(model, make_loader(data.test, ns.eval_batch_size), device)
    logger.info("%s on %s: test accuracy %.4f", p["model"], p["dataset"], acc)
    metrics = {"test_accuracy": acc, "history": history, "params": p, "device": str(device),
               "n_train": len(data.train), "n_test": len(data.test)}
    save_model(ns.out, model, p["model"], model_kwargs, dataset=spec, metrics=metrics)
    if ns.metrics:
        _write_json(ns.metrics, {"model": p["model"], "dataset": spec, **metrics})
    return 0


# ----------------------------------------------------------------------------- evaluate
def _evaluation_settings(ns: argparse.Namespace) -> dict[str, Any]:
    """Flags, then --evaluation-json (the workflow's `evaluation` entry) on top."""
    ev = copy.deepcopy(EVAL_DEFAULTS)
    ev["methods"] = [m.strip() for m in ns.methods.split(",") if m.strip()]
    ev["seeds"] = [ns.seed]
    ev["eval_draws"] = ns.eval_draws
    ev["bn_adapt"].update(n_draws=ns.adapt_draws, n_batches=ns.adapt_batches)
    ev["bn_finetune"].update(epochs=ns.finetune_epochs, lr=ns.finetune_lr)
    ev["retrain"].update(epochs=ns.retrain_epochs, lr=ns.retrain_lr)
    given = _json_arg(ns.evaluation_json, "--evaluation-json")
    unknown = sorted(set(given) - set(EVAL_DEFAULTS))
    if unknown:
        raise SystemExit(f"--evaluation-json: unknown key(s) {unknown}; valid: {sorted(EVAL_DEFAULTS)}")
    for key, value in given.items():
        if isinstance(ev[key], dict):
            ev[key].update(value)
        else:
            ev[key] = value
    bad = [m for m in ev["methods"] if m not in METHODS]
    if bad:
        raise SystemExit(f"methods: unknown {bad}; valid: {list(METHODS)}")
    return ev


def _xbar_config(ns: argparse.Namespace) -> CrossbarConfig:
    d: dict[str, Any] = {}
    if ns.device_preset:
        d.update(get_device_preset(ns.device_preset).drift_config())
    d.update(_json_arg(ns.xbar_config, "--crossbar-json"))
    try:
        return CrossbarConfig.from_dict(d)
    except ValueError as e:
        raise SystemExit(f"--crossbar-json: {e}") from None


def _circuit_spec(ns: argparse.Namespace) -> Any:
    entry = _json_arg(ns.circuit, "--circuit")
    if not entry:
        return None
    try:
        from spice.circuit import spec_from_config  # lazy: only needed with --circuit
    except ImportError as e:
        raise SystemExit(f"--circuit needs spice.circuit.spec_from_config ({e})") from None
    return spec_from_config(ns.circuit_name or "circuit", entry)


def _spec_summary(spec: Any) -> dict[str, Any] | None:
    """The circuit's sizes and resistances for the results (None without --circuit)."""
    if spec is None:
        return None
    keys = ("rows", "cols", "r_driver_ohm", "r_wire_row_ohm", "r_wire_col_ohm", "r_sense_ohm", "g_on_s", "g_off_s",
            "v_read_max_v", "netlist_path")
    return {k: getattr(spec, k) for k in keys}


def _tile_model(ns: argparse.Namespace, spec: Any) -> tuple[TileMVM, dict[str, Any]]:
    if ns.surrogate:
        try:
            from surrogate.io import load_surrogate  # lazy: the surrogate package is optional here
        except ImportError as e:
            raise SystemExit(f"--surrogate needs surrogate.io.load_surrogate, which is not available ({e}); "
                             "use --mvm ideal or install/finish the surrogate package") from None
        mvm = load_surrogate(ns.surrogate, expect_spec=spec)
        if not isinstance(mvm, TileMVM):
            raise SystemExit(f"{ns.surrogate}: load_surrogate returned {type(mvm).__name__}, which does not "
                             "implement dnn.mvm.TileMVM")
        return mvm, {"kind": "surrogate", "path": str(ns.surrogate), "rows": mvm.rows, "cols": mvm.cols,
                     "g_min_s": mvm.g_min_s, "g_max_s": mvm.g_max_s, "v_max_v": mvm.v_max_v}
    if spec is not None:
        rows, cols, g_min, g_max, v_max = spec.rows, spec.cols, spec.g_off_s, spec.g_on_s, spec.v_read_max_v
    else:
        preset = get_device_preset(ns.device_preset) if ns.device_preset else None
        rows, cols, v_max = ns.rows, ns.cols, ns.v_max_v
        g_min = ns.g_min_s if ns.g_min_s is not None else (preset.g_min_s if preset else 5e-6)
        g_max = ns.g_max_s if ns.g_max_s is not None else (preset.g_max_s if preset else 50e-6)
    info = {"kind": ns.mvm, "rows": rows, "cols": cols, "g_min_s": g_min, "g_max_s": g_max, "v_max_v": v_max}
    if ns.mvm == "exact":
        if spec is None:
            raise SystemExit("--mvm exact needs --circuit (the array's resistances)")
        from spice.nodal import transfer_matrix

        def transfer(g_s: np.ndarray) -> np.ndarray:
            return np.stack([transfer_matrix(spec, g) for g in g_s])

        return TransferTileMVM(rows, cols, g_min, g_max, v_max, transfer_fn=transfer), info
    return IdealTileMVM(rows, cols, g_min, g_max, v_max), info


def _calibration_loader(data: DatasetSplit, n: int | None, batch_size: int, seed: int) -> Any:
    """Seeded subset of the training split used by every mitigation method."""
    ds: Any = data.train
    if n is not None and n < len(ds):
        idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
        ds = Subset(ds, idx.tolist())
    return make_loader(ds, batch_size, shuffle=True, seed=seed)


def _method_kwargs(ev: dict[str, Any], method: str, ns: argparse.Namespace) -> dict[str, Any]:
    train = {"max_batches": ns.max_batches, "progress": not ns.no_progress}
    if method == "bn_adapt":
        return dict(ev["bn_adapt"])
    if method in ("bn_finetune", "adapt_finetune"):
        return {"adapt": dict(ev["bn_adapt"]), "finetune": {**ev["bn_finetune"], **train}}
    if method == "retrain":
        return {**ev["retrain"], **train, "adapt": dict(ev["bn_adapt"])}
    return {}


def cmd_evaluate(ns: argparse.Namespace) -> int:
    device = resolve_device(ns.device)
    ev = _evaluation_settings(ns)
    cfg = _xbar_config(ns)
    model, meta = load_model(ns.model_path)
    data_spec = dict(meta["dataset"])
    if ns.data_root:
        data_spec["root"] = ns.data_root
    data = _load_data(data_spec)
    test_loader = make_loader(data.test, ns.eval_batch_size)
    spec = _circuit_spec(ns)
    mvm, mvm_info = _tile_model(ns, spec)
    software = evaluate(model, test_loader, device)
    logger.info("software accuracy %.4f; tile model %s", software, mvm_info)

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in ev["methods"]}
    pc2: dict[str, dict[str, float]] = {}
    x_diag = next(iter(test_loader))[0][:128].to(device)  # PC2 diagnostic batch
    for seed in ev["seeds"]:
        base = convert_to_crossbar(model, cfg.replace(seed=int(seed)), mvm)
        calib = _calibration_loader(data, ev["calibration_samples"], ns.batch_size, int(seed))
        calibrate_adc(base.to(device), calib, device=device)  # adc_range 'calibrated' only; else a no-op
        for method in ev["methods"]:
            m = copy.deepcopy(base)
            m, cost, n_trained = apply_method(method, m, calib, device, seed=int(seed),
                                              **_method_kwargs(ev, method, ns))
            accs = [evaluate(m, test_loader, device) for _ in range(int(ev["eval_draws"]))]
            runs[method].append({"accuracy": statistics.fmean(accs), "draws": accs, "wall_s": cost.wall_s,
                                 "peak_mem_mb": cost.peak_memory_bytes / 2**20, "trainable_params": n_trained,
                                 "memory_kind": cost.memory_kind})
            logger.info("seed %s %s: accuracy %.4f (software %.4f)", seed, method, runs[method][-1]["accuracy"],
                        software)
            if method not in pc2:  # first seed
                pc2[method] = layer_pc2(model, m, x_diag)
    methods_out = {}
    for method, rs in runs.items():
        accs = [a for r in rs for a in r["draws"]]  # every seed x evaluation draw
        methods_out[method] = {
            "accuracy_mean": statistics.fmean(accs), "accuracy_std": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
            "accuracies": accs, "accuracy_per_seed": [r["accuracy"] for r in rs],
            "trainable_params": rs[0]["trainable_params"],
            "wall_s": statistics.fmean(r["wall_s"] for r in rs),
            "peak_mem_mb": statistics.fmean(r["peak_mem_mb"] for r in rs), "memory_kind": rs[0]["memory_kind"],
            "pc2_per_layer": pc2[method],
            "pc2_mean": statistics.fmean(pc2[method].values()) if pc2[method] else float("nan"),
        }
    out = {"circuit": ns.circuit_name or mvm_info["kind"], "model": Path(ns.model_path).stem,
           "circuit_spec": _spec_summary(spec),
           "architecture": meta["model_name"], "scenario": ns.scenario, "model_path": str(ns.model_path),
           "dataset": data_spec, "mvm": mvm_info, "device_preset": ns.device_preset,
           "xbar_config": cfg.to_dict(), "evaluation": ev, "device": str(device),
           "software_accuracy": software, "methods": methods_out}
    _write_json(ns.out, out)
    return 0


# ----------------------------------------------------------------------------- export-tiles
def cmd_export_tiles(ns: argparse.Namespace) -> int:
    from .export import save_bank, tile_bank

    spec = _circuit_spec(ns)
    if spec is None:
        raise SystemExit("export-tiles: --circuit is required (the array the tiles are mapped onto)")
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

    try:
        settings = ReportSettings.from_dict(_json_arg(ns.settings_json, "--settings-json"))
        write_report(ns.inputs, ns.md, ns.csv, ns.plot, ns.plot_sigma, ns.plot_drift, ns.plot_size, settings,
                     fidelity_paths=ns.fidelity)
    except ValueError as e:
        raise SystemExit(f"report: {e}") from None
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dnn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, seed_default: int | None, batch_default: int | None) -> None:
        sp.add_argument("--seed", type=int, default=seed_default)
        sp.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', ...")
        sp.add_argument("--batch-size", type=int, default=batch_default)
        sp.add_argument("--eval-batch-size", type=int, default=256)
        sp.add_argument("--data-root", default=None, help="dataset folder (cifar10: batches or tarball)")
        sp.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
        sp.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is fastest for small models on a "
                             "busy machine)")

    t = sub.add_parser("train", help="train a software baseline and save it as .pt",
                       description="Flags override the keys of --params-json.")
    common(t, None, None)  # None: taken from --params-json or the defaults
    t.add_argument("--params-json", default=None,
                   help=f"JSON object (or file) with keys {sorted(TRAIN_DEFAULTS)}")
    t.add_argument("--dataset", default=None, help="digits | mnist_subset | cifar10")
    t.add_argument("--model", default=None, help=f"one of {sorted(MODELS)}")
    t.add_argument("--width", type=float, default=None, help="channel width multiplier (1.0)")
    t.add_argument("--epochs", type=int, default=None, help="(2)")
    t.add_argument("--lr", type=float, default=None, help="(1e-3)")
    t.add_argument("--optimizer", default=None, choices=["adam", "sgd"], help="(adam)")
    t.add_argument("--weight-decay", type=float, default=None, help="(0)")
    t.add_argument("--n-train", type=int, default=None, help="seeded subset of the training split")
    t.add_argument("--n-test", type=int, default=None, help="seeded subset of the test split")
    t.add_argument("--download", action="store_true", help="cifar10: download the official tarball if absent")
    t.add_argument("--out", required=True, help="output .pt (weights + metadata)")
    t.add_argument("--metrics", default=None, help="optional metrics .json")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="accuracy of a trained model on crossbars, per mitigation method",
                       description="Flags set the evaluation; --evaluation-json keys override them.")
    common(e, 0, 64)
    e.add_argument("--model-path", "--model", dest="model_path", required=True, help=".pt written by `train`")
    e.add_argument("--surrogate", default=None, help="surrogate .h5 (surrogate.io.load_surrogate)")
    e.add_argument("--mvm", choices=["ideal", "exact"], default="ideal",
                   help="tile model without --surrogate (default ideal; exact needs --circuit)")
    e.add_argument("--circuit-name", default=None, help="circuit name (results metadata)")
    e.add_argument("--circuit", default=None, help="circuit config entry as JSON (e.g. '{\"preset\": ...}')")
    e.add_argument("--scenario", default="default", help="scenario name (results metadata)")
    e.add_argument("--rows", type=int, default=64, help="ideal tile rows without --circuit")
    e.add_argument("--cols", type=int, default=64, help="ideal tile columns without --circuit")
    e.add_argument("--g-min-s", type=float, default=None, help="ideal tile g_min, S (preset or 5e-6)")
    e.add_argument("--g-max-s", type=float, default=None, help="ideal tile g_max, S (preset or 50e-6)")
    e.add_argument("--v-max-v", type=float, default=0.2, help="ideal tile max row voltage, V")
    e.add_argument("--device-preset", default=None, help="rram | pcm_40 | pcm_80 | fefet (g range, drift)")
    e.add_argument("--crossbar-json", "--xbar-config", dest="xbar_config", default=None,
                   help="CrossbarConfig keys as a JSON object or file")
    e.add_argument("--evaluation-json", default=None, help=f"JSON object or file with keys {sorted(EVAL_DEFAULTS)}")
    e.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma list from {list(METHODS)}")
    e.add_argument("--eval-draws", type=int, default=1, help="test-set passes per seed (new read-noise draws)")
    e.add_argument("--adapt-batches", type=int, default=None, help="bn_adapt: batches per draw (all)")
    e.add_argument("--adapt-draws", type=int, default=1, help="bn_adapt: passes (noise draws)")
    e.add_argument("--finetune-epochs", type=int, default=5)
    e.add_argument("--finetune-lr", type=float, default=0.01)
    e.add_argument("--retrain-epochs", type=int, default=1)
    e.add_argument("--retrain-lr", type=float, default=1e-3)
    e.add_argument("--max-batches", type=int, default=None, help="bn_finetune/retrain: batches per epoch")
    e.add_argument("--out", required=True, help="output .json")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export-tiles", help="conductance tiles and row voltages of a trained model on a "
                       "circuit, as .npz for the SPICE stage's from_file sampler")
    x.add_argument("--model-path", "--model", dest="model_path", required=True, help=".pt written by `train`")
    x.add_argument("--circuit-name", default=None)
    x.add_argument("--circuit", required=True, help="circuit config entry as JSON")
    x.add_argument("--crossbar-json", "--xbar-config", dest="xbar_config", default=None)
    x.add_argument("--device-preset", default=None)
    x.add_argument("--n-images", type=int, default=256, help="test images whose activations give the voltages")
    x.add_argument("--n-tiles", type=int, default=512)
    x.add_argument("--n-vectors", type=int, default=8192)
    x.add_argument("--seed", type=int, default=0)
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
    r.add_argument("--settings-json", default=None,
                   help="thresholds of the shape check (dnn/report.py ReportSettings) as JSON object or file")
    r.add_argument("--fidelity", nargs="*", default=[], metavar="JSON",
                   help="surrogate fidelity files (*.fidelity.json, *.fidelity_dnn.json): tabled, and statements "
                        "resting on an untrustworthy surrogate are declined")
    r.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(ns.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(ns, "threads", None):
        torch.set_num_threads(ns.threads)
    return int(ns.func(ns))
