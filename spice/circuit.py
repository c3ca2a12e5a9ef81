"""Crossbar circuit specification: array topology + user-swappable SPICE subcircuits.

A circuit is an array xbarchar builds itself (``rows`` x ``cols`` cells, a driver on every row, a
per-segment wire resistance along rows and columns, a sense element on every column) plus a circuit
file in plain ngspice syntax that defines the parts a user may swap:

``.subckt cell row col [gate] params: g=...``   required; ``g`` is the programmed conductance (S)
``.subckt driver in out params: r=...``          optional; default: a series resistor ``r_driver_ohm``
``.subckt sense in params: r=...``               optional; default: a resistor to ground ``r_sense_ohm``
``.model ...`` cards                             optional (e.g. a MOSFET for a 1T1R cell)

plus the ``.param``/``.func`` definitions those use. Element lines outside a ``.subckt`` and
definitions of :data:`RESERVED_NAMES` are refused, so nothing in the file reaches the array's own
nodes or expressions; :func:`spice.ngspice.check_circuit` refuses a cell that delivers power.

Topology (node names used by :mod:`spice.netlist` and, independently, :mod:`spice.nodal`):
row ``r`` is driven by source ``vin_r`` through the driver to node ``d_r``; a row-wire segment of
``r_wire_row_ohm`` separates ``d_r`` from the first cell and every cell from the next one. Cell
``(r, c)`` joins row node ``a_r_c`` to column node ``b_r_c``; a column-wire segment of
``r_wire_col_ohm`` separates vertically adjacent column nodes and the last one from the sense input
``s_c``. The output is the current flowing from the array into each column's sense element (A,
positive into the sense element).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spice.tile import DEFAULT_T_READ_S, Tile
from xbarchar.yamlsafe import short_repr

MAX_ARRAY_SIDE = 1024
"""Most rows (and most columns) of an array."""
MAX_PATH_CHARS = 1024
"""Longest circuit-file path a config may give."""
FORMAT_NOTE = "current into each column's sense element, amperes, positive flowing from array into sense"


class CircuitError(ValueError):
    """A circuit spec or circuit file is invalid; the message names the file/key and what was expected."""


@dataclass(frozen=True)
class Subckt:
    """One ``.subckt`` definition found in a circuit file."""

    name: str
    pins: tuple[str, ...]
    params: tuple[str, ...]
    header: VettedLine | None = None
    """The ``.subckt`` line."""
    body: tuple[VettedLine, ...] = ()
    """The lines between ``.subckt`` and ``.ends``, in order."""


@dataclass(frozen=True)
class CircuitSpec:
    """Everything that defines a crossbar circuit. Units are in the field names."""

    name: str
    rows: int
    cols: int
    r_driver_ohm: float = 1000.0
    """Series resistance of each row driver (0 = ideal voltage source)."""
    r_wire_row_ohm: float = 5.0
    """Row wire resistance per cell segment."""
    r_wire_col_ohm: float = 5.0
    """Column wire resistance per cell segment."""
    r_sense_ohm: float = 1000.0
    """Resistance of each column sense element to ground (0 = virtual ground)."""
    g_on_s: float = 5e-5
    """Highest programmable cell conductance (ON state)."""
    g_off_s: float = 5e-6
    """Lowest programmable cell conductance (OFF state)."""
    v_read_max_v: float = 0.2
    """Largest |row input voltage|."""
    v_read_min_v: float = 0.0
    """Smallest row input voltage (0 for unipolar reads, -v_read_max_v for bipolar)."""
    t_read_s: float = DEFAULT_T_READ_S
    """Read pulse width (s): how long the row voltages are applied per read; energy per read = power x
    t_read_s. Default 10 ns: NeuroSim's read pulse width (:data:`spice.tile.DEFAULT_T_READ_S`)."""
    c_wire_row_f: float = 0.0
    """Capacitance of each row-wire segment to ground (F), for the transient read of :mod:`spice.dynamic`
    (0 = none; the static solves never use it)."""
    c_wire_col_f: float = 0.0
    """Capacitance of each column-wire segment to ground (F), as ``c_wire_row_f``."""
    v_gate_v: float = 0.0
    """Gate-line voltage for three-terminal (1T1R) cells; ignored for two-terminal cells. A config must
    set it for a cell with a gate pin (`spec_from_config`): 0 V leaves an enhancement access transistor off."""
    netlist_path: str = ""
    """Circuit file with the ``cell`` (and optional ``driver``/``sense``) subcircuits."""
    netlist_text: str = field(default="", repr=False)
    """Contents of ``netlist_path`` at load time (kept so the spec is self-contained)."""

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise CircuitError(f"circuit name {self.name!r}: expected letters, digits, '_', '.' or '-' "
                               "(at most 64, starting with a letter, digit or '_')")
        where = f"circuit '{self.name}'"
        for key in ("rows", "cols"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ARRAY_SIDE:
                raise CircuitError(f"{where}: {key} must be an integer in [1, {MAX_ARRAY_SIDE}], got {_short(value)}")
        for key in ("r_driver_ohm", "r_wire_row_ohm", "r_wire_col_ohm", "r_sense_ohm"):
            value = getattr(self, key)
            if not _is_number(value) or not 0.0 <= value <= 1e9:
                raise CircuitError(f"{where}: {key} must be a number in [0, 1e9] ohm, got {_short(value)}")
        for key in ("g_on_s", "g_off_s"):
            value = getattr(self, key)
            if not _is_number(value) or not 0.0 < value <= 1.0:
                raise CircuitError(f"{where}: {key} must be a number in (0, 1] S, got {_short(value)}")
        if self.g_off_s >= self.g_on_s:
            raise CircuitError(
                f"{where}: g_off_s ({self.g_off_s}) must be smaller than g_on_s ({self.g_on_s})"
            )
        if not _is_number(self.v_read_max_v) or not 0.0 < self.v_read_max_v <= 10.0:
            raise CircuitError(f"{where}: v_read_max_v must be in (0, 10] V, got {_short(self.v_read_max_v)}")
        if not _is_number(self.v_read_min_v) or not -self.v_read_max_v <= self.v_read_min_v < self.v_read_max_v:
            raise CircuitError(
                f"{where}: v_read_min_v must be in [-v_read_max_v, v_read_max_v), got {_short(self.v_read_min_v)}"
            )
        if not _is_number(self.t_read_s) or not 0.0 < self.t_read_s <= 1.0:
            raise CircuitError(f"{where}: t_read_s must be a number in (0, 1] s (the read pulse width), "
                               f"got {_short(self.t_read_s)}")
        for key in ("c_wire_row_f", "c_wire_col_f"):
            value = getattr(self, key)
            if not _is_number(value) or not 0.0 <= value <= 1e-9:
                raise CircuitError(f"{where}: {key} must be a number in [0, 1e-9] F (capacitance per wire "
                                   f"segment), got {_short(value)}")
        if not _is_number(self.v_gate_v) or not -V_GATE_LIMIT_V <= self.v_gate_v <= V_GATE_LIMIT_V:
            raise CircuitError(f"{where}: v_gate_v must be a number in [-{V_GATE_LIMIT_V:g}, {V_GATE_LIMIT_V:g}] V, "
                               f"got {_short(self.v_gate_v)}")
        if not self.netlist_text:
            raise CircuitError(f"{where}: no circuit file given (key 'netlist': a file with '.subckt cell')")
        # Parsing validates the file; raises CircuitError naming the file.
        self.subckts()

    # ------------------------------------------------------------------ circuit file
    def subckts(self) -> dict[str, Subckt]:
        """The subcircuits of the circuit file, validated against the pin contract."""
        return parse_circuit_file(self.netlist_text, self.netlist_path or f"<{self.name}>")

    def models(self) -> dict[str, VettedLine]:
        """The ``.model`` cards of the circuit file (at top level or inside a subcircuit), by lower-case name."""
        return {line.text.split()[1].lower(): line for line in self.vetted_lines()
                if line.text.split()[0].lower() == ".model" and len(line.text.split()) >= 3}

    def vetted_lines(self) -> tuple[VettedLine, ...]:
        """The circuit file's logical lines, vetted by the allow-list: all ngspice ever gets of it."""
        return vet_circuit_file(self.netlist_text, self.netlist_path or f"<{self.name}>")

    @property
    def cell_has_gate(self) -> bool:
        """True for three-terminal cells (row, col, gate), e.g. 1T1R."""
        return len(self.subckts()["cell"].pins) == 3

    @property
    def temperature_independent(self) -> bool:
        """True when nothing in the circuit file can depend on the circuit temperature.

        Then the circuit temperature is free to serve as the sweep index of a batched run (see
        :mod:`spice.netlist`). Decided conservatively from the text: only R, C, L, V, I, B, E, F, G,
        H and X element lines, no ``.model`` card and no temperature keyword.
        """
        return circuit_is_temperature_independent(self.netlist_text)

    @property
    def has_custom_driver(self) -> bool:
        return "driver" in self.subckts()

    @property
    def has_custom_sense(self) -> bool:
        return "sense" in self.subckts()

    @property
    def tile(self) -> Tile:
        """The array's physical constants as one record (:class:`spice.tile.Tile`)."""
        return Tile(rows=self.rows, cols=self.cols, g_off_s=self.g_off_s, g_on_s=self.g_on_s,
                    v_read_min_v=self.v_read_min_v, v_read_max_v=self.v_read_max_v, r_driver_ohm=self.r_driver_ohm,
                    r_sense_ohm=self.r_sense_ohm, r_wire_row_ohm=self.r_wire_row_ohm,
                    r_wire_col_ohm=self.r_wire_col_ohm, t_read_s=self.t_read_s)

    @property
    def netlist_sha256(self) -> str:
        return hashlib.sha256(self.netlist_text.encode()).hexdigest()

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CircuitSpec:
        return cls(**json.loads(text))

    def physics_key(self) -> dict[str, Any]:
        """The fields that define the physics (not the name or the file's path)."""
        d = self.to_dict()
        d.pop("name")
        d.pop("netlist_path")
        d.pop("netlist_text")
        d["netlist_sha256"] = self.netlist_sha256
        return d


V_GATE_LIMIT_V = 20.0
"""Largest |v_gate_v| accepted."""

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
SPEC_KEYS = {f.name for f in dataclasses.fields(CircuitSpec)} - {"netlist_text", "netlist_path"}


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any) -> str:
    """A config value in a message: its repr cut to a hundred characters."""
    return short_repr(value)


