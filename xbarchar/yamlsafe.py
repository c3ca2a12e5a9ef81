"""Bounded reading of config trees: file size, alias expansion, depth, and short value reprs.

A YAML alias loads as a shared reference, so ten nested aliases of ten items each load cheaply and
then expand to 10^10 nodes as soon as something walks or prints the tree ("billion laughs").
:func:`check_tree` measures the expanded size without expanding it (each shared node is measured
once, by identity) and refuses a tree above :data:`MAX_CONFIG_NODES` or :data:`MAX_CONFIG_DEPTH`,
or one that contains itself. :func:`load_config_file` checks the size in bytes first, then loads
with the safe loader and checks the tree. :func:`short_repr` is the only way a config value enters
an error message: at most :data:`MAX_REPR_CHARS` characters, built without a full repr.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

YTE_KEY = "__use_yte__"
"""The top-level key that turns a YAML file into a YTE template for Snakemake (Python evaluated on load)."""
MAX_CONFIG_BYTES = 1_000_000
"""Largest config file read, in bytes (the shipped configs are a few kB)."""
MAX_CONFIG_NODES = 100_000
"""Largest config tree, counted as expanded: every alias counts the nodes it stands for again, and a
string counts one more node per 100 characters (so an expanded tree is at most ~10 MB of text)."""
MAX_CONFIG_DEPTH = 32
"""Deepest nesting of mappings and lists in a config."""
MAX_KEY_CHARS = 100
"""Longest key of a config mapping (keys are names: circuits, models, settings)."""
MAX_REPR_CHARS = 100
"""Longest rendering of a config value in an error message."""

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 4
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40


class ConfigTreeError(ValueError):
    """A config file or tree is too large, too deep, or contains itself; the message names the source."""


def short_repr(value: Any, limit: int = MAX_REPR_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, computed in bounded time (nested aliases too)."""
    text = _REPR.repr(value)
    return short_text(text, limit)


def short_text(text: str, limit: int = MAX_REPR_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text[: limit + 1].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _string_cost(text: str) -> int:
    return 1 + len(text) // 100


def check_tree(tree: Any, source: str, max_nodes: int = MAX_CONFIG_NODES,
               max_depth: int = MAX_CONFIG_DEPTH) -> int:
    """The expanded node count of ``tree``; :class:`ConfigTreeError` naming ``source`` above the limits.

    Work is linear in the number of distinct nodes: a node reached again through an alias adds its
    memoized size without being walked again. A key that is not a string is refused too.
    """
    sizes: dict[int, int] = {}  # by id: every node stays alive in ``tree`` while it is walked
    on_path: set[int] = set()

    def size(node: Any, path: str, depth: int) -> int:
        if isinstance(node, str):
            return _string_cost(node)
        if not isinstance(node, (dict, list, tuple)):
            return 1
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in on_path:
            raise ConfigTreeError(f"{source}: {path} contains itself (a recursive alias); expected a finite tree")
        if depth > max_depth:
            raise ConfigTreeError(f"{source}: {path} is nested deeper than {max_depth} levels")
        on_path.add(id(node))
        total = 1
        if isinstance(node, dict):
            items = node.items()
        else:
            items = ((f"[{i}]", v) for i, v in enumerate(node))
        for key, value in items:
            if isinstance(node, dict) and (not isinstance(key, str) or len(key) > MAX_KEY_CHARS):
                raise ConfigTreeError(f"{source}: {path} has the key {short_repr(key)}; expected a string of at "
                                      f"most {MAX_KEY_CHARS} characters")
            total += size(value, f"{path}.{key}" if isinstance(node, dict) else f"{path}{key}", depth + 1)
            if total > max_nodes:
                raise ConfigTreeError(
                    f"{source}: {path} expands to more than {max_nodes} nodes (nested YAML "
                    f"aliases?); a config is a few hundred")
        on_path.discard(id(node))
        sizes[id(node)] = total
        return total

    return size(tree, "config", 0)


def read_config_text(path: str | Path, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The text of a config file, refused (naming the file) above ``max_bytes`` or when not UTF-8."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigTreeError(f"config file {p}: cannot be read ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise ConfigTreeError(f"config file {p}: larger than {max_bytes} bytes; a config is a few kB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigTreeError(f"config file {p}: byte {exc.start} is not UTF-8 text") from None


def load_config_file(path: str | Path, max_bytes: int = MAX_CONFIG_BYTES,
                     max_nodes: int = MAX_CONFIG_NODES) -> Any:
    """A YAML/JSON config file loaded with the safe loader, its size and expanded tree checked."""
    text = read_config_text(path, max_bytes)
    try:
        tree = yaml.safe_load(text)
    except RecursionError:
        raise ConfigTreeError(f"config file {path}: nested deeper than {MAX_CONFIG_DEPTH} levels") from None
    except yaml.MarkedYAMLError as exc:
        line = f", line {exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        raise ConfigTreeError(f"config file {path}{line}: not valid YAML ({short_text(str(exc.problem))})") from None
    except yaml.YAMLError as exc:
        raise ConfigTreeError(f"config file {path}: not valid YAML ({short_text(str(exc))})") from None
    check_tree(tree, f"config file {path}", max_nodes=max_nodes)
    if isinstance(tree, dict) and YTE_KEY in tree:
        raise ConfigTreeError(f"config file {path}: '{YTE_KEY}' makes it a YTE template, whose expressions "
                              "Snakemake evaluates as Python when it reads the file; a config is plain YAML "
                              "(check a config you did not write with `xbarchar config check FILE` first)")
    return tree
