"""Crossbar layers: `CrossbarLinear` and `CrossbarConv2d` (plain nn.Modules, not torch-layer subclasses).

Forward of one layer (all tiles and slices of the layer in one batched `TileMVM` call):
quantize weights -> bit slices -> conductances -> [T, rows, cols] tiles -> (drift, read noise, clip)
-> `mvm.bind(g)` -> DAC'd row voltages -> column currents -> pair / reference subtraction -> ADC ->
divide by the ideal scale -> shift-add slices -> sum row tiles -> rescale -> + digital bias.
A `dnn.mvm.SharedInputTileMVM` (e.g. a third-order surrogate) is bound with `bind_shared` instead:
one group per row tile (its slices, polarity arrays and column tiles), each row voltage passed once.

Caching: the programmed conductances (quantization, slicing, tiling, drift) and the bound MVM are
kept until the weight changes (tracked by the weight tensor's version counter and storage pointer),
the device/dtype or the MVM changes. Read noise is a new draw every forward, so with read noise on the
MVM is re-bound every forward. Weights edited through `.data` bypass the version counter: call
`invalidate_cache()` after such edits. While weights require grad (noise-aware retraining) nothing is cached.

Drift exponents nu belong to a *programming* of the array: drawn once (deterministically from the seed,
the layer name and a programming index) and kept across copies, device moves and weight updates, so a
BN calibration stays valid for the array it was made on; `reprogram()` starts a new programming.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import CrossbarConfig
from .device import (
    DeviceStats,
    aihwkit_pcm_nu,
    apply_faults_and_range,
    draw_faults,
    draw_range_factors,
    drift_nu_mean_map,
    program_conductances,
    read_noise_scale,
    snap_to_levels,
    tiles_all_stuck,
    work_dtype,
)
from .mapping import (
    adc_full_scale,
    adc_quantize,
    dac_levels,
    dac_quantize,
    encode_levels,
    levels_to_conductance,
    quantize_weights,
    shift_add,
    tile_grid,
    tile_inputs,
    tile_matrix,
    unfold_conv_input,
    untile_outputs,
    weight_offset,
)
from .mvm import BoundMVM, LoadedTileMVM, NoisePhysics, NoisyReadTileMVM, SharedInputTileMVM, TileMVM
from .noise import (
    READ_G_FLOOR_FRACTION,
    LoadedNoiseMaps,
    apply_drift,
    apply_read_noise,
    chord_polynomial,
    clip_conductance,
    derive_seed,
    draw_drift_nu,
    loaded_noise_maps,
    loaded_read_noise_currents,
    make_generator,
    per_read_noise_currents,
)

logger = logging.getLogger(__name__)

MAX_CHUNK_ELEMENTS = 2**25
"""Largest [T, B, rows|cols] tensor (elements) one MVM call may see; larger batches are split along B."""

TileReader = Callable[[torch.Tensor], torch.Tensor]
"""Bound MVM of all tiles of a layer: row voltages [n_r, B, rows] (V) -> column currents
[S, P, n_r, n_c, B, cols] (A); every slice, polarity array and column tile of row tile r reads v[r]."""


@dataclass
class _Programmed:
    """Conductances of one programming of a layer and what is needed to read them back."""

    key: tuple[Any, ...]
    g_s: torch.Tensor  # [T, rows, cols], T = S * P * n_r * n_c
    s_w: torch.Tensor  # weight units per integer level
    grid: tuple[int, int, int, int]  # (slices S, polarity arrays P, row tiles n_r, column tiles n_c)
    read: TileReader | None = None  # cached bound MVM of all tiles (only without per-forward read noise)
    bound: BoundMVM | None = None  # per-tile bound MVM (per-read noise's t_sq), the reader's or bound when needed
    t_sq: torch.Tensor | None = None  # [T, rows, cols] squared effective transfer matrix (per-read noise)
    loaded: LoadedNoiseMaps | None = None  # per-read noise of loaded cells (a LoadedTileMVM's)
    device_stats: DeviceStats | None = None  # faults and verify re-draws of this programming
    g_prog_s: torch.Tensor | None = None  # programmed conductances before drift (read-noise sigma(g)), None = g_s

    @property
    def g_read_ref_s(self) -> torch.Tensor:
        """The conductances read noise sigma(g) follows: the programmed state (before drift), as aihwkit's
        1/f noise follows g_prog."""
        return self.g_s if self.g_prog_s is None else self.g_prog_s


def _pair(x: int | tuple[int, ...]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


class CrossbarLayerBase(nn.Module):
    """Shared machinery: weight (frozen Parameter unless asked), digital bias, tile mapping, caching.

    The `mvm` is kept as a plain attribute, not a registered submodule: the crossbar model is shared
    hardware, not a parameter of the DNN. Replace it with `set_mvm`.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, config: CrossbarConfig,
                 mvm: TileMVM, name: str = "") -> None:
        super().__init__()
        if not isinstance(config, CrossbarConfig):
            raise TypeError(f"config must be a CrossbarConfig, got {type(config).__name__}")
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        if bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.config = config
        self.name = name
        self.set_mvm(mvm)
        self._programmed: _Programmed | None = None
        self._programming_index = 0
        self._nu: tuple[int, torch.Tensor] | None = None  # (programming index, drift exponents on CPU)
        self._generators: dict[str, torch.Generator] = {}
        self.adc_full_scale_a: float | None = None
        """'calibrated' ADC range: the full scale set by `calibrate_adc`, amperes."""
        self._adc_observed_a: float | None = None  # running max |i| while `calibrate_adc` observes
        self.energy_meter: Any = None
        """A ``dnn.energy.EnergyMeter`` told every read while attached (``dnn.energy.metering``), else None."""

    # ----------------------------------------------------------------- public helpers
    def set_mvm(self, mvm: TileMVM) -> None:
        """Use another tile model (e.g. ideal vs surrogate); drops the cache."""
        if not isinstance(mvm, TileMVM):
            raise TypeError(f"mvm must implement dnn.mvm.TileMVM (tile, bind), got {type(mvm).__name__}")
        if self.config.encoding == "offset" and mvm.tile.cols < 2:
            raise ValueError("offset encoding needs >= 2 columns per tile (one is the reference column)")
        if self.config.input_polarity == "signed" and mvm.tile.v_read_min_v > -mvm.tile.v_read_max_v:
            raise ValueError(f"{type(mvm).__name__} covers row voltages [{mvm.tile.v_read_min_v}, {mvm.tile.v_read_max_v}] V only; "
                             "signed inputs need input_polarity='two_phase'")
        self.__dict__["mvm"] = mvm
        self._programmed = None

    def reprogram(self) -> None:
        """Start a new programming of the array: the next forward draws new drift exponents nu.
        (Copies, device moves and weight updates keep the current programming's nu.)"""
        self._programming_index += 1
        self._programmed = None

    def invalidate_cache(self) -> None:
        """Drop the cached conductances and bound MVM (same programming, same nu), e.g. after editing
        the weight through `.data`."""
        self._programmed = None

    def reset_read_noise(self) -> None:
        """Restart the read-noise stream from the seed."""
        self._generators.clear()

    def _copy_from(self, module: nn.Module) -> None:
        """Copy weight and bias of a float layer (frozen, on the float layer's device)."""
        self.weight = nn.Parameter(module.weight.detach().clone(), requires_grad=False)
        if module.bias is not None:
            self.bias = nn.Parameter(module.bias.detach().clone(), requires_grad=False)
        self._programmed = None

    def weight_matrix(self) -> torch.Tensor:
        """Weight as the [in_features, out_features] matrix mapped onto rows x columns."""
        raise NotImplementedError

    @property
    def cols_per_tile(self) -> int:
        """Weight columns per tile (one fewer with offset encoding: the reference column)."""
        return self.mvm.tile.cols - (1 if self.config.encoding == "offset" else 0)

    def tile_count(self) -> int:
        """Number of physical tiles T this layer occupies (slices x polarity arrays x grid)."""
        n_in, n_out = self.weight_matrix().shape
        n_r, n_c = tile_grid(n_in, n_out, self.mvm.tile.rows, self.cols_per_tile)
        p = 2 if self.config.encoding == "differential" else 1
        return self.config.n_slices * p * n_r * n_c

    # ----------------------------------------------------------------- programming
    def _read_generator(self, device: torch.device) -> torch.Generator:
        """Per-device read-noise stream seeded from (config.seed, layer name)."""
        key = str(device)
        if key not in self._generators:
            self._generators[key] = make_generator(derive_seed(self.config.seed, self.name, "read"), device)
        return self._generators[key]

    def _drift_nu(self, shape: torch.Size, device: torch.device, dtype: torch.dtype,
                  g_target_rel: torch.Tensor | None = None) -> torch.Tensor:
        """Per-device drift exponents of the current programming: a deterministic draw (on CPU, so the
        same on every device) from (config.seed, layer name, programming index). With drift_nu_slope the
        mean follows the target conductances g_target_rel = g / g_on (same draw of N(0, 1))."""
        cfg = self.config
        if cfg.drift_nu_law == "aihwkit_pcm" and g_target_rel is not None:
            seed = derive_seed(cfg.seed, self.name, f"drift{self._programming_index}")
            return aihwkit_pcm_nu(g_target_rel, make_generator(seed)).to(device=device, dtype=dtype)
        if cfg.drift_nu_slope != 0.0 and g_target_rel is not None:
            seed = derive_seed(cfg.seed, self.name, f"drift{self._programming_index}")
            mean = drift_nu_mean_map(g_target_rel.detach().to("cpu", torch.float32), cfg.drift_nu_mean,
                                     cfg.drift_nu_slope)
            nu = draw_drift_nu(shape, mean, cfg.drift_nu_std, make_generator(seed))
            return nu.to(device=device, dtype=dtype)
        if self._nu is None or self._nu[0] != self._programming_index or self._nu[1].shape != shape:
            seed = derive_seed(cfg.seed, self.name, f"drift{self._programming_index}")
            nu = draw_drift_nu(shape, cfg.drift_nu_mean, cfg.drift_nu_std, make_generator(seed))
            self._nu = (self._programming_index, nu)
        return self._nu[1].to(device=device, dtype=dtype)

    def _program(self, device: torch.device, dtype: torch.dtype, key: tuple[Any, ...]) -> _Programmed:
        """Quantize, slice, tile and map the weights to conductances; apply drift."""
        cfg, mvm = self.config, self.mvm
        w = self.weight_matrix().to(device=device, dtype=dtype)
        q, s_w = quantize_weights(w, cfg.weight_bits)
        levels = encode_levels(q, cfg.weight_bits, cfg.bits_per_cell, cfg.encoding)  # [S, P, in, out]
        tiles = tile_matrix(levels, mvm.tile.rows, self.cols_per_tile)  # [S, P, n_r, n_c, rows, cols']
        if cfg.encoding == "offset":
            tiles = F.pad(tiles, (0, 1))  # reference column, level 0 = g_min
        grid = tuple(tiles.shape[:4])
        g = levels_to_conductance(tiles, cfg.bits_per_cell, mvm.tile.g_off_s, mvm.tile.g_on_s)
        g = g.reshape(-1, mvm.tile.rows, mvm.tile.cols)
        g_target = g
        g, stats = self._program_devices(g)
        g_prog = g if cfg.drift_on and cfg.read_noise_g_exponent != 0.0 else None
        if cfg.drift_on:
            nu = self._drift_nu(g.shape, device, dtype, g_target / mvm.tile.g_on_s)
            g = apply_drift(g, nu, cfg.t_drift_s, cfg.t0_s)
            if cfg.clip_conductances:
                g = clip_conductance(g, mvm.tile.g_off_s, mvm.tile.g_on_s)
        return _Programmed(key=key, g_s=g, s_w=s_w, grid=grid, device_stats=stats,  # type: ignore[arg-type]
                           g_prog_s=g_prog)

    def _program_devices(self, g_target: torch.Tensor) -> tuple[torch.Tensor, DeviceStats]:
        """Target conductances [T, rows, cols] -> programmed ones (``dnn.device``): programming noise and
        verify, stuck-ON/OFF faults, device-to-device range. Each step draws from its own CPU generator
        seeded from (config.seed, layer name, step, programming index); with every step off, g_target
        itself."""
        cfg, tile = self.config, self.mvm.tile
        n_t = g_target.shape[0]
        shape = tuple(g_target.shape)
        idx = self._programming_index

        def gen(step: str) -> torch.Generator:
            return make_generator(derive_seed(cfg.seed, self.name, f"{step}{idx}"))

        g, redraws = g_target, 0
        if cfg.conductance_levels:
            g = snap_to_levels(g, tile.g_off_s, tile.g_on_s, cfg.conductance_levels)
        if cfg.prog_noise_on:
            coeffs = (cfg.prog_noise_c0_rel, cfg.prog_noise_c1_rel, cfg.prog_noise_c2_rel)
            g, redraws = program_conductances(g, tile.g_off_s, tile.g_on_s, coeffs, gen("program"),
                                              cfg.program_verify_iterations, cfg.program_verify_tolerance,
                                              cfg.prog_noise_clip)
        stuck_on = stuck_off = torch.zeros(shape, dtype=torch.bool)
        if cfg.faults_on:
            stuck_on, stuck_off = draw_faults(shape, cfg.stuck_on_probability, cfg.stuck_off_probability,
                                              gen("faults"))
        factor = (draw_range_factors(shape, cfg.g_range_spread, gen("range"), work_dtype(g_target))
                  if cfg.g_range_spread > 0 else None)
        if cfg.faults_on or factor is not None:
            g = apply_faults_and_range(g, tile.g_off_s, tile.g_on_s, stuck_on, stuck_off, factor)
        stats = DeviceStats(cells=g.numel(), stuck_on=int(stuck_on.sum()), stuck_off=int(stuck_off.sum()),
                            tiles_all_stuck=tiles_all_stuck(stuck_on, stuck_off) if n_t else 0,
                            verify_redraws=redraws, tiles=n_t)
        if g_target.requires_grad and g is not g_target:  # the device model as a constant offset for autograd
            g = g_target + (g - g_target.detach())
        if stats.tiles_all_stuck:
            logger.warning("crossbar layer %s: %d of %d tiles have every device stuck", self.name or "?",
                           stats.tiles_all_stuck, n_t)
        return g, stats

    def device_stats(self) -> DeviceStats:
        """Faults of the current programming (counts of stuck devices and of tiles with every device stuck)
        and program-and-verify re-draws; programs the layer if it is not programmed yet."""
        prog = self._programmed
        if prog is None:
            prog = self._programmed_state(self.weight.device, self.weight.dtype)[0]
        assert prog.device_stats is not None
        return prog.device_stats

    def _read_noise_scale(self, g_s: torch.Tensor) -> torch.Tensor | None:
        """Per-device factor of the read-noise sigma (read_noise_g_exponent) of conductances g_s (the programmed
        ones, before drift: ``_Programmed.g_read_ref_s``), None for plain relative noise."""
        e = self.config.read_noise_g_exponent
        return None if e == 0.0 else read_noise_scale(g_s, self.mvm.tile.g_on_s, e)

    def _cache_key(self, device: torch.device, dtype: torch.dtype) -> tuple[Any, ...]:
        w = self.weight
        return (w._version, w.data_ptr(), str(device), dtype, id(self.mvm), self.config)

    def _bind_tiles(self, g_s: torch.Tensor, grid: tuple[int, int, int, int], noisy: bool = False,
                    g_ref_s: torch.Tensor | None = None) -> tuple[TileReader, BoundMVM | None]:
        """Bind conductances g_s [T, rows, cols] of grid (S, P, n_r, n_c) as one :data:`TileReader`,
        and the per-tile bound MVM when that is what the reader calls (else None).

        A :class:`dnn.mvm.SharedInputTileMVM` binds the S * P * n_c tiles of each row tile as one
        group (each input formed once per row tile); any other tile model gets the inputs repeated
        per tile through `bind`, or through `bind_noisy` when `noisy` (per-read noise drawn by a
        :class:`dnn.mvm.NoisyReadTileMVM`)."""
        mvm = self.mvm
        rows, cols = mvm.tile.rows, mvm.tile.cols
        s, p, n_r, n_c = grid
        if noisy:  # a read fluctuation, not a programmed state: not clipped to [g_off, g_on], kept positive
            floor = (READ_G_FLOOR_FRACTION * mvm.tile.g_off_s, math.inf)
            scale = self._read_noise_scale(g_s if g_ref_s is None else g_ref_s)
            sigma: Any = self.config.read_noise_sigma
            if scale is not None:  # a per-cell sigma [T, 1 (vectors), rows, cols]
                sigma = sigma * scale.to(torch.float64)[:, None]
            bound = mvm.bind_noisy(g_s, sigma, self._read_generator(g_s.device), floor)
        elif isinstance(mvm, SharedInputTileMVM):
            g = g_s.reshape(s, p, n_r, n_c, rows, cols).permute(2, 0, 1, 3, 4, 5).reshape(n_r, -1, rows, cols)
            shared = mvm.bind_shared(g, input_levels=dac_levels(self.config.input_bits))

            def read_shared(v: torch.Tensor) -> torch.Tensor:
                return shared(v).unflatten(1, (s, p, n_c)).permute(1, 2, 0, 3, 4, 5)

            return read_shared, None
        else:
            bound = mvm.bind(g_s)

        def read(v: torch.Tensor) -> torch.Tensor:
            bp = v.shape[1]
            v_all = v[None, None, :, None].expand(s, p, n_r, n_c, bp, rows).reshape(-1, bp, rows)
            return bound(v_all).reshape(s, p, n_r, n_c, bp, cols)

        return read, bound

    def _programmed_state(self, device: torch.device, dtype: torch.dtype) -> tuple[_Programmed, TileReader]:
        """Programmed conductances and the bound MVM of all tiles for this forward (cached when possible)."""
        cfg = self.config
        cacheable = not (torch.is_grad_enabled() and self.weight.requires_grad)
        key = self._cache_key(device, dtype) + (self._programming_index,)
        prog = self._programmed
        if not cacheable or prog is None or prog.key != key:
            prog = self._program(device, dtype, key)
            self._programmed = prog if cacheable else None
        if cfg.read_noise_on and cfg.read_noise_mode == "per_forward":
            g = apply_read_noise(prog.g_s, cfg.read_noise_sigma, self._read_generator(device),
                                 self._read_noise_scale(prog.g_read_ref_s))
            if cfg.clip_conductances:
                g = clip_conductance(g, self.mvm.tile.g_off_s, self.mvm.tile.g_on_s)
            return prog, self._bind_tiles(g, prog.grid)[0]
        if prog.read is None:
            prog.read, prog.bound = self._bind_tiles(prog.g_s, prog.grid, noisy=self._noise_in_tile_model,
                                                     g_ref_s=prog.g_read_ref_s)
        return prog, prog.read

    @property
    def _noise_in_tile_model(self) -> bool:
        """Per-read noise drawn by the tile model itself (:class:`dnn.mvm.NoisyReadTileMVM`)."""
        cfg = self.config
        return (cfg.read_noise_on and cfg.read_noise_mode == "per_read"
                and isinstance(self.mvm, NoisyReadTileMVM) and self.mvm.noisy_reads)

    def programmed_conductances(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The conductances programmed on this layer's tiles [T, rows, cols] (S), noise-free draw of
        this programming (drift applied): what the SPICE stage's from_file sampler reads."""
        return self._programmed_state(device, dtype)[0].g_s

    def begin_adc_calibration(self) -> None:
        """Watch the largest |column current| from now on (the ADC of this layer is bypassed meanwhile)."""
        self._adc_observed_a = 0.0

    def end_adc_calibration(self) -> float:
        """Stop watching; the largest |column current| seen since :meth:`begin_adc_calibration` (A)."""
        peak, self._adc_observed_a = self._adc_observed_a, None
        return float(peak or 0.0)

    def _prepare_mvm_device(self, device: torch.device) -> None:
        """A tile model that is an nn.Module (e.g. a surrogate) follows the input's device."""
        mvm = self.mvm
        if isinstance(mvm, nn.Module):
            t = next(iter(mvm.parameters()), None)
            t = next(iter(mvm.buffers()), None) if t is None else t
            if t is not None and t.device != device:
                mvm.to(device)
                self._programmed = None

    # ----------------------------------------------------------------- analog matmul
    def analog_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_features] -> [B, out_features] through DAC, crossbar tiles, ADC and shift-add."""
        self._prepare_mvm_device(x.device)
        prog, read = self._programmed_state(x.device, x.dtype)
        s, p, n_r, n_c = prog.grid
        per_row = s * p * n_c * n_r * max(self.mvm.tile.rows, self.mvm.tile.cols) * (2 if self._two_phase else 1)
        chunk = max(1, MAX_CHUNK_ELEMENTS // per_row)
        outs = [self._matmul_chunk(xc, prog, read) for xc in x.split(chunk)]
        y = outs[0] if len(outs) == 1 else torch.cat(outs)
        return y * (prog.s_w / self._delta_g)  # amperes -> levels x input units -> output units

    @property
    def _two_phase(self) -> bool:
        return self.config.input_polarity == "two_phase"

    def _matmul_chunk(self, x: torch.Tensor, prog: _Programmed, read: TileReader) -> torch.Tensor:
        cfg, mvm = self.config, self.mvm
        rows, cols = mvm.tile.rows, mvm.tile.cols
        s, p, n_r, n_c = prog.grid
        b = x.shape[0]
        v, x_per_volt = dac_quantize(tile_inputs(x, rows), cfg.input_bits, mvm.tile.v_read_max_v)  # [n_r, B, rows]
        two_reads = self._two_phase and bool((v < 0).any())  # post-ReLU inputs need one read only
        v_read = torch.cat([v.clamp_min(0.0), (-v).clamp_min(0.0)], 1) if two_reads else v
        if self.energy_meter is not None:
            self.energy_meter.record(self, v_read, prog.g_s, prog.grid, b)
        i = read(v_read)  # [S, P, n_r, n_c, B', cols]
        if cfg.read_noise_on and cfg.read_noise_mode == "per_read" and not self._noise_in_tile_model:
            bp = v_read.shape[1]
            v_all = v_read[None, None, :, None].expand(s, p, n_r, n_c, bp, rows).reshape(-1, bp, rows)
            i = i + self._per_read_noise(v_all, prog, i.reshape(-1, bp, cols)).reshape(s, p, n_r, n_c, bp, cols)
        if cfg.encoding == "differential":
            i = i[:, 0] - i[:, 1]  # G+ minus G- column currents
        else:
            i = i[:, 0, ..., :-1] - i[:, 0, ..., -1:]  # minus the reference column
        if self._adc_observed_a is not None:  # calibrate_adc is observing: no ADC on this pass
            self._adc_observed_a = max(self._adc_observed_a, float(i.detach().abs().max()))
        else:
            i = adc_quantize(i, cfg.adc_bits, self._adc_full_scale())  # [S, n_r, n_c, B', cols'], amperes
        if two_reads:
            i = i[..., :b, :] - i[..., b:, :]
        y = shift_add(i, cfg.bits_per_cell)  # = delta_g * sum_rows v * u, amperes
        if cfg.encoding == "offset":  # digital removal of the integer offset (DAC codes are known)
            y = y - (weight_offset(cfg.weight_bits) * self._delta_g) * v.sum(-1, keepdim=True)[:, None]
        y = y * x_per_volt[:, None]  # [n_r, n_c, B, cols']; x_per_volt differs per row tile and vector
        return untile_outputs(y, self.weight_matrix().shape[1])

    def _per_read_noise(self, v_all: torch.Tensor, prog: _Programmed, i_all: torch.Tensor) -> torch.Tensor:
        """Read noise of every read [T, B, cols] (A), an independent draw per vector, for row voltages
        v_all [T, B, rows] and noise-free column currents i_all [T, B, cols]; a constant for autograd.

        The effective transfer matrix (the tile's response to one row at a time) is computed once per
        programming (the cache key holds device and dtype). A tile model with ``noise_physics``
        (:class:`dnn.mvm.NoisePhysics`) or a :class:`dnn.mvm.LoadedTileMVM` that states its driver and sense
        resistances gets the noise of cells loaded by the array (:func:`dnn.noise.loaded_read_noise_currents`),
        any other model the unloaded approximation (:func:`dnn.noise.per_read_noise_currents`). With
        ``noise_physics`` the one-row responses and the line resistances come from the circuit's exact
        solve, else from the tile model itself."""
        mvm, sigma = self.mvm, self.config.read_noise_sigma
        with torch.no_grad():
            if prog.t_sq is None:
                transfer_at, lines = self._one_row_transfer(prog, v_all.device, v_all.dtype)
                v_max = mvm.tile.v_read_max_v
                t = transfer_at(v_max).to(v_all.dtype)  # A/V
                scale = self._read_noise_scale(prog.g_read_ref_s)
                prog.t_sq = t * t if scale is None else t * t * (scale * scale).to(t)
                if lines is not None:
                    prog.loaded = loaded_noise_maps(t, prog.g_s, *lines, chord_polynomial(transfer_at, v_max),
                                                    None if scale is None else scale * scale)
            generator = self._read_generator(v_all.device)
            if prog.loaded is not None:
                return loaded_read_noise_currents(v_all, i_all.detach(), prog.loaded, sigma, generator)
            return per_read_noise_currents(v_all, prog.t_sq, sigma, generator)

    def _one_row_transfer(self, prog: _Programmed, device: torch.device, dtype: torch.dtype
                          ) -> tuple[Callable[[float], torch.Tensor], tuple[float, float] | None]:
        """The programmed tiles' response to one row at a time driven at u volts, per volt, as a function
        of u ([T, rows, cols], A/V), and the (driver, sense) resistances of the loaded-cell noise model
        (None: the tile model cannot tell). From the circuit's exact solve when the tile model has
        ``noise_physics``, else from the tile model."""
        mvm, rows, n_t = self.mvm, self.mvm.tile.rows, prog.g_s.shape[0]
        physics: NoisePhysics | None = getattr(mvm, "noise_physics", None)
        if physics is not None:
            solution = physics.solver_fn(prog.g_s.detach().to(torch.float64))
            eye64 = torch.eye(rows, device=device, dtype=torch.float64).expand(n_t, rows, rows)
            return (lambda u: solution.currents(eye64 * u) / u), (physics.r_driver_ohm, physics.r_sense_ohm)
        if prog.bound is None:
            prog.bound = mvm.bind(prog.g_s)
        bound = prog.bound
        eye = torch.eye(rows, device=device, dtype=dtype).expand(n_t, rows, rows)
        lines = mvm.line_resistances_ohm() if isinstance(mvm, LoadedTileMVM) else None
        return (lambda u: bound(eye * u) / u), lines

    def _adc_full_scale(self) -> float:
        cfg, mvm = self.config, self.mvm
        if cfg.adc_range == "fixed":
            return adc_full_scale(mvm.tile.rows, mvm.tile.v_read_max_v, mvm.tile.g_off_s, mvm.tile.g_on_s, cfg.adc_range_fraction)
        if self.adc_full_scale_a is None:
            raise RuntimeError(f"crossbar layer {self.name or '?'}: adc_range 'calibrated' needs "
                               "dnn.layers.calibrate_adc(model, loader) after conversion")
        return self.adc_full_scale_a

    @property
    def _delta_g(self) -> float:
        """Conductance step of one device level, siemens."""
        return (self.mvm.tile.g_on_s - self.mvm.tile.g_off_s) / (2**self.config.bits_per_cell - 1)

    def extra_repr(self) -> str:
        c = self.config
        return (f"tiles={self.tile_count()} of {self.mvm.tile.rows}x{self.mvm.tile.cols}, weight_bits={c.weight_bits}, "
                f"bits_per_cell={c.bits_per_cell}, encoding={c.encoding}, input_bits={c.input_bits}, "
                f"adc_bits={c.adc_bits}, read_noise_sigma={c.read_noise_sigma}, t_drift_s={c.t_drift_s}")

    def __getstate__(self) -> dict[str, Any]:
        """Copies (deepcopy, pickling) drop the cache; generators are kept."""
        state = self.__dict__.copy()
        state["_programmed"] = None
        return state


def reads_are_random(model: nn.Module) -> bool:
    """Whether a forward of ``model`` draws new read noise (some crossbar layer has read noise on): then two
    forwards of the same input differ, and averaging passes averages draws."""
    return any(isinstance(m, CrossbarLayerBase) and m.config.read_noise_on for m in model.modules())


class CrossbarLinear(CrossbarLayerBase):
    """Linear layer computed on crossbar tiles: y = x W^T + b (bias digital)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, config: CrossbarConfig,
                 mvm: TileMVM, name: str = "") -> None:
        ref = nn.Linear(in_features, out_features, bias=bias)  # torch's default initialization
        super().__init__(ref.weight, ref.bias, config, mvm, name)
        self.in_features = in_features
        self.out_features = out_features

    @classmethod
    def from_float(cls, module: nn.Linear, config: CrossbarConfig, mvm: TileMVM, name: str = ""
                   ) -> CrossbarLinear:
        """Crossbar copy of a trained nn.Linear (weights copied, frozen)."""
        if not isinstance(module, nn.Linear):
            raise TypeError(f"expected nn.Linear, got {type(module).__name__}")
        layer = cls(module.in_features, module.out_features, module.bias is not None, config=config,
                    mvm=mvm, name=name)
        layer._copy_from(module)
        return layer

    def weight_matrix(self) -> torch.Tensor:
        return self.weight.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self.analog_matmul(x.reshape(-1, self.in_features)).reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias.to(y)