_SUBCKT_RE = re.compile(r"^\.subckt\s+(\S+)\s*(.*)$", re.IGNORECASE)
_PIN_CONTRACT = {
    "cell": ((2, 3), "row col [gate]", ("g",)),
    "driver": ((2,), "in out", ("r",)),
    "sense": ((1,), "in", ("r",)),
}
ALLOWED_DOT_COMMANDS = (".subckt", ".ends", ".param", ".model", ".func")
"""The only dot commands a circuit file may hold. Everything else (``.include`` and every other
spelling ngspice reads a file with, ``.lib``, ``.control``, ``.exec``, analyses, ``.options``,
``.end`` ...) is refused: the array builder writes those lines itself."""
ALLOWED_ELEMENTS = frozenset("bcdefghijklmoqrstuvwxyz")
"""First letters of the element lines a circuit file may hold: every ngspice device except ``a``
(XSPICE code models, some of which read files) and ``n``/``p`` (OSDI and multi-conductor lines,
whose models are loaded by control commands)."""
_DOT_WORD = re.compile(r"^\.[a-z_]", re.IGNORECASE)
_FILE_WORD = re.compile(r"\bfile\s*=", re.IGNORECASE)
MAX_CIRCUIT_FILE_BYTES = 1_000_000
"""Largest circuit file accepted (a cell, driver and sense subcircuit are a few hundred bytes)."""
RESERVED_NAMES = frozenset({
    # what the array builder's own expressions use (spice.netlist: ``pwl(V(idx), ...)``, ``pwl(temper, ...)``)
    "pwl", "v", "i", "temper", "time", "hertz",
    # every other function and constant ngspice's expressions know (B-sources and numparam)
    "abs", "acos", "acosh", "agauss", "asin", "asinh", "atan", "atanh", "arctan", "aunif", "ceil", "cos",
    "cosh", "ddt", "defined", "exp", "floor", "gauss", "int", "limit", "ln", "log", "log10", "max", "min",
    "nint", "pi", "pow", "pwr", "sdt", "sgn", "sign", "sin", "sinh", "sqr", "sqrt", "table", "tablef", "tan",
    "tanh", "ternary_fcn", "u", "u2", "unif", "uramp", "vdmos",
})
"""Names a circuit file may not define with ``.param``, ``.func`` or a subcircuit's ``params:``, in any
case: a top-level definition would replace what the array builder's own expressions mean."""


