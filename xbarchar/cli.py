"""The convention every command line of the project follows.

One line on standard error for every failure, no traceback unless ``--debug``; exit code
:data:`EXIT_BAD_INPUT` (2) for input the user can fix (a bad invocation, a config, a circuit file, a
data file, an argument, an output path that would replace an input), :data:`EXIT_FAILED` (1) when the
command could not finish for another reason (a full disk, an internal error).

Every stage command is ``<stage> <subcommand> [options]``; the options every subcommand shares
(:func:`add_common_options`) and ``--circuit-name`` (:func:`add_circuit_name`) are defined here once
and follow the subcommand. Numbers are parsed by :func:`integer` and :func:`real`, which refuse
nan, inf and values out of range.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import traceback
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from xbarchar import progress
from xbarchar.files import OutputError, OutputPathError
from xbarchar.settings import SettingsError
from xbarchar.yamlsafe import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    ConfigTreeError,
    check_tree,
    read_config_text,
    short_repr,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

log = logging.getLogger("xbarchar")


class ArgumentError(ValueError):
    """A command-line argument is malformed (not JSON, a missing file)."""


def load_json_object(text: str | None, flag: str) -> dict[str, Any]:
    """A JSON object given inline (``'{...}'``) or as a file (``@file.json`` or a plain path).

    Empty or None gives ``{}``. Every CLI reads its JSON arguments through this one function, with the
    limits of a config file (:mod:`xbarchar.yamlsafe`): size and UTF-8 checked before parsing, nesting
    and node count bounded after.
    """
    if not text:
        return {}
    source = flag  # the flag names the argument; read errors name the file too
    if not text.lstrip().startswith("{"):
        path = Path(text[1:] if text.startswith("@") else text)
        if _is_file(path):
            try:
                text = read_config_text(path)
            except ConfigTreeError as exc:
                raise ArgumentError(f"{flag}: {exc}") from None
        else:
            try:
                json.loads(text)  # other JSON (a list, a number) is named below as the wrong type
            except (json.JSONDecodeError, RecursionError):
                raise ArgumentError(f"{flag}: {short_repr(text)} is neither a JSON object nor an existing file"
                                    ) from None
    if len(text) > MAX_CONFIG_BYTES:
        raise ArgumentError(f"{source}: longer than {MAX_CONFIG_BYTES} characters; a JSON argument is a few kB")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"{source}: not a JSON object or a file holding one ({exc})") from None
    except RecursionError:
        raise ArgumentError(f"{source}: nested deeper than {MAX_CONFIG_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise ArgumentError(f"{source}: expected a JSON object, got {type(value).__name__}")
    try:
        check_tree(value, source)
    except ConfigTreeError as exc:
        raise ArgumentError(str(exc)) from None
    return value


def _is_file(path: Path) -> bool:
    """Whether ``path`` names a regular file (False for a text too long or odd to be a path)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def json_file(text: str | None) -> str:
    """The file behind a JSON argument ('' when it is given inline): an input of the command."""
    if not text or text.lstrip().startswith("{"):
        return ""
    return text[1:] if text.startswith("@") else text


DEFAULT_THREADS = 1
"""CPU threads of a command (torch, BLAS and OpenMP) unless ``--threads`` says otherwise: one, as every
workflow rule runs by default; results are reproducible for a given thread count."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose every error is one line, ``<prog>: error: <message> (see <prog> --help)``,
    and exit code :data:`EXIT_BAD_INPUT`; its subcommand parsers are of the same class."""

    def error(self, message: str) -> typing.NoReturn:
        text = " ".join(message.split())
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def integer(min_value: int | None = None, max_value: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[min_value, max_value]`` (either bound may be open)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer{_range(min_value, max_value)}, "
                                             f"got {text!r}") from None
        if (min_value is not None and value < min_value) or (max_value is not None and value > max_value):
            raise argparse.ArgumentTypeError(f"expected an integer{_range(min_value, max_value)}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def real(min_value: float | None = None, max_value: float | None = None,
         min_exclusive: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in ``[min_value, max_value]`` (``(min_value, ...`` with
    ``min_exclusive``); nan and inf are refused."""

    def parse(text: str) -> float:
        expected = f"a finite number{_range(min_value, max_value, min_exclusive)}"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        too_low = min_value is not None and (value <= min_value if min_exclusive else value < min_value)
        if not math.isfinite(value) or too_low or (max_value is not None and value > max_value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def _range(low: float | None, high: float | None, low_exclusive: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_exclusive else '['}{low:g}, {high:g}]"
    if low is not None:
        return f" {'>' if low_exclusive else '>='} {low:g}"
    return f" <= {high:g}" if high is not None else ""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options every subcommand of every stage takes, in the same words."""
    group = parser.add_argument_group("common options")
    group.add_argument("--threads", type=integer(0), default=DEFAULT_THREADS, metavar="N",
                       help=f"CPU threads of torch, BLAS and OpenMP (default {DEFAULT_THREADS}; 0: the "
                            "libraries' own choice). ngspice's KLU solve is single-threaded either way")
    loudness = group.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="log warnings and errors only; no progress bars")
    group.add_argument("--no-progress", action="store_true", help="no progress bars (logging unchanged)")
    group.add_argument("--debug", action="store_true", help="print the traceback of an error")


def add_circuit_name(parser: argparse.ArgumentParser) -> None:
    """``--circuit-name``: the name a circuit goes by in messages and in the files a command writes."""
    parser.add_argument("--circuit-name", default=None, metavar="NAME",
                        help="circuit name for messages and metadata (default: 'circuit')")


def circuit_name(args: argparse.Namespace) -> str:
    """The ``--circuit-name`` given, else ``'circuit'``."""
    return args.circuit_name or "circuit"


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars unless ``--quiet`` or ``--no-progress``."""
    return not (args.quiet or args.no_progress)


@contextlib.contextmanager
def configured(args: argparse.Namespace) -> Iterator[None]:
    """Logging level from ``-v``/``-q``; progress shown or not (``--quiet``, ``--no-progress``: for every
    progress of the process, :func:`xbarchar.progress.show_progress`) and ``--threads`` for torch, BLAS and
    OpenMP while the command runs (both restored after it, so that a command called in-process leaves its
    caller's settings alone)."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT)
    shown_before = progress.show_progress(show_progress(args))
    try:
        with _threads(args.threads):
            yield
    finally:
        progress.show_progress(shown_before)


@contextlib.contextmanager
def _threads(threads: int) -> Iterator[None]:
    """``threads`` for torch, BLAS and OpenMP while the block runs (<= 0: left alone)."""
    if threads <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")  # set only where the stage already uses torch
    torch_threads = torch.get_num_threads() if torch is not None else 0
    with threadpool_limits(limits=threads):
        if torch is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(torch_threads)


def refuse_options_first(parser: argparse.ArgumentParser, argv: list[str], word: str = "SUBCOMMAND") -> None:
    """An option before the subcommand is an error that says where options go."""
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        parser.error(f"{argv[0]}: options follow the subcommand ({parser.prog} {word} [options])")


def main(parser: argparse.ArgumentParser, argv: list[str] | None,
         bad_input: tuple[type[BaseException], ...]) -> int:
    """Parse ``argv`` (one-line errors), apply the common options and run the chosen subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    refuse_options_first(parser, argv)
    args = parser.parse_args(argv)
    with configured(args):
        return run(args.func, args, bad_input)


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
