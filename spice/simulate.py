"""Run ngspice over sampled conductances and input vectors (one shard of a dataset)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from spice import ngspice
from spice.circuit import CircuitSpec
from spice.power import PowerProbes, conservation_failures, probes_for
from spice.sampling import SamplingConfig, draw
from xbarchar.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class ShardResult:
    """Arrays of one shard; shapes as in the HDF5 file (see :mod:`spice.io`)."""

    g_s: np.ndarray  # [n_g, rows, cols]
    g_id: np.ndarray  # [n_g] global index of each matrix in the full dataset
    g_index: np.ndarray  # [n_samples] which local matrix each sample uses
    v_v: np.ndarray  # [n_samples, rows]
    i_a: np.ndarray  # [n_samples, cols]
    failed: np.ndarray  # [n_samples] bool
    failure_reason: np.ndarray  # [n_samples] bytes, b"" for a valid sample
    solver: np.ndarray  # [n_g] b"superposition" | b"sweep"
    transfer_a_per_v: np.ndarray  # [n_g, rows, cols]; NaN where the circuit was not linear
    p_w: np.ndarray  # [n_samples] power drawn from the row sources (W); NaN if failed
    p_parts_w: np.ndarray  # [n_samples, len(POWER_PARTS)] dissipation per part (W); NaN if failed

    @property
    def i_ideal_a(self) -> np.ndarray:
        return np.einsum("nr,nrc->nc", self.v_v, self.g_s[self.g_index])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every dataset of the HDF5 file (:data:`spice.io.UNITS`), by name."""
        names = ("g_s", "g_id", "solver", "transfer_a_per_v", "g_index", "v_v", "i_a", "i_ideal_a", "p_w",
                 "p_parts_w", "failed", "failure_reason")
        return {name: getattr(self, name) for name in names}