@dataclass(frozen=True)
class VettedLine:
    """One logical line of a circuit file that passed the allow-list (continuations joined)."""

    line_number: int
    """1-based line of the circuit file where the logical line starts."""
    text: str


def vet_circuit_file(text: str, source: str) -> tuple[VettedLine, ...]:
    """The logical lines of a circuit file, each checked against the allow-list.

    Comments (``*`` lines, ``;``/``$``/``//`` tails) are dropped, so nothing a comment could trigger
    (ngspice runs ``*#`` comment lines as control commands) ever reaches ngspice. Raises
    :class:`CircuitError` naming ``source`` and the line for anything else: non-ASCII or control
    characters, dot commands other than :data:`ALLOWED_DOT_COMMANDS`, element types outside
    :data:`ALLOWED_ELEMENTS`, ``file=`` parameters. The message never repeats the refused line.
    """
    if len(text) > MAX_CIRCUIT_FILE_BYTES or len(text.encode("utf-8", "replace")) > MAX_CIRCUIT_FILE_BYTES:
        raise CircuitError(f"circuit file {source}: larger than {MAX_CIRCUIT_FILE_BYTES} bytes; a circuit "
                           "file holds only the cell (and driver/sense) subcircuits and their models")
    vetted: list[VettedLine] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        where = f"circuit file {source}, line {number}"
        line = raw[:-1] if raw.endswith("\r") else raw
        bad = next((ch for ch in line if not (" " <= ch <= "~" or ch == "\t")), None)
        if bad is not None:
            raise CircuitError(f"{where}: character {bad!r} is not allowed; a circuit file is plain ASCII text")
        stripped = line.strip()
        if stripped.startswith("*#"):
            raise CircuitError(f"{where}: a '*#' comment is not allowed (ngspice runs '*#' lines as control "
                               "commands); start the comment with '* #' instead")
        if not stripped or stripped.startswith("*"):
            continue
        code = _strip_inline_comment(stripped)
        if not code:
            continue
        if code.startswith("+"):
            if not vetted:
                raise CircuitError(f"{where}: continuation line '+' with no line before it")
            prev = vetted[-1]
            vetted[-1] = VettedLine(prev.line_number, f"{prev.text} {code[1:].strip()}")
        else:
            vetted.append(VettedLine(number, code))
        first = vetted[-1].text.split()[0].lower()
        if first.startswith("."):
            if first not in ALLOWED_DOT_COMMANDS:
                raise CircuitError(
                    f"{where}: dot command '{_quote_word(first)}' is not allowed; a circuit file may hold only "
                    f"element lines and {', '.join(ALLOWED_DOT_COMMANDS)} (the array builder adds everything else)"
                )
        elif first[0] not in ALLOWED_ELEMENTS:
            raise CircuitError(
                f"{where}: element '{_quote_word(first)}' is not allowed; element lines start with one of "
                f"'{''.join(sorted(ALLOWED_ELEMENTS))}' (no XSPICE 'a', OSDI 'n' or 'p' devices)"
            )
        if any(_DOT_WORD.match(token) for token in vetted[-1].text.split()[1:]):
            raise CircuitError(f"{where}: a dot command inside a line is not allowed (continuation lines "
                               "join onto the line before them)")
        if _FILE_WORD.search(vetted[-1].text):  # the logical line: 'file' may end a line, '=' start the next
            raise CircuitError(f"{where}: a 'file=' parameter is not allowed; a circuit file cannot read files")
    return tuple(vetted)


