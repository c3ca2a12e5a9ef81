"""The one module that talks to ngspice (through PySpice's shared-library interface).

PySpice 1.5 works with ngspice 46 through the shared library (it logs "Unsupported Ngspice
version", which is harmless); its subprocess backend does not. KLU is used when the loaded library
reports it (``.options klu``); otherwise ngspice's default sparse solver is used, with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spice.circuit import CircuitError, CircuitSpec
from spice.netlist import (
    ACCURACY_OPTIONS,
    build_netlist,
    circuit_file_line,
    column_current_vector,
    sweep_command,
)

log = logging.getLogger(__name__)

# Convergence aids tried, in order, when a run fails (gmin stepping, source stepping, more iterations).
CONVERGENCE_AIDS = (
    "",
    "gminsteps=100 srcsteps=100 itl1=1000 itl2=1000 itl6=100",
    "gminsteps=200 srcsteps=200 itl1=5000 itl2=5000 itl6=500 gmin=1e-10 rshunt=1e12",
)


class NgspiceError(RuntimeError):
    """ngspice rejected a netlist or failed to converge; the message carries ngspice's own words."""


@dataclass(frozen=True)
class NgspiceInfo:
    version: str
    has_klu: bool
    pyspice_version: str


_lock = threading.Lock()
_instance = None
_info: NgspiceInfo | None = None
_unrecoverable = ""
"""Set when ngspice said it cannot recover: the shared library must not be used again in this process."""
_FATAL_MARK = "cannot recover"


def _shared():
    """The process-wide PySpice NgSpiceShared instance (ngspice's shared library is a singleton)."""
    global _instance, _info
    with _lock:
        if _instance is None:
            # conda sets ${CONDA_PREFIX}/lib/libngspice.so through environment.yml, unexpanded
            os.environ["NGSPICE_LIBRARY_PATH"] = os.path.expandvars(
                os.environ.get("NGSPICE_LIBRARY_PATH", "libngspice.so.0"))
            # PySpice logs every ngspice stderr line at error level; xbarchar reports errors itself.
            logging.getLogger("PySpice").setLevel(logging.CRITICAL)
            import PySpice

            try:
                _instance = _new_instance_without_local_spiceinit()
            except OSError as exc:  # library missing
                raise NgspiceError(
                    "cannot load the ngspice shared library (libngspice.so.0): install ngspice and "
                    "libngspice0 (scripts/install_ngspice.sh) or set NGSPICE_LIBRARY_PATH"
                ) from exc
            banner = "\n".join(_instance.exec_command("version -f", join_lines=False))
            version = _parse_version(banner) or str(getattr(_instance, "_ngspice_version", "unknown"))
            has_klu = "KLU" in banner
            _info = NgspiceInfo(version=version, has_klu=has_klu, pyspice_version=PySpice.__version__)
            if not has_klu:
                log.warning("ngspice %s has no KLU solver: large arrays simulate far slower "
                            "(install ngspice from bookworm-backports: scripts/install_ngspice.sh)", version)
        return _instance


def _new_instance_without_local_spiceinit():
    """Start ngspice from an empty working directory, so that no ``.spiceinit`` there runs.

    ngspice runs the control commands of a ``.spiceinit`` in the working directory when it starts,
    ``shell`` included: a checkout or results folder received from someone else must not run
    anything. (Its own ``spinit`` and the user's ``~/.spiceinit`` are still read; those are the
    installation's and the user's own files.)
    """
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared

    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="xbarchar-ngspice-") as empty:
        os.chdir(empty)
        try:
            return NgSpiceShared.new_instance()
        finally:
            os.chdir(here)


def _parse_version(banner: str) -> str | None:
    for token in banner.replace("*", " ").split():
        if token.lower().startswith("ngspice-"):
            return token.split("-", 1)[1]
    return None


def info() -> NgspiceInfo:
    """Version and KLU availability of the loaded ngspice library."""
    _shared()
    assert _info is not None
    return _info