class CrossbarConv2d(CrossbarLayerBase):
    """Conv2d computed on crossbar tiles through im2col (groups = 1, zero padding; bias digital)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, bias: bool = True, *, config: CrossbarConfig,
                 mvm: TileMVM, name: str = "") -> None:
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias)
        super().__init__(ref.weight, ref.bias, config, mvm, name)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)

    @classmethod
    def from_float(cls, module: nn.Conv2d, config: CrossbarConfig, mvm: TileMVM, name: str = ""
                   ) -> CrossbarConv2d:
        """Crossbar copy of a trained nn.Conv2d (weights copied, frozen)."""
        if not isinstance(module, nn.Conv2d):
            raise TypeError(f"expected nn.Conv2d, got {type(module).__name__}")
        if module.groups != 1:
            raise ValueError(f"{name or 'Conv2d'}: groups={module.groups} is not supported (only 1); "
                             "exclude this layer to keep it digital")
        if module.padding_mode != "zeros" or isinstance(module.padding, str) and module.padding != "valid":
            raise ValueError(f"{name or 'Conv2d'}: padding={module.padding!r}, padding_mode="
                             f"{module.padding_mode!r} not supported (numeric zero padding only)")
        padding = (0, 0) if isinstance(module.padding, str) else module.padding
        layer = cls(module.in_channels, module.out_channels, module.kernel_size, module.stride, padding,
                    module.dilation, module.bias is not None, config=config, mvm=mvm, name=name)
        layer._copy_from(module)
        return layer

    def weight_matrix(self) -> torch.Tensor:
        return self.weight.reshape(self.out_channels, -1).t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        patches = unfold_conv_input(x, self.kernel_size, self.stride, self.padding, self.dilation)
        y = self.analog_matmul(patches)  # [N * L, out]
        y = y.reshape(n, h_out * w_out, self.out_channels).transpose(1, 2)
        y = y.reshape(n, self.out_channels, h_out, w_out)
        return y if self.bias is None else y + self.bias.to(y).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, " + super().extra_repr())


def model_device_stats(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per crossbar layer (qualified name), what the current programming did to its devices
    (``DeviceStats.to_dict``: cells, stuck_on, stuck_off, tiles, tiles_all_stuck, verify_redraws,
    working_cells); programs layers not yet programmed."""
    return {name: m.device_stats().to_dict() for name, m in model.named_modules()
            if isinstance(m, CrossbarLayerBase)}