def _strip_inline_comment(line: str) -> str:
    """``line`` without an ngspice end-of-line comment (``;``, or `` $ `` / `` // `` after a blank)."""
    line = line.split(";", 1)[0]
    for mark in (" $", "\t$", " //", "\t//"):
        if mark in line:
            line = line.split(mark, 1)[0]
    return line.strip()


def _quote_word(word: str) -> str:
    """A refused word, shortened so that no message ever carries a long piece of a file."""
    return word if len(word) <= 24 else word[:24] + "..."


def parse_circuit_file(text: str, source: str) -> dict[str, Subckt]:
    """Parse and validate a circuit file's subcircuits.

    The file is first vetted line by line (:func:`vet_circuit_file`). Raises :class:`CircuitError`
    naming ``source`` (and the line) when there is no ``.subckt cell``, a known subcircuit has the
    wrong pins or lacks its parameter, a ``.subckt`` is not closed or is defined twice, an element
    line stands outside every ``.subckt`` (it would join the array builder's nodes), or a
    definition takes a name of :data:`RESERVED_NAMES`.
    """
    found: dict[str, Subckt] = {}
    bodies: dict[str, list[VettedLine]] = {}
    open_name: str | None = None
    top_level_element: int | None = None
    for vetted in vet_circuit_file(text, source):
        number, stripped = vetted.line_number, vetted.text
        first = stripped.split()[0].lower()
        _refuse_reserved_names(stripped, f"circuit file {source}, line {number}")
        if not first.startswith(".") and open_name is None and top_level_element is None:
            top_level_element = number
        if first == ".subckt":
            match = _SUBCKT_RE.match(stripped)
            if match is None:
                raise CircuitError(f"circuit file {source}, line {number}: .subckt without a name")
            if open_name is not None:
                raise CircuitError(f"circuit file {source}, line {number}: nested .subckt inside '{open_name}'")
            name = match.group(1).lower()
            rest = match.group(2)
            head, _, param_text = _split_params(rest)
            pins = tuple(p.lower() for p in head.split() if "=" not in p)
            params = tuple(
                m.group(1).lower() for m in re.finditer(r"(\w+)\s*=", param_text + " " + " ".join(
                    p for p in head.split() if "=" in p))
            )
            if name in found:
                raise CircuitError(f"circuit file {source}, line {number}: .subckt '{_quote_word(name)}' is "
                                   "defined twice (subcircuit names are case-insensitive)")
            found[name] = Subckt(name=name, pins=pins, params=params, header=vetted)
            bodies[name] = []
            open_name = name
            continue
        if first == ".ends":
            if open_name is None:
                raise CircuitError(f"circuit file {source}, line {number}: .ends without .subckt")
            found[open_name] = dataclasses.replace(found[open_name], body=tuple(bodies[open_name]))
            open_name = None
            continue
        if open_name is not None:
            bodies[open_name].append(vetted)
    if open_name is not None:
        raise CircuitError(f"circuit file {source}: .subckt '{open_name}' is never closed with .ends")
    if "cell" not in found:
        raise CircuitError(
            f"circuit file {source}: no '.subckt cell row col params: g=...' found; every circuit file "
            "must define the cell subcircuit"
        )
    if top_level_element is not None:
        raise CircuitError(
            f"circuit file {source}, line {top_level_element}: an element line outside any .subckt is not "
            "allowed; a circuit file defines only subcircuits (cell, driver, sense) and their models, "
            "parameters and functions (the array builder places every element of the array)"
        )
    for name, (counts, pin_text, needed) in _PIN_CONTRACT.items():
        if name not in found:
            continue
        sub = found[name]
        if len(sub.pins) not in counts:
            raise CircuitError(
                f"circuit file {source}: .subckt {name} has {len(sub.pins)} pins {sub.pins}; "
                f"expected pins ({pin_text})"
            )
        for param in needed:
            if param not in sub.params:
                raise CircuitError(
                    f"circuit file {source}: .subckt {name} lacks parameter '{param}'; expected "
                    f"'.subckt {name} {pin_text} params: {param}=<default>'"
                )
    return found