def run_netlist(netlist: str, analysis: str, vectors: list[str]) -> dict[str, np.ndarray]:
    """Load ``netlist``, run ``analysis`` and return the named vectors. Raises :class:`NgspiceError`."""
    global _unrecoverable
    ng = _shared()
    with _lock:
        if _unrecoverable:
            raise NgspiceError(f"ngspice is unusable in this process after an earlier fatal error ({_unrecoverable})")
        ng.clear_output()
        try:
            ng.load_circuit(netlist)
        except Exception as exc:
            msgs = _errors(ng)
            if any(_FATAL_MARK in line for line in ng._stderr + ng._stdout):
                _unrecoverable = msgs or str(exc)
            raise NgspiceError(f"ngspice rejected the netlist: {msgs or exc}") from exc
        if ng._error_in_stdout or ng._error_in_stderr:
            # ngspice reports some errors without failing the load
            msgs = _errors(ng)
            if any(_FATAL_MARK in line for line in ng._stderr + ng._stdout):
                _unrecoverable = msgs
                raise NgspiceError(f"ngspice rejected the netlist: {msgs}")
            if msgs:
                _remove(ng)
                raise NgspiceError(f"ngspice rejected the netlist: {msgs}")
        try:
            ng.exec_command(analysis)
        except Exception as exc:
            msgs = _errors(ng)
            _remove(ng)
            raise NgspiceError(f"ngspice '{analysis}' failed: {msgs or exc}") from exc
        plot = ng.plot(None, ng.last_plot)
        try:
            result = {name: np.array(plot[name]._data if hasattr(plot[name], "_data") else plot[name],
                                     dtype=float) for name in vectors}
        except KeyError as exc:
            raise NgspiceError(f"ngspice produced no vector {exc}; have {sorted(plot)[:10]}…") from exc
        finally:
            _remove(ng)
        return result


def _remove(ng) -> None:
    """Free the circuit and its plots so memory stays flat over thousands of runs."""
    for cmd in ("destroy all", "remcirc"):
        try:
            ng.exec_command(cmd)
        except Exception:  # pragma: no cover - cleanup best effort
            pass


_NOISE = ("numparam warning", "please check your input netlist", _FATAL_MARK, "note: no compatibility mode",
          "circuit:", "this may cause subsequent errors", "*end", "reset or detached", "ngspice.dll")
_NETLIST_LINE = re.compile(r"error in netlist line no\. \d+, new internal line no\. (\d+):?", re.IGNORECASE)


def _errors(ng) -> str:
    """ngspice's own error lines, without its boilerplate (see :func:`error_summary`)."""
    return "; ".join(error_summary(ng._stdout + ng._stderr)[1])[:2000]


def error_summary(lines: list[str]) -> tuple[list[int], list[str]]:
    """(netlist lines named, reasons) from ngspice's output, its boilerplate dropped.

    ngspice names the line of a netlist error as "new internal line no. N" (1-based in the netlist
    it was given) and gives the reason on the lines after it (``Undefined parameter [gg]``).
    """
    netlist_lines: list[int] = []
    reasons: list[str] = []
    after_error = False
    for raw in lines:
        line = raw.strip()
        low = line.lower()
        match = _NETLIST_LINE.search(line)
        if match:
            netlist_lines.append(int(match.group(1)))
            after_error = True
            continue
        if not line or any(mark in low for mark in _NOISE):
            continue
        if after_error or any(word in low for word in ("error", "fatal", "not converge", "singular", "unknown",
                                                        "no such", "can't find", "undefined", "illegal")):
            reasons.append(line)
    return netlist_lines, list(dict.fromkeys(reasons))


def circuit_file_error(spec: CircuitSpec, lines: list[str]) -> str:
    """ngspice's complaint about a netlist built from ``spec``, in terms of the user's circuit file.

    Netlist line numbers become circuit-file line numbers; a line ngspice echoes back (lowercased)
    is replaced by the line number it came from.
    """
    netlist_lines, reasons = error_summary(lines)
    source = spec.netlist_path or f"<{spec.name}>"
    file_lines = [n for n in (circuit_file_line(spec, k) for k in netlist_lines) if n is not None]
    echoed = {v.text.lower(): v.line_number for v in spec.vetted_lines()}
    words = []
    for reason in reasons:
        if reason.lower() in echoed:
            file_lines.append(echoed[reason.lower()])
        else:
            words.append(reason)
    where = f"circuit file {source}"
    if file_lines:
        numbers = sorted(set(file_lines))
        where += f", line {numbers[0]}" if len(numbers) == 1 else f", lines {', '.join(map(str, numbers))}"
    return f"{where}: ngspice: {'; '.join(words) or 'rejected the circuit'}"[:2000]


