"""The energy model of a circuit: the static power a read draws from the row sources, cheap per MVM.

A loaded-array quadratic form. With driver resistance ``R_d`` and sense resistance ``R_s`` and no wire
resistance, the currents drawn from the row sources are exactly ``Y v`` with

    A = diag(sum_c G_rc) - G diag(R_s / (1 + R_s sum_r G_rc)) G^T,     Y = (1 + R_d A)^-1 A

(eliminate the sense nodes, then the driver nodes), so the read power is ``v^T Y v``. The wires enter as
lumped resistances: ``R_d + a * cols * r_wire_row_ohm`` and ``R_s + b * rows * r_wire_col_ohm``, a wire fraction
``a``, ``b`` per circuit fitted to the SPICE power (1/3 is the loss of a line whose current falls linearly).
``Y`` [rows, rows] is computed once per tile at bind (a rows x rows solve); each input vector then costs
rows^2 + rows multiply-adds. For a linear cell the power is this quadratic form (one scale fitted); for a
non-linear cell (``G`` its small-signal conductance) three more features carry the curvature of its I-V:
``sum_rc G_rc v_max^2 (dV_rc / v_max)^k`` for k = 3, 4, 6, with each cell's voltage ``dV_rc = u_r - w_c`` from the
same loaded model (row node ``u = v - R_d Y v``, column node ``w_c = D_c sum_r G_rc u_r``), summed without forming
dV (binomial expansion: 8 matrix-vector products of the tile's size per input vector, 7 of them in one
matmul), their weights fitted.

Everything is fitted to ``/p_w`` of the training matrices by least squares on the relative error, and the
fidelity is measured on the held-out test matrices against ngspice (RMS relative error), next to the ideal
formula ``sum v^2 G`` (:data:`IDEAL_FORMULA`). The exact quadratic form of a linear array, ``v^T Y(G) v``
from the nodal solve, is ``dnn.mvm.TransferTileMVM`` with ``spice.nodal.input_admittance``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from spice.circuit import CircuitSpec
from spice.nodal import POWER_PARTS

log = logging.getLogger(__name__)

ENERGY_FORMAT = 1
"""Layout of the ``energy_model`` attribute of a surrogate file (json of :meth:`EnergyModel.to_dict`)."""
POWER_MODEL = "surrogate energy model (loaded-array quadratic form)"
"""What computes the power, for the result (``dnn.mvm.PoweredTileMVM.power_model``)."""
POWER_SPLIT = ("model: the energy model's lumped array (driver and row wires, sense and column wires in "
               "proportion to their lumped resistances; the cells' curvature features in the cells)")
"""How the energy model splits the power over :data:`POWER_PARTS` (``dnn.mvm.PartsPoweredTileMVM.power_split``)."""
IDEAL_FORMULA = "sum over cells of v^2 G"
LINEAR_FEATURES = ("v^T Y v",)
NONLINEAR_FEATURES = ("v^T Y v", "sum G dV^3", "sum G dV^4", "sum G dV^6")
CELL_POWERS = (3, 4, 6)
"""Powers of the cell voltage the non-linear features sum (``NONLINEAR_FEATURES[1:]``)."""
COARSE_FRACTIONS = np.linspace(0.0, 1.0, 11)
FINE_STEPS = np.linspace(-0.08, 0.08, 9)
"""The wire fractions ``a``, ``b`` are fitted on a grid: steps of 0.1 over [0, 1], then steps of 0.02 around the best."""
TARGET_RMS_REL = 0.01
"""The fidelity the model aims at: 1% RMS relative error of the read power on held-out ngspice samples."""


class EnergyModelError(ValueError):
    """The energy model cannot be fitted or read; the message names what is wrong."""


def loaded_admittance(g_s: torch.Tensor, r_driver_ohm: float, r_sense_ohm: float) -> torch.Tensor:
    """Y [T, rows, rows] (A/V) of T arrays of conductances ``g_s`` [T, rows, cols] (S) between drivers of
    ``r_driver_ohm`` and sense elements of ``r_sense_ohm`` to ground, wires without resistance: exact."""
    row_sum = g_s.sum(dim=2)
    col_sum = g_s.sum(dim=1)
    d = r_sense_ohm / (1.0 + r_sense_ohm * col_sum)  # [T, cols]
    a = torch.diag_embed(row_sum) - (g_s * d[:, None, :]) @ g_s.transpose(1, 2)
    eye = torch.eye(g_s.shape[1], dtype=g_s.dtype, device=g_s.device).expand_as(a)
    y = torch.linalg.solve(eye + r_driver_ohm * a, a)
    return 0.5 * (y + y.transpose(1, 2))


@dataclass(frozen=True)
class Loaded:
    """An energy model's G-only work for T tiles (:meth:`EnergyModel.loaded`)."""

    y: torch.Tensor
    """[T, rows, rows] (A/V): source currents = Y v."""
    g_s: torch.Tensor
    r_driver_ohm: float
    """The driver resistance with the row wire's lumped share."""
    d: torch.Tensor
    """[T, cols] (ohm): column node voltage per unit of current the cells drive into the column."""


