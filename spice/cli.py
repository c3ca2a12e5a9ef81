"""Command line of the SPICE stage: ``xbarchar spice {simulate,merge,inspect,check}`` (or ``python -m spice``).

A circuit arrives as a JSON object (one ``circuits:`` entry of the config, e.g. from Snakemake's
``params``) or as ``--preset NAME``; sampling settings likewise as JSON. The options every subcommand
shares (``--threads``, ``-v``/``-q``, ``--no-progress``, ``--debug``) come from :mod:`xbarchar.cli`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from spice import ngspice
from spice.circuit import CircuitError, spec_from_config
from spice.io import DatasetFileError, merge_shards, summary, write_dataset
from spice.netlist import ACCURACY_OPTIONS
from spice.power import probes_for
from spice.sampling import SamplingConfig
from spice.simulate import simulate_shard
from xbarchar import cli as xcli
from xbarchar.files import refuse_overwriting_inputs

log = logging.getLogger("spice")


def _spec(args: argparse.Namespace):
    entry = xcli.load_json_object(args.circuit, "--circuit")
    if args.preset:
        entry = {"preset": args.preset, **entry}
    return spec_from_config(xcli.circuit_name(args), entry, base_dir=args.base_dir)


def _circuit_inputs(args: argparse.Namespace, spec) -> dict[str, object]:
    return {"--circuit": xcli.json_file(args.circuit),
            "netlist": str(Path(args.base_dir) / spec.netlist_path) if spec.netlist_path else ""}


def cmd_simulate(args: argparse.Namespace) -> None:
    spec = _spec(args)
    cfg = SamplingConfig.from_dict(xcli.load_json_object(args.sampling, "--sampling"))
    refuse_overwriting_inputs({"--out": args.out}, {**_circuit_inputs(args, spec),
                                                    "--sampling": xcli.json_file(args.sampling),
                                                    "source_file": cfg.source_file})
    check = ngspice.check_circuit(spec)
    ng = ngspice.info()
    log.info("circuit %s %dx%d, ngspice %s (KLU: %s), shard %d/%d; passive bound %.3e A per column",
             spec.name, spec.rows, spec.cols, ng.version, ng.has_klu, args.shard, cfg.n_shards,
             check.column_current_bound_a)
    result = simulate_shard(spec, cfg, args.shard, progress=xcli.show_progress(args), check=check)
    attrs = {
        "ngspice_version": ng.version, "ngspice_klu": ng.has_klu, "pyspice_version": ng.pyspice_version,
        "ngspice_options": ACCURACY_OPTIONS, "seed": cfg.seed, "sampling": cfg.to_json(), "shard": args.shard,
        "cell_current_max_a": check.cell_current_max_a,
        "column_current_bound_a": check.column_current_bound_a,
        "power_cells_from": probes_for(spec, 1).cells_from,
    }
    write_dataset(args.out, spec, result.arrays(), attrs)
    log.info("wrote %s: %d samples, %d failed", args.out, len(result.v_v), int(result.failed.sum()))


def cmd_merge(args: argparse.Namespace) -> None:
    refuse_overwriting_inputs({"--out": args.out}, {"shard": list(args.shards)})
    ds = merge_shards(args.shards, args.out)
    log.info("merged %d shards into %s: %d samples", len(args.shards), args.out, ds.n_samples)


def cmd_inspect(args: argparse.Namespace) -> None:
    print(summary(args.file))


def cmd_check(args: argparse.Namespace) -> None:
    spec = _spec(args)
    ngspice.check_circuit(spec)
    ng = ngspice.info()
    print(f"circuit '{spec.name}' OK: {spec.rows}x{spec.cols}, cell pins "
          f"{spec.subckts()['cell'].pins}, ngspice {ng.version} (KLU: {ng.has_klu})")


def build_parser(prog: str = "python -m spice") -> argparse.ArgumentParser:
    parser = xcli.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{simulate,merge,inspect,check}")

    def circuit_args(p: argparse.ArgumentParser) -> None:
        xcli.add_circuit_name(p)
        p.add_argument("--circuit", default="", help="circuit config entry as JSON (inline, @file.json or a path)")
        p.add_argument("--preset", default="", help="circuit preset (spice/presets.py)")
        p.add_argument("--base-dir", default=".", help="directory that relative netlist paths start from")

    p = sub.add_parser("simulate", help="run ngspice over sampled G and V for one shard -> HDF5")
    circuit_args(p)
    p.add_argument("--sampling", default="", help="sampling settings as JSON (inline, @file.json or a path)")
    p.add_argument("--shard", type=xcli.integer(0), default=0, help="which shard of the sampling to run")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("merge", help="concatenate shard files into one dataset")
    p.add_argument("shards", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("inspect", help="print a dataset's provenance and summary statistics")
    p.add_argument("file")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("check", help="validate a circuit file and run a 2x2 copy through ngspice")
    circuit_args(p)
    p.set_defaults(func=cmd_check)
    for p in sub.choices.values():
        xcli.add_common_options(p)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m spice") -> int:
    return xcli.main(build_parser(prog), argv, bad_input=(CircuitError, DatasetFileError, ngspice.NgspiceError))