def solve(spec: CircuitSpec, g_s: np.ndarray, v_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column currents [n_vectors, cols] (A) for one conductance matrix and many input vectors.

    Solves all vectors in one ngspice run (DC sweep of an index source). When a run fails, the
    convergence aids of :data:`CONVERGENCE_AIDS` are tried in turn; if the sweep still fails, each
    vector is solved alone (``.op``) with the aids, so one bad vector does not take the others
    with it. Returns ``(i_a, failed)`` where ``failed`` [n_vectors] marks vectors that never
    converged; their currents are NaN (never fabricated).
    """
    i_a, failed, _ = solve_probed(spec, g_s, v_v, lambda n: ())
    return i_a, failed


def solve_probed(spec: CircuitSpec, g_s: np.ndarray, v_v: np.ndarray,
                 probes: Callable[[int], Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`solve`, and the values [n_vectors, len(probes(n))] of the further vectors ``probes(n)`` names for
    a run of ``n`` vectors (node voltages ``d0``, branch currents ``bin0#branch``; see
    :func:`spice.power.probes_for`), read from the same runs; NaN for a vector that failed. A vector solved
    alone is read with ``probes(1)``."""
    v_v = np.atleast_2d(np.asarray(v_v, dtype=float))
    n = v_v.shape[0]
    use_klu = info().has_klu
    names = [column_current_vector(c) for c in range(spec.cols)]
    extra = list(probes(n))
    last_error = ""
    for aids in CONVERGENCE_AIDS:
        try:
            out = run_netlist(build_netlist(spec, g_s, v_v, use_klu, aids), sweep_command(spec, n), names + extra)
            i_a = np.stack([np.atleast_1d(out[name]) for name in names], axis=1)
            if i_a.shape[0] != n:
                raise NgspiceError(f"sweep returned {i_a.shape[0]} points, expected {n}")
            values = (np.stack([np.atleast_1d(out[name]) for name in extra], axis=1) if extra
                      else np.zeros((n, 0)))
            return i_a, np.zeros(n, dtype=bool), values
        except NgspiceError as exc:
            last_error = str(exc)
            if "rejected the netlist" in last_error:
                raise
            log.warning("ngspice run failed (%s); retrying with convergence aids", last_error[:200])
    if n == 1:
        log.error("vector failed to converge after all convergence aids: %s", last_error[:300])
        return np.full((1, spec.cols), np.nan), np.ones(1, dtype=bool), np.full((1, len(extra)), np.nan)
    i_a = np.empty((n, spec.cols))
    failed = np.zeros(n, dtype=bool)
    values = np.empty((n, len(probes(1))))
    for k in range(n):
        i_a[k:k + 1], failed[k:k + 1], values[k:k + 1] = solve_probed(spec, g_s, v_v[k:k + 1], probes)
    return i_a, failed, values


MAX_CELL_CURRENT_RATIO = 1000.0
"""A cell may draw at most this many times the current of an ohmic cell at ``g_on_s`` across the
whole voltage span; beyond that (an exponential that runs away) it is not a crossbar cell."""
PASSIVE_BOUND_MARGIN = 1.01
"""Relative headroom on the passive current bound (solver tolerances, custom driver/sense parts)."""
PASSIVITY_TOLERANCE = 1e-6
"""Power a passive cell may appear to deliver (solver noise), relative to its largest current times the
voltage span: ``I * V >= -PASSIVITY_TOLERANCE * cell_current_max_a * (hi - lo)`` at every envelope point."""
SIGN_TOLERANCE = 1e-6
"""Column current of the wrong sign a sample may carry (solver noise), relative to the passive bound."""
ENVELOPE_POINTS = 41
"""Grid points per terminal voltage when the cell's current envelope is measured."""
CHECK_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class CircuitCheck:
    """What :func:`check_circuit` measured: the circuit runs, and how much current it can pass."""

    cell_current_max_a: float
    """Largest |current| of one cell over every pair of terminal voltages a passive array can reach
    (both in [min(v_read_min_v, 0), max(v_read_max_v, 0)]) and g in {g_off, mid, g_on}."""
    column_current_bound_a: float
    """Largest |column current| a passive array of this circuit can carry:
    rows x cell_current_max_a x PASSIVE_BOUND_MARGIN."""


def voltage_span(spec: CircuitSpec) -> tuple[float, float]:
    """(lowest, highest) node voltage of a passive array driven by the spec's sources (V)."""
    return min(spec.v_read_min_v, 0.0), max(spec.v_read_max_v, 0.0)


def envelope_netlist(spec: CircuitSpec, use_klu: bool) -> str:
    """One cell per conductance level between a swept row and a swept column source."""
    out = [f"* xbarchar cell envelope '{spec.name}'", f".options {'klu ' if use_klu else ''}{ACCURACY_OPTIONS}"]
    out.extend(line.text for line in spec.vetted_lines())
    out += ["vrow r 0 0", "vcol c 0 0"]
    gate = " gl" if spec.cell_has_gate else ""
    if gate:
        out.append(f"vgate gl 0 {spec.v_gate_v:.15g}")
    for k, g in enumerate(_envelope_levels(spec)):
        out.append(f"vm{k} r r{k} 0")
        out.append(f"xc{k} r{k} c{gate} cell g={g:.15g}")
    out.append(".end")
    return "\n".join(out) + "\n"


def _envelope_levels(spec: CircuitSpec) -> tuple[float, float, float]:
    return spec.g_off_s, 0.5 * (spec.g_off_s + spec.g_on_s), spec.g_on_s


def _check_here(spec: CircuitSpec) -> CircuitCheck:
    """The body of :func:`check_circuit`, run in the process that owns the ngspice library."""
    small = dataclasses.replace(spec, rows=min(spec.rows, 2), cols=min(spec.cols, 2))
    g = np.full((small.rows, small.cols), 0.5 * (spec.g_on_s + spec.g_off_s))
    v = np.full((1, small.rows), 0.5 * spec.v_read_max_v)
    names = [column_current_vector(c) for c in range(small.cols)]
    probes = [f"vm{k}#branch" for k in range(len(_envelope_levels(spec)))]
    source = spec.netlist_path or spec.name
    for netlist, analysis, vectors in (
        (build_netlist(small, g, v, info().has_klu), "op", names),
        (envelope_netlist(spec, info().has_klu), _envelope_sweep(spec), [*probes, "r", "c"]),
    ):
        ng = _shared()
        try:
            out = run_netlist(netlist, analysis, vectors)
        except NgspiceError:
            raise CircuitError(circuit_file_error(small, ng._stdout + ng._stderr)) from None
        values = np.concatenate([np.atleast_1d(x) for x in out.values()])
        if not np.all(np.isfinite(values)):
            raise CircuitError(f"circuit file {source}: ngspice gave non-finite currents for a 2x2 test array")
    lo, hi = voltage_span(spec)
    cell_i_a = np.stack([np.atleast_1d(out[name]) for name in probes])  # [level, point], into the row pin
    envelope = float(np.max(np.abs(cell_i_a)))
    ohmic = spec.g_on_s * (hi - lo)
    if envelope > MAX_CELL_CURRENT_RATIO * ohmic:
        raise CircuitError(
            f"circuit file {source}: the cell draws up to {envelope:.3g} A with terminal voltages in "
            f"[{lo:g}, {hi:g}] V, over {MAX_CELL_CURRENT_RATIO:g}x an ohmic cell at g_on_s ({ohmic:.3g} A); "
            "that is not a physically possible crossbar cell (check its I-V expression and v_read_max_v)"
        )
    _refuse_active_cell(spec, cell_i_a, np.atleast_1d(out["r"]), np.atleast_1d(out["c"]), envelope)
    return CircuitCheck(cell_current_max_a=envelope,
                        column_current_bound_a=spec.rows * envelope * PASSIVE_BOUND_MARGIN)


def _refuse_active_cell(spec: CircuitSpec, cell_i_a: np.ndarray, v_row_v: np.ndarray, v_col_v: np.ndarray,
                        envelope_a: float) -> None:
    """Raise :class:`CircuitError` when the cell delivers power anywhere on the envelope sweep.

    ``cell_i_a`` [level, point] is the current into the cell's row pin, ``v_row_v``/``v_col_v`` [point]
    its terminal voltages. A passive cell only dissipates: ``I * (V_row - V_col) >= 0`` (the gate of a
    three-terminal cell, held at ``v_gate_v``, is taken to draw no current), within
    :data:`PASSIVITY_TOLERANCE`.
    """
    lo, hi = voltage_span(spec)
    power_w = cell_i_a * (v_row_v - v_col_v)[None, :]
    level, point = np.unravel_index(int(np.argmin(power_w)), power_w.shape)
    delivered_w = -float(power_w[level, point])
    if delivered_w > PASSIVITY_TOLERANCE * envelope_a * (hi - lo):
        g = _envelope_levels(spec)[level]
        raise CircuitError(
            f"circuit file {spec.netlist_path or spec.name}: the cell delivers {delivered_w:.3g} W "
            f"(current {float(cell_i_a[level, point]):.3g} A into the row pin at row {float(v_row_v[point]):.3g} V, "
            f"column {float(v_col_v[point]):.3g} V, g = {g:.3g} S); a passive crossbar cell never delivers "
            "power (I*V >= 0): check the sign of its current expression and any negative resistance"
        )


def _envelope_sweep(spec: CircuitSpec) -> str:
    lo, hi = voltage_span(spec)
    step = (hi - lo) / (ENVELOPE_POINTS - 1)
    return f"dc vrow {lo:.15g} {hi:.15g} {step:.15g} vcol {lo:.15g} {hi:.15g} {step:.15g}"


def _child(task: str, spec_json: str, args: tuple, conn) -> None:  # pragma: no cover - runs in a child process
    try:
        spec = CircuitSpec.from_json(spec_json)
        conn.send(("ok", _check_here(spec) if task == "check" else _cell_iv_here(spec, *args)))
    except (CircuitError, NgspiceError) as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _in_child(task: str, spec: CircuitSpec, args: tuple, what: str) -> Any:
    """Run ``task`` ('check' or 'cell_iv') on ``spec`` in a spawned child process that owns its own
    ngspice library; ``what`` names the run in errors (e.g. 'a 2x2 test array')."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(task, spec.to_json(), args, child), daemon=True)
    proc.start()
    child.close()
    source = spec.netlist_path or spec.name
    try:
        if not parent.poll(CHECK_TIMEOUT_S):
            proc.kill()
            raise CircuitError(f"circuit file {source}: ngspice did not finish {what} in {CHECK_TIMEOUT_S:g} s")
        status, value = parent.recv()
    except EOFError:
        proc.join(5)
        raise CircuitError(f"circuit file {source}: ngspice crashed on {what} (exit code {proc.exitcode})") from None
    finally:
        parent.close()
        proc.join(5)
    if status != "ok":
        raise CircuitError(value)
    return value


def check_circuit(spec: CircuitSpec) -> CircuitCheck:
    """Run a 2x2 copy of the circuit and measure its cell's current envelope, in a child process.

    A circuit file that ngspice rejects can leave its shared library unusable ("cannot recover")
    or crash it, so the first contact with a new file happens in a separate process. Raises
    :class:`CircuitError` naming the circuit file (and the line, where ngspice names one) with
    ngspice's own reason, or when the cell is not physically possible (see
    :data:`MAX_CELL_CURRENT_RATIO`).
    """
    return _in_child("check", spec, (), "a 2x2 test array")


def cell_iv_netlist(spec: CircuitSpec, g_levels_s: np.ndarray, use_klu: bool) -> str:
    """One cell per conductance level, each from a swept row source through its own current probe to a
    grounded column (the gate, for a three-terminal cell, at ``v_gate_v``)."""
    out = [f"* xbarchar cell I-V '{spec.name}'", f".options {'klu ' if use_klu else ''}{ACCURACY_OPTIONS}"]
    out.extend(line.text for line in spec.vetted_lines())
    out.append("vrow r 0 0")
    gate = " gl" if spec.cell_has_gate else ""
    if gate:
        out.append(f"vgate gl 0 {spec.v_gate_v:.15g}")
    for k, g in enumerate(g_levels_s):
        out.append(f"vm{k} r r{k} 0")
        out.append(f"xc{k} r{k} 0{gate} cell g={float(g):.15g}")
    out.append(".end")
    return "\n".join(out) + "\n"


def _cell_iv_here(spec: CircuitSpec, v_lo: float, v_hi: float, n_v: int, g_levels_s: list[float]) -> np.ndarray:
    step = (v_hi - v_lo) / (n_v - 1)
    names = [f"vm{k}#branch" for k in range(len(g_levels_s))]
    out = run_netlist(cell_iv_netlist(spec, np.asarray(g_levels_s), info().has_klu),
                      f"dc vrow {v_lo:.15g} {v_hi + 0.5 * step:.15g} {step:.15g}", names)
    i_a = np.stack([np.asarray(out[name], dtype=np.float64)[:n_v] for name in names])
    if i_a.shape != (len(g_levels_s), n_v) or not np.all(np.isfinite(i_a)):
        raise CircuitError(f"circuit file {spec.netlist_path or spec.name}: ngspice gave no finite cell I-V "
                           f"({i_a.shape[1]} of {n_v} points)")
    return i_a


def measure_cell_iv(spec: CircuitSpec, n_v: int, g_levels_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cell's current (A) [n_g, n_v] against the voltage across it (row pin minus column pin, the gate
    at ``v_gate_v``), at ``n_v`` evenly spaced voltages over :func:`voltage_span` and each conductance of
    ``g_levels_s`` [n_g] (S), measured by ngspice in a child process; and the voltage grid [n_v] (V)."""
    lo, hi = voltage_span(spec)
    i_a = _in_child("cell_iv", spec, (lo, hi, int(n_v), [float(g) for g in g_levels_s]), "the cell's I-V sweep")
    return np.linspace(lo, hi, n_v), i_a


