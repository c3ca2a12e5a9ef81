"""The ``xbarchar`` command: one console command with the stages as subcommands.

``xbarchar spice …``, ``xbarchar surrogate …`` and ``xbarchar dnn …`` run exactly what
``python -m spice …``, ``python -m surrogate …`` and ``python -m dnn …`` run; ``xbarchar config check``
runs ``python -m pipeline check``. The packages are named here by module, imported only when chosen, so
that this ground-floor package imports none of them.
"""

from __future__ import annotations

import importlib
import sys

from xbarchar import cli as xcli

STAGES = {
    "spice": "ngspice ground truth: simulate, merge, inspect, check",
    "surrogate": "neural surrogate of a circuit: train, fidelity, inspect",
    "dnn": "DNNs on the crossbar: train, evaluate, export-tiles, report",
    "config": "a workflow config checked without Snakemake: check",
}
"""Command name -> one line for ``xbarchar --help``; the package whose ``cli.main`` runs it is in
:data:`PACKAGES` (the stage of the same name, or the workflow package for ``config``)."""
PACKAGES = {"spice": "spice", "surrogate": "surrogate", "dnn": "dnn", "config": "pipeline"}
PROG = "xbarchar"


def _parser() -> xcli.ArgumentParser:
    parser = xcli.ArgumentParser(prog=PROG, description="SPICE-grounded characterization of analog "
                                 "in-memory-computing crossbars. Run `xbarchar STAGE --help` for a stage's "
                                 "subcommands.")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="{" + ",".join(STAGES) + "}")
    for name, line in STAGES.items():
        sub.add_parser(name, help=line, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``xbarchar STAGE [SUBCOMMAND] [OPTIONS]``: hand everything after STAGE to that stage's command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in STAGES:
        parser = _parser()
        xcli.refuse_options_first(parser, args, "STAGE SUBCOMMAND")
        parser.parse_args(args)  # --help, or a one-line error
        return xcli.EXIT_BAD_INPUT  # not reached: parse_args exits for every argument that is not a stage
    stage = importlib.import_module(f"{PACKAGES[args[0]]}.cli")
    return stage.main(args[1:], prog=f"{PROG} {args[0]}")
