"""The tile-MVM protocol: what a crossbar layer asks of one physical array model.

A `TileMVM` knows the physical tile it models (``tile``: one :class:`spice.tile.Tile` record of
rows x cols, programmable conductance range, read voltages and resistances) and turns conductances of T tiles into a function from row voltages to column currents.
`bind` does all the work that depends only on G once; the returned function is applied to many
input batches. Implementations here: `IdealTileMVM` (i = v @ G), `TransferTileMVM` (exact linear
physics i = v @ T(G) from a transfer-matrix function, e.g. a nodal solver) and `SolverTileMVM` (a solver
bound to G that solves every input vector: non-linear cells, ngspice in the loop). The surrogate package
implements the same protocol. `PoweredTileMVM` (optional) adds the read power: `IdealTileMVM` (the ideal
formula sum v^2 G), `TransferTileMVM` with an admittance function (the exact quadratic form v^T Y(G) v),
and surrogates whose file carries an energy model. `PartsPoweredTileMVM` (optional) splits that power over
:data:`POWER_PARTS` (cells, row wires, column wires, driver, sense).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import torch

from spice.nodal import POWER_PARTS as NODAL_POWER_PARTS
from spice.tile import DEFAULT_T_READ_S, Tile, TileViews

BoundMVM = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class TileMVM(Protocol):
    """Protocol of a crossbar tile model (keep exactly: the surrogate package implements it too).

    ``tile`` is the physical tile the model describes: size, programmable conductance range (S), the row
    voltages the model is valid for (V; ``v_read_min_v = -v_read_max_v``: either sign) and the array's
    resistances (ohm). The models here and the surrogates also answer to the tile's constants by name
    (``rows``, ``cols``, ``g_off_s``, ``g_on_s``, ``v_read_min_v``, ``v_read_max_v``: read-only views of
    ``tile``, :class:`spice.tile.TileViews`); code that takes any `TileMVM` reads ``tile``.
    """

    tile: Tile

    def bind(self, g_s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s: [T, rows, cols] conductances of T tiles. Returns f(v_v: [T, B, rows]) -> i_a: [T, B, cols]
        (column currents, amperes). All G-only work is done once in bind. Differentiable w.r.t. v (and g).

        `f` runs on the device and dtype of `g_s` (the caller passes `v_v` on the same device).
        """
        ...