def superposition(spec: CircuitSpec, g_s: np.ndarray, v_check_v: np.ndarray, rtol: float,
                  check: ngspice.CircuitCheck | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Transfer matrix and offset from rows+1 solves, in one ngspice sweep, if the circuit is linear.

    The same sweep solves ``v_check_v`` directly; the circuit counts as linear (affine) for this
    ``g_s`` when those currents match ``offset + v @ T`` within ``rtol`` of the largest check
    current. Solves that fail or are implausible for ``check`` send the matrix to the direct sweep.
    Returns ``(T [rows, cols], offset [cols])`` or ``None`` when the check fails.
    """
    affine = superposition_probed(spec, g_s, v_check_v, rtol, check, lambda n: ())
    return None if affine is None else (affine.t, affine.offset)


@dataclass(frozen=True)
class Affine:
    """A linear (affine) array's response: column currents ``offset + v @ t`` (A) and the further probe
    vectors ``probe_offset + v @ probe_t`` (node voltages, branch currents)."""

    t: np.ndarray  # [rows, cols] A/V
    offset: np.ndarray  # [cols] A
    probe_t: np.ndarray  # [rows, n_probes]
    probe_offset: np.ndarray  # [n_probes]


def superposition_probed(spec: CircuitSpec, g_s: np.ndarray, v_check_v: np.ndarray, rtol: float,
                         check: ngspice.CircuitCheck | None, probe_names: Callable[[int], Sequence[str]]
                         ) -> Affine | None:
    """:func:`superposition`, with the probe vectors ``probe_names(n)`` names for a run of n vectors read from
    the same sweep (:func:`spice.ngspice.solve_probed`)."""
    v_ref = spec.v_read_max_v  # the read voltage of largest magnitude: CircuitSpec keeps |v_read_min_v| <= it
    basis = np.vstack([np.zeros(spec.rows), v_ref * np.eye(spec.rows), v_check_v])
    i_a, failed, probe = ngspice.solve_probed(spec, g_s, basis, probe_names)
    if failed.any() or (check is not None and np.any(ngspice.implausible_samples(i_a, check, basis) != "")):
        return None
    offset = i_a[0]
    t = (i_a[1:spec.rows + 1] - offset) / v_ref
    predicted = offset + v_check_v @ t
    direct = i_a[spec.rows + 1:]
    scale = max(np.max(np.abs(direct)), 1e-30)
    err = np.max(np.abs(predicted - direct)) / scale
    if err > rtol:
        log.info("linearity check failed (relative error %.2e > %.1e): using direct sweep", err, rtol)
        return None
    return Affine(t=t, offset=offset, probe_t=(probe[1:spec.rows + 1] - probe[0]) / v_ref, probe_offset=probe[0])


NOT_CONVERGED = "did not converge after all convergence aids"


def simulate_shard(spec: CircuitSpec, cfg: SamplingConfig, shard: int, progress: bool = True,
                   check: ngspice.CircuitCheck | None = None) -> ShardResult:
    """Simulate the conductance matrices of ``shard`` with ngspice.

    Every sample is checked (:func:`spice.ngspice.implausible_samples`): one whose currents are not
    finite, exceed the circuit's passive bound or have a sign no passive array allows is marked failed, with its reason, and its currents
    are NaN. Every sample's read power and its parts come from the same solve (:mod:`spice.power`; from the
    superposed node voltages on the superposition path); one whose source power is not the sum of the
    dissipations (:func:`spice.power.conservation_failures`) is marked failed too. ``check`` is :func:`spice.ngspice.check_circuit`'s result (measured here when None).
    """
    check = check or ngspice.check_circuit(spec)
    ids = cfg.shard_indices(shard)
    g_list, v_list, i_list, f_list, r_list, solver, transfer, p_list, parts_list = [], [], [], [], [], [], [], [], []
    n_failed = 0
    known: dict[int, PowerProbes] = {}

    def probes(n: int) -> PowerProbes:
        if n not in known:
            known[n] = probes_for(spec, n)
        return known[n]

    def names(n: int) -> tuple[str, ...]:
        return probes(n).names

    # The progress is display only (tests/test_spice_simulate.py checks its label); mutants of this
    # line stall mutmut's runner until its CPU limit, so `make mutate` leaves it alone.
    bar = Progress(len(ids), f"ngspice {spec.name} shard {shard}", "G", enabled=progress, logger=log)  # pragma: no mutate
    for k in bar.iterate(ids):
        g, v = draw(spec, cfg, int(k))
        result = None
        if cfg.solver == "auto":
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, int(k), 1]))
            v_check = rng.uniform(spec.v_read_min_v, spec.v_read_max_v, size=(2, spec.rows))
            result = superposition_probed(spec, g, v_check, cfg.linearity_rtol, check, names)
        if result is not None:
            i_a = result.offset + v @ result.t
            basis = probes(spec.rows + 3)  # the superposition sweep: zero, rows unit vectors, 2 check vectors
            p_w, p_parts_w = basis.powers(v, i_a, result.probe_offset + v @ result.probe_t, g)
            reasons = ngspice.implausible_samples(i_a, check, v)
            solver.append(b"superposition")
            transfer.append(result.t)
        else:
            i_a, not_converged, probe = ngspice.solve_probed(spec, g, v, names)
            p_w, p_parts_w = probes(len(v)).powers(v, i_a, probe, g)
            reasons = np.where(not_converged, NOT_CONVERGED, ngspice.implausible_samples(i_a, check, v))
            solver.append(b"sweep")
            transfer.append(np.full((spec.rows, spec.cols), np.nan))
        reasons = np.where(reasons != "", reasons, conservation_failures(spec, p_w, p_parts_w))
        failed = reasons != ""
        i_a = np.where(failed[:, None], np.nan, i_a)
        p_w = np.where(failed, np.nan, p_w)
        p_parts_w = np.where(failed[:, None], np.nan, p_parts_w)
        n_failed += int(failed.sum())
        g_list.append(g)
        v_list.append(v)
        i_list.append(i_a)
        p_list.append(p_w)
        parts_list.append(p_parts_w)
        f_list.append(failed)
        r_list.append(reasons)
    if n_failed:
        counts = Counter(str(r).split(":")[0] for part in r_list for r in part if r)
        log.error("%d of %d samples failed (%s); they are marked in /failed with /failure_reason", n_failed,
                  sum(len(part) for part in r_list), ", ".join(f"{n} {why}" for why, n in sorted(counts.items())))
    n_v = [len(v) for v in v_list]
    return ShardResult(
        g_s=np.stack(g_list),
        g_id=ids.astype(np.int64),
        g_index=np.repeat(np.arange(len(ids)), n_v).astype(np.int64),
        v_v=np.concatenate(v_list),
        i_a=np.concatenate(i_list),
        failed=np.concatenate(f_list),
        failure_reason=np.array([r.encode() for r in np.concatenate(r_list)], dtype="S"),
        solver=np.array(solver),
        transfer_a_per_v=np.stack(transfer),
        p_w=np.concatenate(p_list),
        p_parts_w=np.concatenate(parts_list),
    )
