"""The convention every command line of the project follows.

One line on standard error for every failure, no traceback unless ``--debug``; exit code
:data:`EXIT_BAD_INPUT` (2) for input the user can fix (a config, a circuit file, a data file, an
argument, an output path that would replace an input), :data:`EXIT_FAILED` (1) when the command
could not finish for another reason (a full disk, an internal error).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xbarchar.files import OutputError, OutputPathError
from xbarchar.settings import SettingsError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

log = logging.getLogger("xbarchar")


class ArgumentError(ValueError):
    """A command-line argument is malformed (not JSON, a missing file)."""


def load_json_object(text: str | None, flag: str) -> dict[str, Any]:
    """A JSON object given inline (``'{...}'``) or as a file (``@file.json`` or a plain path).

    Empty or None gives ``{}``. Every CLI reads its JSON arguments through this one function.
    """
    if not text:
        return {}
    if not text.lstrip().startswith("{"):
        path = Path(text[1:] if text.startswith("@") else text)
        if path.is_file():
            text = path.read_text()
        else:
            try:
                json.loads(text)  # other JSON (a list, a number) is named below as the wrong type
            except json.JSONDecodeError:
                raise ArgumentError(f"{flag}: {text!r} is neither a JSON object nor an existing file") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"{flag}: not a JSON object or a file holding one ({exc})") from None
    if not isinstance(value, dict):
        raise ArgumentError(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def json_file(text: str | None) -> str:
    """The file behind a JSON argument ('' when it is given inline): an input of the command."""
    if not text or text.lstrip().startswith("{"):
        return ""
    return text[1:] if text.startswith("@") else text


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")


def run(func: Callable[[argparse.Namespace], object], args: argparse.Namespace,
        bad_input: tuple[type[BaseException], ...]) -> int:
    """Call ``func(args)`` and turn its outcome into an exit code (see the module docstring)."""
    debug = bool(args.debug)
    try:
        code = func(args)
    except (*bad_input, ArgumentError, SettingsError, OutputPathError) as exc:
        return _fail(exc, EXIT_BAD_INPUT, debug, "error")
    except OutputError as exc:
        return _fail(exc, EXIT_FAILED, debug, "error")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _fail(exc, EXIT_FAILED, debug, f"internal error ({type(exc).__name__}; rerun with --debug "
                     "for the traceback)")
    return int(code or EXIT_OK)


def _fail(exc: BaseException, code: int, debug: bool, label: str) -> int:
    if debug:
        traceback.print_exc()
    text = " ".join(str(exc).split()) or type(exc).__name__
    print(f"{label}: {text}", file=sys.stderr)
    return code