def implausible_samples(i_a: np.ndarray, check: CircuitCheck, v_v: np.ndarray | None = None) -> np.ndarray:
    """Per sample: '' when every column current is finite, within the passive bound and (given the row
    voltages ``v_v`` [n, rows]) of a sign a passive array allows, else why not.

    In a passive array every node voltage lies between ground and the row voltages, so when no row is
    below 0 V no column current flows out of its sense element, and when no row is above 0 V none flows
    into it (within :data:`SIGN_TOLERANCE` of the passive bound).
    """
    i_a = np.atleast_2d(i_a)
    reasons = np.full(len(i_a), "", dtype=object)
    finite = np.all(np.isfinite(i_a), axis=1)
    clean = np.where(np.isfinite(i_a), i_a, 0.0)
    worst = np.max(np.abs(clean), axis=1) if i_a.size else np.zeros(len(i_a))
    if v_v is not None and i_a.size:
        v_v = np.atleast_2d(np.asarray(v_v, dtype=float))
        tolerance_a = SIGN_TOLERANCE * check.column_current_bound_a
        wrong_a = np.where((v_v.min(axis=1) >= 0.0)[:, None], -clean, 0.0)
        wrong_a = np.maximum(wrong_a, np.where((v_v.max(axis=1) <= 0.0)[:, None], clean, 0.0))
        for k in np.flatnonzero(finite & (np.max(wrong_a, axis=1) > tolerance_a)):
            c = int(np.argmax(wrong_a[k]))
            side = ">= 0" if v_v[k].min() >= 0.0 else "<= 0"
            reasons[k] = (f"implausible: column {c} current {i_a[k, c]:.3e} A has the wrong sign for a passive "
                          f"array (every row voltage {side} V)")
    for k in np.flatnonzero(~finite):
        reasons[k] = "non-finite column current"
    for k in np.flatnonzero(finite & (worst > check.column_current_bound_a)):
        reasons[k] = (f"implausible: |I| {worst[k]:.3e} A exceeds the passive bound "
                      f"{check.column_current_bound_a:.3e} A")
    return reasons