_FUNC_NAME = re.compile(r"^\.func\s+([^\s(]+)", re.IGNORECASE)
_ASSIGNED_NAME = re.compile(r"(?<![\w<>=!])([A-Za-z_]\w*)\s*(?:\([^()]*\))?\s*=(?!=)")


def _refuse_reserved_names(line: str, where: str) -> None:
    """Raise :class:`CircuitError` when ``line`` (one vetted logical line) defines a name of
    :data:`RESERVED_NAMES` with ``.func``, ``.param`` or a ``.subckt``'s parameters."""
    first = line.split()[0].lower()
    if first == ".func":
        match = _FUNC_NAME.match(line)
        names = [match.group(1)] if match else []
    elif first in (".param", ".subckt"):
        names = _ASSIGNED_NAME.findall(line)
    else:
        return
    for name in names:
        if name.lower() in RESERVED_NAMES:
            raise CircuitError(
                f"{where}: '{_quote_word(name)}' is a name ngspice or the array builder uses; a circuit file "
                f"may not define it with {first} (names are case-insensitive); choose another name"
            )


_TEMPERATURE_FREE_ELEMENTS = set("rclvibefghx")
_TEMPERATURE_WORDS = re.compile(r"\b(temper|temp|dtemp|tc|tc1|tc2|tce|tnom)\b", re.IGNORECASE)


def circuit_is_temperature_independent(text: str) -> bool:
    """See :attr:`CircuitSpec.temperature_independent`."""
    for vetted in vet_circuit_file(text, "<circuit>"):
        stripped = vetted.text
        if _TEMPERATURE_WORDS.search(stripped):
            return False
        first = stripped.split()[0].lower()
        if first.startswith("."):
            if first not in (".subckt", ".ends", ".param"):
                return False
        elif first[0] not in _TEMPERATURE_FREE_ELEMENTS:
            return False
    return True