def device_stats_per_seed(model: nn.Module, config: CrossbarConfig, mvm: TileMVM, seeds: list[int]
                          ) -> dict[str, Any]:
    """The device statistics of the programming each evaluation seed makes (the same seeded draws as the
    evaluation's conversion): ``per_seed`` {seed: {layer: counts}} and ``layers_without_working_cells``
    (layers with every device stuck for some seed, sorted): JSON for the evaluation result."""
    from .convert import convert_to_crossbar

    per_seed = {str(s): model_device_stats(convert_to_crossbar(model, config.replace(seed=int(s)), mvm))
                for s in seeds}
    dead = sorted({name for stats in per_seed.values() for name, c in stats.items() if c["working_cells"] == 0})
    for name in dead:
        logger.warning("crossbar layer %s has no working device (every device stuck) for some seed", name)
    return {"per_seed": per_seed, "layers_without_working_cells": dead}


def reprogram(model: nn.Module) -> nn.Module:
    """Call `reprogram` on every crossbar layer of `model` (new drift draw on the next forward)."""
    for m in model.modules():
        if isinstance(m, CrossbarLayerBase):
            m.reprogram()
    return model


@torch.no_grad()
def calibrate_adc(model: nn.Module, loader: Any, n_batches: int = 2, device: str | torch.device | None = None
                  ) -> nn.Module:
    """Set the ADC full scale of every crossbar layer with adc_range 'calibrated' to
    adc_range_fraction x the largest |column current| it sees while the first `n_batches` batches of
    `loader` run through the model (eval mode, ADCs of those layers bypassed during the pass: the
    trim happens before the ADC range exists). A deployment step on the programmed array, not a
    mitigation: it sees the array's parasitics, drift and read noise but changes no weight or BN."""
    layers = [m for m in model.modules() if isinstance(m, CrossbarLayerBase) and m.config.adc_range == "calibrated"]
    if not layers:
        return model
    was_training = model.training
    model.eval()
    for m in layers:
        m.begin_adc_calibration()
    try:
        for b, (x, _y) in enumerate(loader):
            if b >= n_batches:
                break
            model(x if device is None else x.to(device))
    finally:
        observed = {m: m.end_adc_calibration() for m in layers}
        model.train(was_training)
    for m, peak in observed.items():
        if not peak:
            raise RuntimeError(f"calibrate_adc: crossbar layer {m.name or '?'} saw no current (empty loader?)")
        m.adc_full_scale_a = m.config.adc_range_fraction * peak
    return model


__all__ = ["CrossbarLayerBase", "CrossbarLinear", "CrossbarConv2d", "reprogram", "calibrate_adc",
           "MAX_CHUNK_ELEMENTS"]
