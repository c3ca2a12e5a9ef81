"""``xbarchar config check``: a workflow config checked without Snakemake.

Snakemake reads a ``--configfile`` itself before any workflow code runs, and evaluates the Python in a
YTE template (``__use_yte__: true``) while it does. This command reads the same files with the safe,
bounded loader only (:mod:`xbarchar.yamlsafe`), merges them onto the workflow's default config as
``snakemake --configfile`` does (or replaces it, ``--replace-workflow-config``), then runs the checks
of ``snakemake -n``: the schema and every stage's settings. It never evaluates anything in a file.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from xbarchar import cli as xcli
from xbarchar.yamlsafe import ConfigTreeError, check_tree, load_config_file

from .config import ConfigError, check_schema, validate_config

log = logging.getLogger("pipeline")
WORKFLOW_DIR = Path(__file__).resolve().parents[1]
"""The checkout holding the Snakefile, config/config.yaml and config/schema.yaml."""


def merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` onto ``base`` key by key, mappings recursively (Snakemake's ``--configfile`` update)."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def checked_config(files: list[str], replace: bool, workflow_dir: Path = WORKFLOW_DIR) -> dict[str, Any]:
    """The config ``snakemake --configfile FILES`` would run with, every check of ``snakemake -n`` passed;
    :class:`ConfigError` or :class:`ConfigTreeError` naming the file or key otherwise."""
    config: dict[str, Any] = {} if replace else load_config_file(workflow_dir / "config" / "config.yaml")
    for name in files:
        tree = load_config_file(name)
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {name}: expected a mapping of keys at the top level")
        config = merged(config, tree)
    check_tree(config, "config")
    check_schema(config, workflow_dir / "config" / "schema.yaml")
    validate_config(config, base_dir=workflow_dir)
    return config


def cmd_check(args: argparse.Namespace) -> None:
    checked_config(list(args.files), args.replace_workflow_config)
    print(f"config OK: {', '.join(args.files)}"
          f"{' (replacing the workflow config)' if args.replace_workflow_config else ' over config/config.yaml'}")


def build_parser(prog: str = "python -m pipeline") -> argparse.ArgumentParser:
    parser = xcli.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{check}")
    p = sub.add_parser("check", help="check config files as `snakemake -n --configfile FILES` would, "
                                     "without evaluating anything in them")
    p.add_argument("files", nargs="+", help="config files (YAML or JSON), in the order of --configfile")
    p.add_argument("--replace-workflow-config", action="store_true",
                   help="the files replace config/config.yaml instead of overriding its keys")
    p.set_defaults(func=cmd_check)
    for p in sub.choices.values():
        xcli.add_common_options(p)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m pipeline") -> int:
    return xcli.main(build_parser(prog), argv, bad_input=(ConfigError, ConfigTreeError))