@dataclass(frozen=True)
class EnergyModel:
    """A fitted energy model of one circuit (see the module docstring). Units in the names."""

    features: tuple[str, ...]
    theta: tuple[float, ...]
    """Weight of each feature (dimensionless; every feature is in W)."""
    r_driver_ohm: float
    r_sense_ohm: float
    """The sense resistance the model loads the columns with (a TIA's input resistance)."""
    r_wire_row_ohm: float
    r_wire_col_ohm: float
    wire_fraction_row: float
    wire_fraction_col: float
    v_scale_v: float
    """v_max of the non-linear features (they sum powers of dV / v_scale_v)."""
    fidelity: dict[str, Any] = field(default_factory=dict)
    format: int = ENERGY_FORMAT

    def __post_init__(self) -> None:
        if len(self.theta) != len(self.features) or self.features not in (LINEAR_FEATURES, NONLINEAR_FEATURES):
            raise EnergyModelError(f"energy model: features {self.features!r} with weights {self.theta!r}: "
                                   f"expected {LINEAR_FEATURES} or {NONLINEAR_FEATURES}, one weight each")
        for key in ("r_driver_ohm", "r_sense_ohm", "r_wire_row_ohm", "r_wire_col_ohm", "wire_fraction_row",
                    "wire_fraction_col", "v_scale_v", *(f"theta[{k}]" for k in range(len(self.theta)))):
            value = self.theta[int(key[6:-1])] if key.startswith("theta") else getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or (
                    not key.startswith("theta") and value < 0):
                raise EnergyModelError(f"energy model: {key} = {value!r}: expected a finite number"
                                       + ("" if key.startswith("theta") else " >= 0"))
        if self.format != ENERGY_FORMAT:
            raise EnergyModelError(f"energy model: format {self.format!r} is not supported (this xbarchar reads "
                                   f"{ENERGY_FORMAT})")

    # ------------------------------------------------------------------ evaluation
    def loaded(self, g_s: torch.Tensor) -> Loaded:
        """The G-only work for ``g_s`` [T, rows, cols] (S): Y [T, rows, rows] (A/V) of the loaded array and what
        the non-linear features need."""
        rows, cols = g_s.shape[1], g_s.shape[2]
        r_d = self.r_driver_ohm + self.wire_fraction_row * cols * self.r_wire_row_ohm
        r_s = self.r_sense_ohm + self.wire_fraction_col * rows * self.r_wire_col_ohm
        return Loaded(y=loaded_admittance(g_s, r_d, r_s), g_s=g_s, r_driver_ohm=r_d,
                      d=r_s / (1.0 + r_s * g_s.sum(dim=1)))

    def feature_values(self, loaded: Loaded, v_v: torch.Tensor) -> torch.Tensor:
        """[T, B, K] features (W) of the bound tiles ``loaded`` for row voltages ``v_v`` [T, B, rows] (V)."""
        if v_v.shape[1] == 0:
            return v_v.new_zeros((v_v.shape[0], 0, len(self.features)))
        i_src = torch.bmm(v_v, loaded.y)  # [T, B, rows]: the currents drawn from the row sources
        out = [(v_v * i_src).sum(dim=2)]
        if len(self.features) > 1:
            g_s, r_d, d = loaded.g_s, loaded.r_driver_ohm, loaded.d
            u = (v_v - r_d * i_src) / self.v_scale_v  # row node voltages, in v_max
            w = d[:, None, :] * torch.bmm(u, g_s)  # [T, B, cols]: column node voltages, in v_max
            # sum_rc G_rc (u_r - w_c)^k = sum_j C(k, j) sum_r u_r^(k-j) [(-w)^j G^T]_r, every power of -w in one matmul
            n, (t, b) = max(CELL_POWERS) + 1, v_v.shape[:2]
            w_pow, u_pow = [torch.ones_like(w)], [torch.ones_like(u)]
            for _ in range(n - 1):
                w_pow.append(w_pow[-1] * -w)
                u_pow.append(u_pow[-1] * u)
            wg = torch.bmm(torch.cat(w_pow, dim=1), g_s.transpose(1, 2)).view(t, n, b, -1)  # [T, n, B, rows]
            m = torch.einsum("tpbr,tjbr->tpjb", torch.stack(u_pow, dim=1), wg)  # sum_r u^p [(-w)^j G^T]
            scale = self.v_scale_v ** 2
            for k in CELL_POWERS:
                out.append(scale * sum(math.comb(k, j) * m[:, k - j, j] for j in range(k + 1)))
        return torch.stack(out, dim=2)

    def bind(self, g_s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s [T, rows, cols] (S) -> f(v_v [T, B, rows] (V)) -> p_w [T, B] (W); Y computed once here, in
        float64 (the result in the dtype of ``v_v``), no gradients."""
        with torch.no_grad():
            loaded = self.loaded(g_s.detach().to(torch.float64))
        theta = torch.tensor(self.theta, dtype=torch.float64, device=g_s.device)

        def power(v_v: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return (self.feature_values(loaded, v_v.detach().to(torch.float64)) @ theta).to(v_v.dtype)

        return power

    def part_values(self, loaded: Loaded, v_v: torch.Tensor) -> torch.Tensor:
        """[T, B, len(POWER_PARTS)] (W): the read power split over the parts by the model's own loaded array.

        In the lumped array every element's dissipation is known from the source currents ``i = Y v``, the row
        nodes ``u = v - R_d' i`` and the column nodes ``w``: the lumped driver ``R_d' |i|^2`` (the driver's
        ``R_d`` and the row wires' ``a * cols * r_wire_row_ohm`` in proportion to their resistances), the lumped
        sense ``sum_c w_c^2 / R_s'`` (sense ``R_s`` and column wires ``b * rows * r_wire_col_ohm`` likewise) and
        the cells ``sum_rc G_rc (u_r - w_c)^2``; these sum to ``v^T Y v`` (energy conservation of the lumped
        array). Each is weighted by the quadratic form's fitted weight; the non-linear features (the cells'
        curvature) go to the cells. The parts therefore sum to the model's total; how well each matches
        ngspice's ``/p_parts_w`` is a property of the lumped-wire approximation, not fitted."""
        t, b = v_v.shape[:2]
        if b == 0:
            return v_v.new_zeros((t, 0, len(POWER_PARTS)))
        g_s, r_d, d = loaded.g_s, loaded.r_driver_ohm, loaded.d
        i_src = torch.bmm(v_v, loaded.y)  # [T, B, rows]
        u = v_v - r_d * i_src  # row node voltages
        ug = torch.bmm(u, g_s)  # [T, B, cols]: current each column's cells would drive into ground
        w = d[:, None, :] * ug  # column node voltages
        col_sum = g_s.sum(dim=1)  # [T, cols]
        # sum_rc G_rc (u_r - w_c)^2, expanded: no [T, B, rows, cols] tensor
        cells = (torch.einsum("tbr,tr->tb", u * u, g_s.sum(dim=2)) - 2.0 * (ug * w).sum(dim=2)
                 + torch.einsum("tbc,tc->tb", w * w, col_sum))
        rows, cols = g_s.shape[1], g_s.shape[2]
        r_row = self.wire_fraction_row * cols * self.r_wire_row_ohm
        r_col = self.wire_fraction_col * rows * self.r_wire_col_ohm
        i2 = (i_src * i_src).sum(dim=2)  # sum_r i_r^2 (A^2)
        # column currents into the lumped sense: j_c = w_c / R_s' = ug_c - w_c sum_r G_rc
        j = ug - w * col_sum[:, None, :]
        j2 = (j * j).sum(dim=2)
        out = torch.zeros((t, b, len(POWER_PARTS)), dtype=v_v.dtype, device=v_v.device)
        theta = self.theta
        out[..., POWER_PARTS.index("cells")] = theta[0] * cells
        out[..., POWER_PARTS.index("driver")] = theta[0] * self.r_driver_ohm * i2
        out[..., POWER_PARTS.index("row_wires")] = theta[0] * r_row * i2
        out[..., POWER_PARTS.index("sense")] = theta[0] * self.r_sense_ohm * j2
        out[..., POWER_PARTS.index("col_wires")] = theta[0] * r_col * j2
        if len(self.features) > 1:
            curvature = self.feature_values(loaded, v_v)[..., 1:]
            out[..., POWER_PARTS.index("cells")] += curvature @ torch.tensor(theta[1:], dtype=v_v.dtype,
                                                                                device=v_v.device)
        return out

    def power_forms(self, g_s: torch.Tensor) -> torch.Tensor:
        """Q [T, len(POWER_PARTS), rows, rows] (A/V, float64): :meth:`part_values` as quadratic forms, p_part =
        ``v^T Q_part v``, for ``g_s`` [T, rows, cols] (S). Only a linear model's split is quadratic in ``v``:
        raises :class:`EnergyModelError` for a model with the non-linear features.

        With ``i = v Y``, ``u = v M`` (``M = I - R_d' Y``), ``ug = v K`` (``K = M G``), ``w = d ug``: cells
        ``M diag(sum_c G) M^T + K diag(d^2 sum_r G - 2 d) K^T``; driver and row wires ``Y Y^T`` times their
        resistances; sense and column wires ``K diag((1 - d sum_r G)^2) K^T`` times theirs."""
        if len(self.features) > 1:
            raise EnergyModelError("energy model: the non-linear features' split is not a quadratic form")
        with torch.no_grad():
            loaded = self.loaded(g_s.detach().to(torch.float64))
            g, y, d = loaded.g_s, loaded.y, loaded.d
            rows, cols = g.shape[1], g.shape[2]
            col_sum = g.sum(dim=1)  # [T, cols]
            m = torch.eye(rows, dtype=g.dtype, device=g.device) - loaded.r_driver_ohm * y
            k = torch.bmm(m, g)  # [T, rows, cols]
            cells = (torch.bmm(m * g.sum(dim=2)[:, None, :], m.transpose(1, 2))
                     + torch.bmm(k * (d * d * col_sum - 2.0 * d)[:, None, :], k.transpose(1, 2)))
            i2 = torch.bmm(y, y.transpose(1, 2))
            j2 = torch.bmm(k * ((1.0 - d * col_sum) ** 2)[:, None, :], k.transpose(1, 2))
            r_row = self.wire_fraction_row * cols * self.r_wire_row_ohm
            r_col = self.wire_fraction_col * rows * self.r_wire_col_ohm
            forms = {"cells": cells, "driver": self.r_driver_ohm * i2, "row_wires": r_row * i2,
                     "sense": self.r_sense_ohm * j2, "col_wires": r_col * j2}
            return self.theta[0] * torch.stack([forms[name] for name in POWER_PARTS], dim=1)

    def bind_parts(self, g_s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s [T, rows, cols] (S) -> f(v_v [T, B, rows] (V)) -> p_w [T, B, len(POWER_PARTS)] (W), the split of
        :meth:`part_values`; G-only work once here, in float64, no gradients. The parts sum to :meth:`bind`'s
        total up to float rounding."""
        with torch.no_grad():
            loaded = self.loaded(g_s.detach().to(torch.float64))

        def parts(v_v: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self.part_values(loaded, v_v.detach().to(torch.float64)).to(v_v.dtype)

        return parts

    def predict_w(self, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray) -> np.ndarray:
        """p_w [n] (W) of samples ``v_v`` [n, rows] (V) on matrices ``g_s[g_index]`` (S)."""
        out = np.empty(len(v_v))
        for k in np.unique(g_index):
            rows = np.flatnonzero(g_index == k)
            f = self.bind(torch.as_tensor(g_s[k:k + 1], dtype=torch.float64))
            out[rows] = f(torch.as_tensor(v_v[rows][None], dtype=torch.float64))[0].numpy()
        return out

    # ------------------------------------------------------------------ file record
    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "features": list(self.features), "theta": list(self.theta)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> EnergyModel:
        """The model of :meth:`to_dict`'s layout; one :class:`EnergyModelError` naming the key otherwise."""
        if not isinstance(data, dict):
            raise EnergyModelError(f"energy model: expected a json object, found {type(data).__name__}")
        keys = {f for f in cls.__dataclass_fields__}
        missing = sorted(keys - set(data) - {"fidelity", "format"})
        unknown = sorted(set(data) - keys)
        if missing or unknown:
            raise EnergyModelError(f"energy model: missing keys {missing}, unknown keys {unknown}")
        try:
            return cls(**{**data, "features": tuple(data["features"]), "theta": tuple(float(x) for x in data["theta"])})
        except (TypeError, ValueError) as exc:
            if isinstance(exc, EnergyModelError):
                raise
            raise EnergyModelError(f"energy model: {exc}") from None


# ---------------------------------------------------------------------- fitting
def model_resistances(spec: CircuitSpec) -> tuple[float, float]:
    """(driver, sense) resistances the energy model loads the array with (ohm): a TIA sense enters as its
    input resistance (``spice.exact.sense_resistance_ohm``). One :class:`EnergyModelError` for a custom driver
    or another sense subcircuit."""
    from spice.exact import UnsupportedCircuitError, sense_resistance_ohm

    if spec.has_custom_driver:
        raise EnergyModelError(f"circuit '{spec.name}': a driver subcircuit has no energy model (the loaded-array "
                               "form needs a resistive driver)")
    try:
        return spec.r_driver_ohm, sense_resistance_ohm(spec)
    except UnsupportedCircuitError as exc:
        raise EnergyModelError(f"circuit '{spec.name}': no energy model for its sense subcircuit ({exc})") from None


def rms_rel(pred_w: np.ndarray, true_w: np.ndarray) -> float:
    """sqrt(mean(((pred - true) / true)^2)) over samples with true > 0."""
    keep = true_w > 0
    return float(np.sqrt(np.mean(((pred_w[keep] - true_w[keep]) / true_w[keep]) ** 2))) if keep.any() else math.nan


def ideal_w(g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray) -> np.ndarray:
    """The ideal formula: sum over cells of v_r^2 G_rc (W) per sample."""
    return np.einsum("nr,nrc->n", v_v ** 2, g_s[g_index])


def _stacked_features(model: EnergyModel, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray) -> np.ndarray:
    """[n, K] features of samples ``v_v`` on matrices ``g_s[g_index]``: every matrix bound at once, its vectors
    padded with zero vectors (whose features are 0) to the largest count."""
    counts = np.bincount(g_index, minlength=len(g_s))
    slot = np.zeros(len(g_index), dtype=np.int64)
    for k in np.flatnonzero(counts):
        slot[g_index == k] = np.arange(counts[k])
    padded = np.zeros((len(g_s), max(int(counts.max()), 1), v_v.shape[1]))
    padded[g_index, slot] = v_v
    loaded = model.loaded(torch.as_tensor(g_s, dtype=torch.float64))
    features = model.feature_values(loaded, torch.as_tensor(padded, dtype=torch.float64)).numpy()
    return features[g_index, slot]


def _least_squares(phi: np.ndarray, p_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights minimizing the relative error of phi @ theta against p_w (p_w > 0), and that RMS error."""
    a = phi / p_w[:, None]
    theta, *_ = np.linalg.lstsq(a, np.ones(len(p_w)), rcond=None)
    return theta, float(np.sqrt(np.mean((a @ theta - 1.0) ** 2)))


def fit_energy_model(spec: CircuitSpec, linear: bool, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray,
                     p_w: np.ndarray) -> EnergyModel:
    """Fit the model of ``spec`` to ngspice's read power ``p_w`` [n] (W) of samples ``v_v`` [n, rows] (V) on
    matrices ``g_s[g_index]`` (S); ``linear``: the cell is linear (one feature). Samples of zero power (all
    inputs 0 V) carry no information and are left out."""
    r_driver_ohm, r_sense_ohm = model_resistances(spec)
    keep = np.isfinite(p_w) & (p_w > 0)
    if keep.sum() < 4:
        raise EnergyModelError(f"circuit '{spec.name}': {int(keep.sum())} samples with read power > 0 to fit the "
                               "energy model on; simulate more (the dataset's /p_w)")
    g_index, v_v, p_w = g_index[keep], v_v[keep], p_w[keep]
    features = LINEAR_FEATURES if linear else NONLINEAR_FEATURES
    base = dict(features=features, r_driver_ohm=float(r_driver_ohm), r_sense_ohm=float(r_sense_ohm),
                r_wire_row_ohm=float(spec.r_wire_row_ohm), r_wire_col_ohm=float(spec.r_wire_col_ohm),
                v_scale_v=float(max(abs(spec.v_read_max_v), abs(spec.v_read_min_v))))
    used = np.unique(g_index)
    g_used, g_index = g_s[used], np.searchsorted(used, g_index)
    best: tuple[float, float, float, np.ndarray] | None = None

    def search(rows_grid: np.ndarray, cols_grid: np.ndarray) -> None:
        nonlocal best
        for a in rows_grid if spec.r_wire_row_ohm > 0 else (0.0,):
            for b in cols_grid if spec.r_wire_col_ohm > 0 else (0.0,):
                a, b = round(float(a), 4), round(float(b), 4)
                trial = EnergyModel(theta=(1.0,) * len(features), wire_fraction_row=a, wire_fraction_col=b, **base)
                theta, err = _least_squares(_stacked_features(trial, g_used, g_index, v_v), p_w)
                if best is None or err < best[0]:
                    best = (err, a, b, theta)

    search(COARSE_FRACTIONS, COARSE_FRACTIONS)  # then around the best, finer
    assert best is not None
    _, a0, b0 = best[:3]
    search(np.clip(a0 + FINE_STEPS, 0.0, 1.0), np.clip(b0 + FINE_STEPS, 0.0, 1.0))
    assert best is not None
    err, a, b, theta = best
    log.info("energy model of %s: wire fractions %.2f (rows) %.2f (columns), weights %s, training RMS relative "
             "error %.2e", spec.name, a, b, np.array2string(theta, precision=4), err)
    return EnergyModel(theta=tuple(float(x) for x in theta), wire_fraction_row=a, wire_fraction_col=b, **base)


def measure_fidelity(model: EnergyModel, g_s: np.ndarray, g_index: np.ndarray, v_v: np.ndarray,
                     p_w: np.ndarray) -> dict[str, Any]:
    """RMS relative error of the model and of the ideal formula against ngspice's ``p_w`` (samples with
    p_w > 0), and how many times better the model is."""
    keep = np.isfinite(p_w) & (p_w > 0)
    pred = model.predict_w(g_s, g_index[keep], v_v[keep])
    ideal = ideal_w(g_s, g_index[keep], v_v[keep])
    model_rms, ideal_rms = rms_rel(pred, p_w[keep]), rms_rel(ideal, p_w[keep])
    rel = np.abs(pred - p_w[keep]) / p_w[keep]
    return {"n_samples": int(keep.sum()), "n_matrices": int(len(np.unique(g_index[keep]))),
            "rms_rel": model_rms, "worst_rel": float(rel.max()) if rel.size else math.nan,
            "ideal_rms_rel": ideal_rms, "improvement_over_ideal": ideal_rms / model_rms if model_rms > 0 else math.inf,
            "meets_target": bool(model_rms <= TARGET_RMS_REL), "target_rms_rel": TARGET_RMS_REL}


def fit_and_measure(splits: Any) -> EnergyModel:
    """The energy model of a split dataset (:class:`surrogate.data.SplitDataset`): fitted on its training
    matrices, its fidelity measured on the held-out test matrices (and on the DNN-like ones among them)."""
    test = splits.test
    fit_on = [split for split in (splits.train, splits.val) if split.n_samples]
    if any(split.p_w is None for split in (*fit_on, test)):
        raise EnergyModelError(f"{splits.path or 'dataset'}: no read power (/p_w) in the dataset")
    offsets = np.cumsum([0] + [len(split.g_s) for split in fit_on[:-1]])
    g_all = np.concatenate([split.g_s for split in fit_on])
    g_index = np.concatenate([split.g_index + o for split, o in zip(fit_on, offsets, strict=True)])
    v_v = np.concatenate([split.v_v for split in fit_on])
    p_w = np.concatenate([split.p_w for split in fit_on])
    linear = _cell_is_linear(splits.spec)
    model = fit_energy_model(splits.spec, linear, g_all, g_index, v_v, p_w)
    fidelity: dict[str, Any] = {"fitted_on": "train + val matrices", "measured_on": "test matrices",
                                "test": measure_fidelity(model, test.g_s, test.g_index, test.v_v, test.p_w)}
    dnn_rows = set(getattr(splits, "dnn_like_g_rows", ()))
    dnn = np.array([row in dnn_rows for row in test.g_rows.tolist()], dtype=bool)
    if dnn.any():
        mask = dnn[test.g_index]
        fidelity["test_dnn_like"] = measure_fidelity(model, test.g_s, test.g_index[mask], test.v_v[mask],
                                                     test.p_w[mask])
    m = fidelity["test"]
    log.info("energy model of %s on %d held-out samples: RMS relative error %.2e (ideal formula %.2e, %.0fx better)",
             splits.spec.name, m["n_samples"], m["rms_rel"], m["ideal_rms_rel"], m["improvement_over_ideal"])
    return EnergyModel(**{**model.to_dict(), "features": model.features, "theta": model.theta,
                          "fidelity": fidelity})


def energy_model_or_none(splits: Any) -> EnergyModel | None:
    """:func:`fit_and_measure`, or None (with a logged reason) when the circuit or dataset has no energy model."""
    try:
        return fit_and_measure(splits)
    except EnergyModelError as exc:
        log.warning("no energy model: %s", exc)
        return None


def _cell_is_linear(spec: CircuitSpec) -> bool:
    from spice.exact import LinearCell, UnsupportedCircuitError, cell_model

    try:
        return isinstance(cell_model(spec), LinearCell)
    except UnsupportedCircuitError:
        return False


def attach(model: Any, energy: EnergyModel) -> None:
    """Make a loaded surrogate a ``dnn.mvm.PartsPoweredTileMVM``: ``power_model``, ``energy_model``,
    ``bind_power`` (the energy model bound to the tiles' conductances), ``power_split``, ``bind_power_parts``
    (its split over the parts) and ``power_forms`` (that split as quadratic forms: a linear model's only;
    ``dnn.mvm.FormsPoweredTileMVM``)."""
    model.energy_model = energy
    model.power_model = POWER_MODEL
    model.bind_power = energy.bind
    model.power_split = POWER_SPLIT
    model.bind_power_parts = energy.bind_parts
    model.power_forms = energy.power_forms