def _split_params(rest: str) -> tuple[str, str, str]:
    parts = re.split(r"params:", rest, maxsplit=1, flags=re.IGNORECASE)
    if len(parts) == 2:
        return parts[0], "params:", parts[1]
    return parts[0], "", ""


def load_circuit_file(path: str | Path) -> str:
    """Read a circuit file: its size is checked before it is read (and at most one byte more than
    :data:`MAX_CIRCUIT_FILE_BYTES` is ever read); it must be UTF-8. Raises :class:`CircuitError`
    naming the file (and the byte offset and line of an undecodable byte)."""
    p = Path(path)
    if not p.is_file():
        raise CircuitError(f"circuit file {p} does not exist (key 'netlist'); expected an ngspice file "
                           "with '.subckt cell row col params: g=...'")
    too_big = CircuitError(f"circuit file {p}: larger than {MAX_CIRCUIT_FILE_BYTES} bytes; a circuit file holds "
                           "only the cell (and driver/sense) subcircuits and their models")
    if p.stat().st_size > MAX_CIRCUIT_FILE_BYTES:
        raise too_big
    with p.open("rb") as handle:
        data = handle.read(MAX_CIRCUIT_FILE_BYTES + 1)
    if len(data) > MAX_CIRCUIT_FILE_BYTES:  # it grew after the size check
        raise too_big
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CircuitError(f"circuit file {p}, line {line}: byte {exc.start} (0x{data[exc.start]:02x}) is not "
                           "UTF-8 text; a circuit file is plain ASCII text") from None


def spec_from_config(name: str, entry: dict[str, Any], base_dir: str | Path = ".") -> CircuitSpec:
    """Build a :class:`CircuitSpec` from one ``circuits:`` entry of the config.

    ``entry`` may name a ``preset`` (see :mod:`spice.presets`) whose values the other keys override;
    ``netlist`` is a path relative to ``base_dir``. Keys that belong to other stages (``sampling``,
    ``surrogate``, ``surrogate_file``) are ignored here.
    """
    from spice.presets import PRESETS

    if not isinstance(entry, dict):
        raise CircuitError(f"circuits.{name} = {_short(entry)}: expected a mapping of circuit settings")
    entry = dict(entry)
    values: dict[str, Any] = {}
    preset = entry.pop("preset", None)
    if preset is not None:
        if not isinstance(preset, str) or preset not in PRESETS:
            raise CircuitError(
                f"circuits.{name}.preset: unknown preset {_short(preset)}; expected one of {sorted(PRESETS)}"
            )
        values.update(PRESETS[preset])
    for other_stage_key in ("sampling", "surrogate", "surrogate_file", "solver"):
        entry.pop(other_stage_key, None)
    netlist = entry.pop("netlist", values.pop("netlist", None))
    unknown = set(entry) - SPEC_KEYS
    if unknown:
        raise CircuitError(
            f"circuits.{name}: unknown key(s) {_short(sorted(map(str, unknown)))}; expected some of "
            f"{sorted(SPEC_KEYS | {'netlist', 'preset'})}"
        )
    values.update(entry)
    if netlist is None:
        raise CircuitError(f"circuits.{name}: key 'netlist' (path of the circuit file) is required")
    if not isinstance(netlist, str) or not 0 < len(netlist) <= MAX_PATH_CHARS:
        raise CircuitError(f"circuits.{name}.netlist = {_short(netlist)}: expected the path of a circuit file "
                           f"(at most {MAX_PATH_CHARS} characters)")
    path = Path(netlist)
    if not path.is_absolute():
        path = Path(base_dir) / path
    try:
        text = load_circuit_file(path)
    except OSError as exc:
        raise CircuitError(f"circuits.{name}.netlist = {_short(netlist)}: cannot be read ({exc.strerror})") from None
    values.pop("name", None)
    spec = CircuitSpec(name=name, netlist_path=str(netlist), netlist_text=text, **values)
    if spec.cell_has_gate and "v_gate_v" not in values:
        raise CircuitError(f"circuits.{name}.v_gate_v: the cell of {netlist} has a gate pin; set the gate-line "
                           "voltage in V (e.g. 1.8 turns the shipped 1T1R cell fully on; 0 V leaves it off)")
    return spec
