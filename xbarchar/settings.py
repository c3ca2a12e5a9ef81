"""One way to build a settings dataclass from untrusted input (a config slice, a JSON argument).

Every stage's settings are frozen dataclasses whose field defaults are the only defaults there are
(the workflow schema is checked against them, ``tests/test_contracts.py``). :func:`from_dict` builds
one, nested dataclasses included, and refuses unknown keys; the ``check`` helpers give every range
error the same shape: ``<where>.<key> = <value>: expected <what>``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, TypeVar

from xbarchar.yamlsafe import short_repr

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is unknown or out of range; the message names the key (``where.key``).

    Raised by :func:`check` inside a dataclass, it holds the key relative to that dataclass;
    :func:`from_dict` puts the place in the config in front (``models.cnn.epochs = 0: ...``).
    """

    def __init__(self, message: str, located: bool = True) -> None:
        super().__init__(message)
        self.located = located


def is_int(x: Any) -> bool:
    """An int, not a bool (YAML ``true`` is not 1)."""
    return isinstance(x, int) and not isinstance(x, bool)


MAX_SEED = 2**32 - 1
"""Largest seed (numpy's and scikit-learn's generators take seeds in [0, 2**32 - 1])."""
SEED_EXPECTED = f"an integer in [0, {MAX_SEED}]"


def is_seed(x: Any) -> bool:
    """An int (not a bool) in ``[0, MAX_SEED]``."""
    return is_int(x) and 0 <= x <= MAX_SEED


def is_number(x: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check(ok: bool, key: str, expected: str, value: Any) -> None:
    """Raise :class:`SettingsError` ``key = value: expected ...`` unless ``ok`` (see :func:`from_dict`).

    The value is shown cut to a hundred characters, however large it is."""
    if not ok:
        raise SettingsError(f"{key} = {short_repr(value)}: expected {expected}", located=False)


def reject_unknown(data: dict[str, Any], known: set[str] | frozenset[str], where: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """``cls(**data)`` with unknown keys refused and nested dataclass fields built from dicts.

    ``where`` names the place in the config (``evaluation``, ``models.cnn``) for messages; range
    checks stay in each class's ``__post_init__`` (with :func:`check`).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{where} = {short_repr(data)}: expected a mapping of settings")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    reject_unknown(data, set(fields), where)
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        kind = hints.get(key)
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            value = value if isinstance(value, kind) else from_dict(kind, value, f"{where}.{key}")
        values[key] = value
    try:
        return cls(**values)
    except SettingsError as exc:
        if exc.located:
            raise
        raise SettingsError(f"{where}.{exc}") from None
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where}: {exc}") from None


def to_dict(settings: Any) -> dict[str, Any]:
    """Plain JSON-ready dict (tuples become lists)."""
    def plain(x: Any) -> Any:
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(dataclasses.asdict(settings))
