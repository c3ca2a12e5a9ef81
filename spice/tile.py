"""The physical tile: one record of an array's size, conductance range, read voltages and resistances.

:attr:`spice.circuit.CircuitSpec.tile` makes it from a circuit; a surrogate stores it in its file
(``to_dict``/``from_dict``); every tile model of the DNN stage (``dnn.mvm.TileMVM``) exposes the one
it models as ``tile``. Units are in the field names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spice.circuit import CircuitSpec

DEFAULT_T_READ_S = 10e-9
"""Default read pulse width (s): NeuroSim's ``readPulseWidth = 10e-9`` (DNN+NeuroSim, Param.cpp; Peng, Huang,
Jiang, Yu, "DNN+NeuroSim: An End-to-End Benchmarking Framework for Compute-in-Memory Accelerators", IEDM 2019).
The one source of this default: :class:`Tile` and :class:`spice.circuit.CircuitSpec` use it."""


class TileError(ValueError):
    """A tile record is invalid; the message names the key and what was expected."""


@dataclass(frozen=True)
class Tile:
    """The physical constants of a crossbar tile. Units in the names."""

    rows: int
    cols: int
    g_off_s: float
    """Lowest programmable cell conductance."""
    g_on_s: float
    """Highest programmable cell conductance."""
    v_read_min_v: float
    """Lowest row voltage the tile is read (or a model of it is valid) at; -v_read_max_v: either sign."""
    v_read_max_v: float
    """Largest |row voltage|."""
    r_driver_ohm: float
    """Series resistance of each row driver (0 = ideal voltage source)."""
    r_sense_ohm: float
    """Resistance of each column sense element to ground (0 = virtual ground)."""
    r_wire_row_ohm: float
    """Row wire resistance per cell segment."""
    r_wire_col_ohm: float
    """Column wire resistance per cell segment."""
    t_read_s: float = DEFAULT_T_READ_S
    """Read pulse width: how long the row voltages are applied per read (energy per read = power x t_read_s)."""

    def __post_init__(self) -> None:
        for key in ("rows", "cols"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TileError(f"tile: {key} must be an integer >= 1, got {value!r}")
        for key in ("g_off_s", "g_on_s", "v_read_min_v", "v_read_max_v", *RESISTANCE_KEYS):
            if not _is_number(getattr(self, key)):
                raise TileError(f"tile: {key} must be a finite number, got {getattr(self, key)!r}")
        if not 0.0 <= self.g_off_s < self.g_on_s:
            raise TileError(f"tile: g_off_s={self.g_off_s!r}, g_on_s={self.g_on_s!r} S: expected "
                            "0 <= g_off_s < g_on_s")
        if not self.v_read_max_v > 0.0:
            raise TileError(f"tile: v_read_max_v={self.v_read_max_v!r} V: expected > 0")
        if not -self.v_read_max_v <= self.v_read_min_v < self.v_read_max_v:
            raise TileError(f"tile: v_read_min_v={self.v_read_min_v!r} V: expected in [-v_read_max_v, v_read_max_v)")
        for key in RESISTANCE_KEYS:
            if getattr(self, key) < 0.0:
                raise TileError(f"tile: {key}={getattr(self, key)!r} ohm: expected >= 0")
        if not _is_number(self.t_read_s) or not self.t_read_s > 0.0:
            raise TileError(f"tile: t_read_s must be a finite number > 0 s, got {self.t_read_s!r}")

    @classmethod
    def from_circuit(cls, spec: CircuitSpec) -> Tile:
        """The tile of circuit ``spec`` (the same as ``spec.tile``)."""
        return spec.tile

    @property
    def full_scale_a(self) -> float:
        """Full-scale column current g_on * v_max * rows (A)."""
        return self.g_on_s * self.v_read_max_v * self.rows

    def to_dict(self) -> dict[str, Any]:
        """The fields by name (json-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Tile:
        """A tile from :meth:`to_dict`'s layout; one :class:`TileError` naming the key otherwise. ``t_read_s``
        may be absent (records written before the tile had it): the default :data:`DEFAULT_T_READ_S`."""
        if not isinstance(data, dict):
            raise TileError(f"tile: expected a mapping of {list(TILE_KEYS)}, got {type(data).__name__}")
        missing = [key for key in TILE_KEYS if key not in data and key not in OPTIONAL_KEYS]
        if missing:
            raise TileError(f"tile: key {missing[0]!r} is missing; expected keys {list(TILE_KEYS)}")
        unknown = sorted(str(key) for key in data if key not in TILE_KEYS)
        if unknown:
            raise TileError(f"tile: unknown key {unknown[0]!r}; expected keys {list(TILE_KEYS)}")
        return cls(**data)


RESISTANCE_KEYS = ("r_driver_ohm", "r_sense_ohm", "r_wire_row_ohm", "r_wire_col_ohm")
"""The tile's resistances (ohm)."""
TILE_KEYS = tuple(f.name for f in fields(Tile))
"""Every field of :class:`Tile`, in order."""
OPTIONAL_KEYS = ("t_read_s",)
"""Fields :meth:`Tile.from_dict` fills with their default when a record lacks them."""


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TileViews:
    """Read-only views of a tile model's ``tile`` under the names tile models have always answered to
    (``rows``, ``cols``, ``g_off_s``, ``g_on_s``, ``v_read_min_v``, ``v_read_max_v``, ``full_scale_a``,
    ``t_read_s``);
    the record itself is the one source."""

    tile: Tile

    @property
    def rows(self) -> int:
        return self.tile.rows

    @property
    def cols(self) -> int:
        return self.tile.cols

    @property
    def g_off_s(self) -> float:
        return self.tile.g_off_s

    @property
    def g_on_s(self) -> float:
        return self.tile.g_on_s

    @property
    def v_read_min_v(self) -> float:
        return self.tile.v_read_min_v

    @property
    def v_read_max_v(self) -> float:
        return self.tile.v_read_max_v

    @property
    def full_scale_a(self) -> float:
        return self.tile.full_scale_a

    @property
    def t_read_s(self) -> float:
        return self.tile.t_read_s
