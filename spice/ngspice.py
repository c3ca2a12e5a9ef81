"""The one module that talks to ngspice (through PySpice's shared-library interface).

PySpice 1.5 works with ngspice 46 through the shared library (it logs "Unsupported Ngspice
version", which is harmless); its subprocess backend does not. KLU is used when the loaded library
reports it (``.options klu``); otherwise ngspice's default sparse solver is used, with a warning.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import numpy as np

from spice.circuit import CircuitError, CircuitSpec
from spice.netlist import build_netlist, column_current_vector, sweep_command

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
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared

            try:
                _instance = NgSpiceShared.new_instance()
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
    ng = _shared()
    with _lock:
        ng.clear_output()
        try:
            ng.load_circuit(netlist)
        except Exception as exc:
            raise NgspiceError(f"ngspice rejected the netlist: {_errors(ng) or exc}") from exc
        if ng._error_in_stdout or ng._error_in_stderr:
            # ngspice reports some errors without failing the load
            msgs = _errors(ng)
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


def _errors(ng) -> str:
    lines = [line.strip() for line in ng._stdout + ng._stderr]
    bad = [line for line in lines if line and ("error" in line.lower() or "fatal" in line.lower()
                                               or "not converge" in line.lower() or "singular" in line.lower()
                                               or "unknown" in line.lower() or "no such" in line.lower())]
    return "; ".join(dict.fromkeys(bad))[:2000]


def solve(spec: CircuitSpec, g_s: np.ndarray, v_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column currents [n_vectors, cols] (A) for one conductance matrix and many input vectors.

    Solves all vectors in one ngspice run (DC sweep of an index source). When a run fails, the
    convergence aids of :data:`CONVERGENCE_AIDS` are tried in turn; if the sweep still fails, each
    vector is solved alone (``.op``) with the aids, so one bad vector does not take the others
    with it. Returns ``(i_a, failed)`` where ``failed`` [n_vectors] marks vectors that never
    converged; their currents are NaN (never fabricated).
    """
    v_v = np.atleast_2d(np.asarray(v_v, dtype=float))
    n = v_v.shape[0]
    use_klu = info().has_klu
    names = [column_current_vector(c) for c in range(spec.cols)]
    last_error = ""
    for aids in CONVERGENCE_AIDS:
        try:
            out = run_netlist(build_netlist(spec, g_s, v_v, use_klu, aids), sweep_command(spec, n), names)
            i_a = np.stack([np.atleast_1d(out[name]) for name in names], axis=1)
            if i_a.shape[0] != n:
                raise NgspiceError(f"sweep returned {i_a.shape[0]} points, expected {n}")
            return i_a, np.zeros(n, dtype=bool)
        except NgspiceError as exc:
            last_error = str(exc)
            if "rejected the netlist" in last_error:
                raise
            log.warning("ngspice run failed (%s); retrying with convergence aids", last_error[:200])
    if n == 1:
        log.error("vector failed to converge after all convergence aids: %s", last_error[:300])
        return np.full((1, spec.cols), np.nan), np.ones(1, dtype=bool)
    i_a = np.empty((n, spec.cols))
    failed = np.zeros(n, dtype=bool)
    for k in range(n):
        i_a[k:k + 1], failed[k:k + 1] = solve(spec, g_s, v_v[k:k + 1])
    return i_a, failed


def check_circuit(spec: CircuitSpec) -> None:
    """Run a 2x2 copy of the circuit once so ngspice's syntax errors surface with the file's name."""
    import dataclasses

    small = dataclasses.replace(spec, rows=min(spec.rows, 2), cols=min(spec.cols, 2))
    g = np.full((small.rows, small.cols), 0.5 * (spec.g_on_s + spec.g_off_s))
    v = np.full((1, small.rows), 0.5 * spec.v_read_max_v)
    try:
        i_a = run_netlist(build_netlist(small, g, v, info().has_klu), "op",
                          [column_current_vector(c) for c in range(small.cols)])
    except NgspiceError as exc:
        raise CircuitError(f"circuit file {spec.netlist_path or spec.name}: {exc}") from exc
    values = np.array([float(np.atleast_1d(x)[0]) for x in i_a.values()])
    if not np.all(np.isfinite(values)):
        raise CircuitError(f"circuit file {spec.netlist_path}: a 2x2 test array gave non-finite currents")