@runtime_checkable
class SharedInputTileMVM(TileMVM, Protocol):
    """A tile model that can also bind groups of tiles reading the same row voltages (optional).

    In a crossbar layer the bit slices, polarity arrays and column tiles of one row tile all read
    the same DAC voltages; a model that implements `bind_shared` gets each input once per group
    (e.g. to form non-linear input features once and multiply them with all the group's maps in
    one matmul). Numbers must equal `bind` with the input repeated per tile (up to float rounding).
    """

    def bind_shared(self, g_s: torch.Tensor, input_levels: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s: [G, K, rows, cols] conductances of G groups of K tiles. Returns f(v_v: [G, B, rows]) ->
        i_a: [G, K, B, cols] (amperes; tile k of group g reads v_v[g]). Same device, dtype and
        differentiability rules as `TileMVM.bind`.

        input_levels > 0: the row voltages are (up to float rounding) integer multiples of
        v_read_max_v / input_levels, the DAC's levels (`dnn.mapping.dac_levels`); a model may tabulate
        its per-voltage work at those levels. 0: any voltage."""
        ...


@runtime_checkable
class NoisyReadTileMVM(TileMVM, Protocol):
    """A tile model that draws read noise itself, through its own physics (optional).

    With per-read noise on, a crossbar layer binds such a model with `bind_noisy` instead of adding
    modelled noise currents (``dnn.noise``) to its noise-free ones: every input vector then reads
    its own draw of the conductances, ``g (1 + sigma N(0, 1))`` per cell, solved exactly (e.g. the
    batched Newton solve of a non-linear array), when `noisy_reads` is true."""

    noisy_reads: bool

    def bind_noisy(self, g_s: torch.Tensor, sigma: float, generator: torch.Generator,
                   g_clip_s: tuple[float, float] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """Like `TileMVM.bind`, but every vector of every call reads conductances redrawn from
        `generator` (clipped to `g_clip_s` (S) when given). Gradients as for `bind`."""
        ...


@runtime_checkable
class LoadedTileMVM(TileMVM, Protocol):
    """A tile model that states the resistances its cells read through (optional). Per-read noise then
    follows the cells' loading by the array (:func:`dnn.noise.loaded_read_noise_currents`): with all
    rows driven, the column nodes rise and the row nodes sag, and each cell reads less than its row
    voltage."""

    def line_resistances_ohm(self) -> tuple[float, float] | None:
        """(driver resistance in series with every row, sense resistance in series with every column),
        ohms; None when the model cannot tell (the layer then uses the unloaded approximation)."""
        ...


BoundPower = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class PoweredTileMVM(TileMVM, Protocol):
    """A tile model that also tells the power a read draws (optional).

    Energy per read = ``p_w * tile.t_read_s``. ``power_model`` says what computes the power, for the
    result (e.g. "ideal v^2 G", "exact nodal", "surrogate energy model")."""

    power_model: str

    def bind_power(self, g_s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s: [T, rows, cols] (S). Returns f(v_v: [T, B, rows]) -> p_w: [T, B]: the static power drawn
        from the row sources during one read (W): cells + wires + driver + sense. G-only work is done
        once here; `f` runs on the device and dtype of `g_s`, without gradients."""
        ...


POWER_PARTS = NODAL_POWER_PARTS
"""Where a read's power goes, in the order of `PartsPoweredTileMVM.bind_power_parts`'s last axis: the order of
the SPICE dataset's ``/p_parts_w`` columns (``spice.nodal.POWER_PARTS``)."""


@runtime_checkable
class PartsPoweredTileMVM(PoweredTileMVM, Protocol):
    """A tile model that also tells where the read power goes (optional): the parts of :data:`POWER_PARTS`.

    ``power_split`` says how the parts are found, for the result (e.g. "exact: per-part quadratic forms of
    the nodal solve"); the sum of the parts is ``bind_power``'s total (up to float rounding)."""

    power_split: str

    def bind_power_parts(self, g_s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s: [T, rows, cols] (S). Returns f(v_v: [T, B, rows]) -> p_w: [T, B, len(POWER_PARTS)] (W): the
        power of one read dissipated in each part. Same device, dtype and gradient rules as `bind_power`."""
        ...


@runtime_checkable
class FormsPoweredTileMVM(PartsPoweredTileMVM, Protocol):
    """A tile model whose per-part read power is a quadratic form in the row voltages (optional): p_part =
    ``v^T Q_part(G) v``. A caller that reads several tiles with the same voltages (the tiles of one row tile)
    may then sum their forms once per programming and apply the sum, instead of every tile's
    (:class:`dnn.energy.EnergyMeter`)."""

    def power_forms(self, g_s: torch.Tensor) -> torch.Tensor:
        """g_s: [T, rows, cols] (S). Returns Q [T, len(POWER_PARTS), rows, rows] (A/V, float64, on the device of
        `g_s`, no gradient): `bind_power_parts`'s forms. Raises ValueError when the model has none."""
        ...


def bind_power_forms(q: torch.Tensor, dtype: torch.dtype) -> BoundPower:
    """Per-part quadratic forms Q [T, parts, rows, rows] (A/V) -> f(v_v [T, B, rows] (V)) -> p_w [T, B, parts] =
    ``v^T Q[t, p] v`` (W), computed in ``dtype`` (one bmm for every part), returned in ``v_v``'s dtype, without
    gradients."""
    n, n_parts, rows = q.shape[0], q.shape[1], q.shape[2]
    q_cat = q.detach().to(dtype).permute(0, 2, 1, 3).reshape(n, rows, n_parts * rows)  # [T, rows, parts x rows]

    def parts(v_v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            v = v_v.detach().to(dtype)
            vq = torch.bmm(v, q_cat).view(v.shape[0], v.shape[1], n_parts, rows)  # v^T Q_p per part
            return (vq * v[:, :, None, :]).sum(dim=3).to(v_v.dtype)  # [T, B, parts]

    return parts


def _check_g(g_s: torch.Tensor, tile: Tile) -> None:
    if g_s.ndim != 3 or g_s.shape[1:] != (tile.rows, tile.cols):
        raise ValueError(f"g_s has shape {tuple(g_s.shape)}; expected [T, {tile.rows}, {tile.cols}]")


@dataclass(frozen=True)
class _TileArguments:
    """How the tile models below are built: the tile's size, conductance range (S) and largest row voltage
    (V), by position; the array's resistances (ohm, default 0: an ideal array) and read pulse width (s,
    default :data:`spice.tile.DEFAULT_T_READ_S`), by keyword."""

    rows: InitVar[int]
    cols: InitVar[int]
    g_off_s: InitVar[float]
    g_on_s: InitVar[float]
    v_read_max_v: InitVar[float]
    r_driver_ohm: InitVar[float] = field(default=0.0, kw_only=True)
    r_sense_ohm: InitVar[float] = field(default=0.0, kw_only=True)
    r_wire_row_ohm: InitVar[float] = field(default=0.0, kw_only=True)
    r_wire_col_ohm: InitVar[float] = field(default=0.0, kw_only=True)
    t_read_s: InitVar[float] = field(default=DEFAULT_T_READ_S, kw_only=True)


@dataclass(frozen=True)
class _BipolarTile(TileViews, _TileArguments):
    """The physical tile every model here describes (``tile``), valid for row voltages of either sign
    (the tile models below add how they compute)."""

    tile: Tile = field(init=False)

    def __post_init__(self, rows: int, cols: int, g_off_s: float, g_on_s: float, v_read_max_v: float,
                      r_driver_ohm: float, r_sense_ohm: float, r_wire_row_ohm: float, r_wire_col_ohm: float,
                      t_read_s: float) -> None:
        if not (isinstance(cols, int) and cols >= 2):
            raise ValueError(f"tile size rows={rows!r}, cols={cols!r}: expected ints rows >= 1, cols >= 2")
        tile = Tile(rows=rows, cols=cols, g_off_s=g_off_s, g_on_s=g_on_s, v_read_min_v=-v_read_max_v,
                    v_read_max_v=v_read_max_v, r_driver_ohm=r_driver_ohm, r_sense_ohm=r_sense_ohm,
                    r_wire_row_ohm=r_wire_row_ohm, r_wire_col_ohm=r_wire_col_ohm, t_read_s=t_read_s)
        object.__setattr__(self, "tile", tile)

    @classmethod
    def of(cls, tile: Tile, **kwargs: Any) -> Self:
        """The model of ``tile``'s array (its size, conductance range, largest row voltage and resistances),
        valid for row voltages of either sign; ``kwargs``: the model's own fields."""
        arguments = {key: value for key, value in tile.to_dict().items() if key != "v_read_min_v"}
        return cls(**arguments, **kwargs)

    def replace(self, **changes: Any) -> Self:
        """A copy with some of the model's own fields changed (``dataclasses.replace`` cannot rebuild the
        tile from its init-only arguments)."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return type(self).of(self.tile, **{**own, **changes})


@dataclass(frozen=True)
class IdealTileMVM(_BipolarTile):
    """Ideal crossbar: i = v @ G per tile (Kirchhoff with zero wire, driver and sense resistance); read
    power sum over cells of v^2 G (the ideal formula, whatever resistances the tile states)."""

    power_model: str = field(default="ideal v^2 G", init=False)
    power_split: str = field(default="ideal array: all in the cells", init=False)

    def bind(self, g_s: torch.Tensor) -> BoundMVM:
        _check_g(g_s, self.tile)

        def mvm(v_v: torch.Tensor) -> torch.Tensor:
            return torch.bmm(v_v, g_s)

        return mvm

    def bind_power(self, g_s: torch.Tensor) -> BoundPower:
        """p_w [T, B] = sum_r v_r^2 sum_c G_rc (W)."""
        _check_g(g_s, self.tile)
        return ideal_power(g_s)

    def bind_power_parts(self, g_s: torch.Tensor) -> BoundPower:
        """p_w [T, B, len(POWER_PARTS)]: the ideal formula in the cells, 0 in every other part (W)."""
        return all_in_cells(self.bind_power(g_s))


def ideal_power(g_s: torch.Tensor) -> BoundPower:
    """The ideal read power bound to ``g_s`` [T, rows, cols] (S): p_w [T, B] = sum_r v_r^2 sum_c G_rc (W),
    no gradient (whatever resistances a tile states)."""
    g_row = g_s.detach().sum(dim=2)  # [T, rows]

    def power(v_v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.einsum("tbr,tr->tb", v_v.detach() ** 2, g_row)

    return power


def all_in_cells(total: BoundPower) -> BoundPower:
    """Parts [T, B, len(POWER_PARTS)] of a total power function with all of it in the cells (W)."""
    cells = POWER_PARTS.index("cells")

    def parts(v_v: torch.Tensor) -> torch.Tensor:
        p = total(v_v)
        out = p.new_zeros((*p.shape, len(POWER_PARTS)))
        out[..., cells] = p
        return out

    return parts


TransferFn = Callable[[np.ndarray], np.ndarray]
AdmittanceFn = Callable[[np.ndarray], np.ndarray]
PowerFormsFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TransferTileMVM(_BipolarTile):
    """Exact linear array physics through a transfer matrix: i = v @ T(G).

    `transfer_fn(g_s [T, rows, cols] numpy, S) -> T [T, rows, cols]` (A/V) is called once per bind
    (e.g. `spice.nodal`'s exact solver). T(G) is computed in numpy, so no gradient reaches G through
    it; for noise-aware retraining the gradient w.r.t. G is passed straight through as if ideal
    (forward value exact, backward dI/dG = v).
    """

    transfer_fn: TransferFn
    noisy_solver_fn: SolverFn | None = None
    """Optional: an array solver that takes per-vector conductances (``spice.exact.ArraySolver`` with
    linear cells); per-read noise then reads redrawn conductances through it (`bind_noisy`)."""
    admittance_fn: AdmittanceFn | None = None
    """Optional: `admittance_fn(g_s [T, rows, cols] numpy, S) -> Y [T, rows, rows]` (A/V), the currents drawn
    from the row sources are ``Y v`` (e.g. ``spice.nodal.input_admittance``). With it the read power is the
    exact quadratic form ``v^T Y v`` (`bind_power`); without it `bind_power` refuses."""
    power_forms_fn: PowerFormsFn | None = None
    """Optional: `power_forms_fn(g_s [T, rows, cols] numpy, S) -> Q [T, len(POWER_PARTS), rows, rows]` (A/V), the
    power dissipated in part p is ``v^T Q[p] v`` (e.g. ``spice.nodal.power_quadratic_forms``). With it
    `bind_power_parts` tells where the power goes; without it `bind_power_parts` refuses."""
    power_model: str = field(default="exact nodal", init=False)
    power_split: str = field(default="exact: per-part quadratic forms v^T Q_part v of the nodal solve", init=False)

    def power_forms(self, g_s: torch.Tensor) -> torch.Tensor:
        """Q [T, len(POWER_PARTS), rows, rows] (A/V, float64, on the device of `g_s`) by `power_forms_fn`: the power
        dissipated in part p by a read ``v`` is ``v^T Q[p] v``."""
        _check_g(g_s, self.tile)
        if self.power_forms_fn is None:
            raise ValueError("this transfer-matrix tile model has no per-part power forms (power_forms_fn, e.g. "
                             "spice.nodal.power_quadratic_forms); it cannot tell where the read power goes")
        rows, shape = self.tile.rows, (g_s.shape[0], len(POWER_PARTS), self.tile.rows, self.tile.rows)
        q_np = np.asarray(self.power_forms_fn(g_s.detach().cpu().double().numpy()))
        if q_np.shape != shape:
            raise ValueError(f"power_forms_fn returned shape {q_np.shape}; expected {shape} ({rows} rows)")
        return torch.as_tensor(q_np, dtype=torch.float64, device=g_s.device)

    def bind_power_parts(self, g_s: torch.Tensor) -> BoundPower:
        """p_w [T, B, len(POWER_PARTS)] = v^T Q_p(G) v per part (W), Q computed once here by `power_forms_fn`:
        exact for a linear array; the parts sum to `bind_power`'s ``v^T Y v`` (sum_p Q_p = Y)."""
        return bind_power_forms(self.power_forms(g_s), g_s.dtype)

    def bind_power(self, g_s: torch.Tensor) -> BoundPower:
        """p_w [T, B] = v^T Y(G) v (W), Y computed once here by `admittance_fn`: exact for a linear array
        (cells, wires, driver and sense)."""
        _check_g(g_s, self.tile)
        if self.admittance_fn is None:
            raise ValueError("this transfer-matrix tile model has no admittance function (admittance_fn, e.g. "
                             "spice.nodal.input_admittance); it cannot tell the read power")
        rows = self.tile.rows
        y_np = np.asarray(self.admittance_fn(g_s.detach().cpu().double().numpy()))
        if y_np.shape != (g_s.shape[0], rows, rows):
            raise ValueError(f"admittance_fn returned shape {y_np.shape}; expected {(g_s.shape[0], rows, rows)}")
        y = torch.as_tensor(y_np, dtype=g_s.dtype, device=g_s.device)

        def power(v_v: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                v = v_v.detach()
                return torch.einsum("tbr,trs,tbs->tb", v, y, v)

        return power

    @property
    def noisy_reads(self) -> bool:
        return self.noisy_solver_fn is not None

    def bind_noisy(self, g_s: torch.Tensor, sigma: float, generator: torch.Generator,
                   g_clip_s: tuple[float, float] | None = None) -> BoundMVM:
        """Every vector reads redrawn conductances, solved by `noisy_solver_fn` (see
        :meth:`SolverTileMVM.bind_noisy`)."""
        if self.noisy_solver_fn is None:
            raise ValueError("this transfer-matrix tile model has no solver for redrawn conductances")
        solver = SolverTileMVM.of(self.tile, solver_fn=self.noisy_solver_fn)
        return solver.bind_noisy(g_s, sigma, generator, g_clip_s)

    def bind(self, g_s: torch.Tensor) -> BoundMVM:
        _check_g(g_s, self.tile)
        t_np = np.asarray(self.transfer_fn(g_s.detach().cpu().double().numpy()))
        if t_np.shape != tuple(g_s.shape):
            raise ValueError(f"transfer_fn returned shape {t_np.shape}; expected {tuple(g_s.shape)}")
        t = torch.as_tensor(t_np, dtype=g_s.dtype, device=g_s.device)
        if g_s.requires_grad:
            t = t + (g_s - g_s.detach())  # straight-through gradient to G; value unchanged

        def mvm(v_v: torch.Tensor) -> torch.Tensor:
            return torch.bmm(v_v, t)

        return mvm


@runtime_checkable
class ArraySolution(Protocol):
    """An array solver bound to the conductances of T tiles (e.g. ``spice.exact.ArraySolver``)."""

    def currents(self, v_v: torch.Tensor, g_factor: torch.Tensor | None = None) -> torch.Tensor:
        """Column currents [T, B, cols] (A, float64) for row voltages ``v_v`` [T, B, rows] (V, float64);
        ``g_factor`` [T, B, rows, cols]: each vector's conductances are the bound ones times its factor."""
        ...

    def small_signal_transfer(self) -> torch.Tensor:
        """dI/dV at zero input [T, rows, cols] (A/V): the transfer matrix of the linearized array."""
        ...


SolverFn = Callable[[torch.Tensor], ArraySolution]


@dataclass(frozen=True)
class NoisePhysics:
    """The circuit's own physics for the per-read noise of a tile model's cells (optional attribute
    ``noise_physics`` of a tile model, e.g. a surrogate of a circuit whose cell ``spice.exact`` solves).

    A crossbar layer then takes the inputs of the loaded-cell noise model (``dnn.noise``) from it: the
    tile's response to one row at a time at each voltage of the chord polynomial, from ``solver_fn``
    bound to the programmed conductances, and the driver and sense resistances of the circuit. The
    noise-free currents still come from the tile model."""

    solver_fn: SolverFn
    """Conductances [T, rows, cols] (S, float64) -> an exact solver bound to them."""
    r_driver_ohm: float
    r_sense_ohm: float
    source: str
    """What solves the array, for the result's description (e.g. 'spice.exact sinh')."""


@dataclass(frozen=True)
class SolverTileMVM(_BipolarTile):
    """Array physics from a solver that is bound to G and then solves every input vector (non-linear cells).

    `solver_fn(g_s [T, rows, cols] float64, S)` is called once per bind; the bound function calls its
    `currents` (float64, no autograd) and returns the result in `v_v`'s dtype. Gradients are
    straight-through, and cost nothing unless asked for: w.r.t. v through the small-signal transfer
    matrix dI/dV at zero input (computed once per bind, on the first backward-enabled call), w.r.t. G as
    if ideal (dI/dG = v), as in :class:`TransferTileMVM`. Forward values are always the solver's.
    """

    solver_fn: SolverFn
    noisy_reads: bool = True
    """Per-read noise through the solver (`bind_noisy`); False: the layer's transfer-matrix noise currents
    (a solver whose `currents` takes no ``g_factor``, e.g. ngspice in the loop)."""

    def bind(self, g_s: torch.Tensor) -> BoundMVM:
        return self._bound(g_s, None)

    def bind_noisy(self, g_s: torch.Tensor, sigma: float, generator: torch.Generator,
                   g_clip_s: tuple[float, float] | None = None) -> BoundMVM:
        """Every vector reads ``g (1 + sigma N(0, 1))`` drawn from `generator` (float64, on the generator's
        device), clipped to `g_clip_s` when given, solved with the tile's factorization at g."""
        g64 = g_s.detach().to(torch.float64)

        def factor(v_v: torch.Tensor) -> torch.Tensor:
            shape = (g_s.shape[0], v_v.shape[1], self.tile.rows, self.tile.cols)
            f = 1.0 + sigma * torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float64)
            f = f.to(g64.device)
            if g_clip_s is None:
                return f
            return (g64[:, None] * f).clamp(*g_clip_s) / g64[:, None]

        return self._bound(g_s, factor)

    def _bound(self, g_s: torch.Tensor, factor: Callable[[torch.Tensor], torch.Tensor] | None) -> BoundMVM:
        _check_g(g_s, self.tile)
        solution = self.solver_fn(g_s.detach().to(torch.float64))
        transfer: list[torch.Tensor] = []

        def mvm(v_v: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                v64 = v_v.detach().to(torch.float64)
                i = (solution.currents(v64) if factor is None else solution.currents(v64, factor(v64)))
                i = i.to(dtype=v_v.dtype, device=v_v.device)
            if not (torch.is_grad_enabled() and (v_v.requires_grad or g_s.requires_grad)):
                return i
            if not transfer:
                with torch.no_grad():
                    transfer.append(solution.small_signal_transfer().to(dtype=v_v.dtype, device=v_v.device))
            t = transfer[0] + (g_s - g_s.detach()) if g_s.requires_grad else transfer[0]
            linear = torch.bmm(v_v, t)
            return i + (linear - linear.detach())  # value: the solver's; gradient: the small-signal one

        return mvm
