"""Command line of the surrogate stage: ``xbarchar surrogate {train,fidelity,inspect}`` (or ``python -m surrogate``).

::

    xbarchar surrogate train --data DATA.h5 --out SURR.h5 [--design auto|transfer|mlp|ridge|cell_iv]
        [--candidates transfer ridge mlp cell_iv] [--closed-form-target-x X] [--hidden 500] [--epochs N] [--seed S]
        [--params-json '{"design": "transfer", ...}']
        [--fidelity-json F.json --fidelity-png F.png]
    xbarchar surrogate fidelity --surrogate SURR.h5 --data DATA.h5 --json F.json [--png F.png]
    xbarchar surrogate inspect SURR.h5

Training hyperparameters are the fields of :class:`surrogate.train.TrainParams`; ``--params-json``
(a JSON object, or ``@file.json``) sets any of them, explicit flags override it, unknown keys are
rejected. The options every subcommand shares (``--threads``, ``-v``/``-q``, ``--no-progress``,
``--debug``) come from :mod:`xbarchar.cli`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from typing import Any

from spice.circuit import CircuitError
from spice.io import DatasetFileError
from surrogate import fidelity as fid
from surrogate.data import load_splits, load_whole_as_test
from surrogate.energy import EnergyModel, energy_model_or_none, measure_fidelity
from surrogate.io import SurrogateFileError, describe, load_surrogate, read_metadata, save_surrogate
from surrogate.params import AUTO, DESIGNS, TrainParams, TrainParamsError
from surrogate.train import TooLittleDataError, TrainingDivergedError, train
from xbarchar import cli as xcli
from xbarchar.files import refuse_overwriting_inputs
from xbarchar.settings import MAX_SEED

log = logging.getLogger("surrogate")

# CLI flag (argparse dest) -> TrainParams field
_PARAM_FLAGS = ("design", "candidates", "closed_form_target_x", "hidden", "cell_hidden", "v_order", "v_basis", "epochs", "batch_size", "lr",
                "weight_decay", "patience", "seed", "val_fraction", "test_fraction")


_DEFAULTS = {f.name: f.default for f in fields(TrainParams)}


def _v_order(text: str) -> Any:
    if text == "auto":
        return text
    return xcli.integer(1)(text)


def _params_from_args(args: argparse.Namespace) -> TrainParams:
    merged: dict[str, Any] = xcli.load_json_object(args.params_json, "--params-json")
    for key in _PARAM_FLAGS:
        value = getattr(args, key)
        if value is not None:
            merged[key] = value
    return TrainParams.from_dict(merged, where="--params-json")


def cmd_train(args: argparse.Namespace) -> None:
    refuse_overwriting_inputs(
        {"--out": args.out, "--fidelity-json": args.fidelity_json, "--fidelity-png": args.fidelity_png},
        {"--data": args.data, "--params-json": xcli.json_file(args.params_json)})
    params = _params_from_args(args)
    splits = load_splits(args.data, params.val_fraction, params.test_fraction, params.seed)
    result = train(splits, params, progress=xcli.show_progress(args))
    report: dict[str, Any] = {}
    if args.fidelity_json or args.fidelity_png:
        report, preds = fid.evaluate(result.model, splits, selection=result.selection)
        if args.fidelity_json:
            fid.write_json(report, args.fidelity_json)
        if args.fidelity_png:
            fid.plot(report, preds, splits.test.i_a, args.fidelity_png)
    resolved = params.to_dict()  # with the design defaults that were used filled in
    resolved.update({key: result.history[key] for key in ("lr", "weight_decay", "v_order")})
    save_surrogate(args.out, result.model, splits.spec, train_params=resolved, history=result.history,
                   data_sha256=splits.sha256, data_path=str(args.data), split=splits.split_json(),
                   fidelity=report, energy=energy_model_or_none(splits))
    log.info("wrote %s", args.out)


def cmd_fidelity(args: argparse.Namespace) -> None:
    refuse_overwriting_inputs({"--json": args.json, "--png": args.png},
                              {"--surrogate": args.surrogate, "--data": args.data})
    meta = read_metadata(args.surrogate)
    split = meta.get("split") or {}
    if args.whole_file:
        splits = load_whole_as_test(args.data)
        if splits.sha256 == meta.get("training_data_sha256"):
            raise DatasetFileError(f"--whole-file: {args.data} is the training data of {args.surrogate}; "
                             "measure on its held-out split instead (drop --whole-file)")
        args.no_ridge = True  # no training samples in the file to fit the ridge baseline on
    else:
        splits = load_splits(args.data, split.get("val_fraction", _DEFAULTS["val_fraction"]),
                             split.get("test_fraction", _DEFAULTS["test_fraction"]),
                             split.get("seed", _DEFAULTS["seed"]))
    model = load_surrogate(args.surrogate, expect_spec=splits.spec)
    if args.whole_file:
        log.info("%s: measuring on all %d samples", args.data, splits.test.n_samples)
    elif splits.sha256 == meta.get("training_data_sha256"):
        log.info("%s is the training data: measuring on its held-out test matrices", args.data)
    else:
        log.info("%s is not the training data of %s: measuring on its test split (seed %s)", args.data,
                 args.surrogate, split.get("seed", _DEFAULTS["seed"]))
    report, preds = fid.evaluate(model, splits, ridge=not args.no_ridge)
    report["surrogate_path"] = str(args.surrogate)
    if "energy_model" in meta:  # the read power of the same samples against ngspice's (the dataset's /p_w)
        test = splits.test
        report["energy_model"] = measure_fidelity(EnergyModel.from_dict(meta["energy_model"]), test.g_s,
                                                  test.g_index, test.v_v, test.p_w)
    fid.write_json(report, args.json)
    if args.png:
        fid.plot(report, preds, splits.test.i_a, args.png)


def cmd_inspect(args: argparse.Namespace) -> None:
    sys.stdout.write(describe(args.file) + "\n")


def build_parser(prog: str = "python -m surrogate") -> argparse.ArgumentParser:
    parser = xcli.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,fidelity,inspect}")
    count = xcli.integer(1)

    p = sub.add_parser("train", help="train a surrogate on a SPICE dataset -> surrogate HDF5")
    p.add_argument("--data", required=True, help="SPICE dataset (.h5 from xbarchar spice simulate)")
    p.add_argument("--out", required=True, help="surrogate file to write")
    p.add_argument("--design", choices=DESIGNS + (AUTO,), default=None,
                   help="auto (default): the candidate with the lowest worse-of (validation, DNN-like validation) "
                        "error relative to the ideal model, closed-form candidates first; transfer: effective "
                        "transfer matrix, ideal-MVM cost; mlp: GENIEx; ridge: closed-form ridge on physics features; "
                        "cell_iv: closed-form ridge on the cell's ngspice I-V")
    p.add_argument("--candidates", nargs="+", choices=DESIGNS, default=None,
                   help="designs that --design auto chooses from (default: "
                        f"{' '.join(TrainParams().candidates)})")
    p.add_argument("--closed-form-target-x", type=xcli.real(1), default=None,
                   help="auto: a closed-form candidate this many times better than ideal on both validation sets "
                        f"is kept without training the others (default {_DEFAULTS['closed_form_target_x']:g})")
    p.add_argument("--hidden", type=count, default=None, help=f"mlp hidden width (default {_DEFAULTS['hidden']})")
    p.add_argument("--cell-hidden", type=count, default=None,
                   help=f"transfer per-cell network width (default {_DEFAULTS['cell_hidden']})")
    p.add_argument("--v-order", type=_v_order, default=None,
                   help=f"transfer: auto, 1 or 3 (default {_DEFAULTS['v_order']})")
    p.add_argument("--v-basis", choices=("cubic", "learned"), default=None,
                   help=f"transfer, v_order 3: the voltage terms beyond v (default {_DEFAULTS['v_basis']})")
    p.add_argument("--epochs", type=count, default=None, help=f"max epochs (default {_DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=count, default=None,
                   help=f"samples per step (default {_DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=xcli.real(0, min_exclusive=True), default=None,
                   help="Adam learning rate (default per design)")
    p.add_argument("--weight-decay", type=xcli.real(0), default=None,
                   help="L2 on weight matrices (default per design)")
    p.add_argument("--patience", type=count, default=None,
                   help=f"early-stopping patience in epochs (default {_DEFAULTS['patience']})")
    p.add_argument("--seed", type=xcli.integer(0, MAX_SEED), default=None,
                   help=f"split, init and batch-order seed (default {_DEFAULTS['seed']})")
    p.add_argument("--val-fraction", type=xcli.real(0, 0.5, min_exclusive=True), default=None,
                   help=f"held-out matrices for early stopping (default {_DEFAULTS['val_fraction']})")
    p.add_argument("--test-fraction", type=xcli.real(0, 0.5, min_exclusive=True), default=None,
                   help=f"held-out matrices for fidelity (default {_DEFAULTS['test_fraction']})")
    p.add_argument("--params-json", default="", help="training parameters as a JSON object (or @file.json)")
    p.add_argument("--fidelity-json", default="", help="also write the fidelity report here")
    p.add_argument("--fidelity-png", default="", help="also write the fidelity plot here")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("fidelity", help="measure a surrogate on held-out ngspice data -> json (+ png)")
    p.add_argument("--surrogate", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--png", default="")
    p.add_argument("--no-ridge", action="store_true", help="skip the ridge baseline")
    p.add_argument("--whole-file", action="store_true",
                   help="measure on every sample of --data (a file the surrogate never saw, e.g. "
                        "DNN-distribution samples); no ridge baseline")
    p.set_defaults(func=cmd_fidelity)

    p = sub.add_parser("inspect", help="print a surrogate file's provenance, architecture and fidelity")
    p.add_argument("file")
    p.set_defaults(func=cmd_inspect)
    for p in sub.choices.values():
        xcli.add_common_options(p)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m surrogate") -> int:
    return xcli.main(build_parser(prog), argv,
                     bad_input=(SurrogateFileError, DatasetFileError, TrainParamsError, TrainingDivergedError,
                                TooLittleDataError, CircuitError))
