"""Samplers of conductance matrices and input-voltage vectors.

Every conductance matrix ``k`` has its own random stream ``SeedSequence([seed, k])``, so a sample
is the same whichever shard computes it: sharding never changes the numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from spice.circuit import CircuitError, CircuitSpec
from spice.tilebank import load_tile_bank
from xbarchar.settings import SEED_EXPECTED, is_int, is_number, is_seed, reject_unknown
from xbarchar.yamlsafe import short_repr

SAMPLERS = ("uniform", "from_file", "dnn_like", "mixed")
_RANGES = ("w_scale_range", "v_zero_range", "v_scale_range")
MAX_CONDUCTANCE_MATRICES = 1_000_000
"""Most conductance matrices one dataset may ask for (the memory estimate of the workflow is finer)."""
MAX_VECTORS_PER_MATRIX = 100_000
NGSPICE_BYTES_PER_CELL = 25_000
"""Peak memory of one ngspice solve per array cell, bytes: 107 MB for 64x64, 398 MB for 128x128 and
1.59 GB for 256x256 resistive arrays (4 vectors, peak RSS of the process above its start)."""
DATASET_BYTES_PER_VALUE = 8
"""Bytes of one float64 value: a dataset's samples are held as a float64 rows x cols array each by the
per-sample surrogate inputs (conductances with every input vector)."""


def ngspice_bytes(spec: CircuitSpec) -> int:
    """Estimated peak memory of one ngspice solve of ``spec``'s array, bytes."""
    return spec.rows * spec.cols * NGSPICE_BYTES_PER_CELL


def dataset_bytes(spec: CircuitSpec, cfg: SamplingConfig) -> int:
    """Estimated memory of the dataset as a later stage holds it: samples x rows x cols float64, bytes."""
    return cfg.n_conductance * cfg.n_vectors * spec.rows * spec.cols * DATASET_BYTES_PER_VALUE


@dataclass(frozen=True)
class SamplingConfig:
    """How many samples to draw and from which distribution."""

    n_conductance: int = 8
    """Number of conductance matrices (one ngspice circuit each)."""
    n_vectors: int = 64
    """Input vectors per conductance matrix."""
    sampler: str = "uniform"
    """'uniform': G ~ U[g_off, g_on] per cell, V ~ U[v_min, v_max] per row;
    'from_file': G tiles and V vectors drawn from an .npz with arrays g_s [n, rows, cols] and
    v_v [m, rows] (e.g. quantized DNN weights and real layer activations);
    'dnn_like': what a DNN layer programs and reads, from the circuit alone (no model): one bit slice
    of differentially encoded quantized weights per matrix (see :func:`draw_dnn_like`) and sparse,
    DAC-quantized ReLU-like inputs;
    'mixed': each matrix is 'dnn_like' with probability ``mix_fraction``, else 'uniform' (the choice
    has its own stream per matrix, ``SeedSequence([seed, k, 2])``)."""
    v_zero_fraction: float = 0.0
    """Fraction of input rows set to 0 V (ReLU activations are sparse); 'uniform' and 'from_file'
    matrices only ('dnn_like' draws its sparsity per vector from ``v_zero_range``)."""
    g_levels: int = 0
    """Quantize conductances to this many evenly spaced levels (0 = continuous); 'uniform' and
    'from_file' matrices only ('dnn_like' conductances lie on 2^bits_per_cell levels)."""
    mix_fraction: float = 0.5
    """'mixed': probability that a matrix is drawn by 'dnn_like' (else 'uniform')."""
    weight_bits: int = 8
    """'dnn_like': bits of the signed integer weights (symmetric, |q| <= 2^(weight_bits-1) - 1)."""
    bits_per_cell: int = 4
    """'dnn_like': bits per device; device level d in [0, 2^bits_per_cell - 1] gives
    g = g_off + d (g_on - g_off) / (2^bits_per_cell - 1)."""
    w_scale_range: tuple[float, float] = (0.02, 0.5)
    """'dnn_like': per matrix, the Laplace scale of the weights as a fraction of the largest integer
    weight, drawn log-uniform in this range (small: sparse tiles near g_off; large: dense tiles,
    weights clipped at the largest level)."""
    pad_probability: float = 0.25
    """'dnn_like': probability that a matrix is an edge tile of a layer: a random number of its
    last rows and/or columns hold no weights (all at g_off)."""
    input_bits: int = 8
    """'dnn_like': DAC bits; inputs lie on the grid v_max * j / (2^(input_bits-1) - 1), j >= 0
    (0 = continuous)."""
    v_zero_range: tuple[float, float] = (0.0, 0.95)
    """'dnn_like': per vector, the fraction of rows at exactly 0 V, drawn uniform in this range."""
    v_scale_range: tuple[float, float] = (0.05, 1.0)
    """'dnn_like': per vector, the scale of the half-normal non-zero inputs as a fraction of
    v_read_max_v, drawn log-uniform in this range; inputs are clipped to [0, v_read_max_v]."""
    source_file: str = ""
    """The .npz for the 'from_file' sampler."""
    seed: int = 0
    n_shards: int = 1
    """Independent ngspice jobs the samples are split into (Snakemake runs them in parallel)."""
    solver: str = "auto"
    """'auto': superposition (rows+1 solves give the exact transfer matrix) when a per-matrix
    linearity check passes, else one DC sweep over all vectors; 'sweep': always the sweep."""
    linearity_rtol: float = 1e-6
    """Linearity check tolerance, relative to the largest check current."""

    def __post_init__(self) -> None:
        def bad(key: str, expected: str) -> CircuitError:
            return CircuitError(f"sampling.{key}: expected {expected}, got {short_repr(getattr(self, key))}")

        for key in _RANGES:  # JSON and YAML give lists: store tuples (hashable, frozen)
            value = getattr(self, key)
            if isinstance(value, list):
                object.__setattr__(self, key, tuple(value))

        if not is_int(self.n_conductance) or not 1 <= self.n_conductance <= MAX_CONDUCTANCE_MATRICES:
            raise bad("n_conductance", f"an integer in [1, {MAX_CONDUCTANCE_MATRICES}]")
        if not is_int(self.n_vectors) or not 1 <= self.n_vectors <= MAX_VECTORS_PER_MATRIX:
            raise bad("n_vectors", f"an integer in [1, {MAX_VECTORS_PER_MATRIX}]")
        if not isinstance(self.sampler, str) or self.sampler not in SAMPLERS:
            raise bad("sampler", f"one of {SAMPLERS}")
        if not is_number(self.v_zero_fraction) or not 0.0 <= self.v_zero_fraction < 1.0:
            raise bad("v_zero_fraction", "a number in [0, 1)")
        if not is_int(self.g_levels) or not (self.g_levels == 0 or 2 <= self.g_levels <= 2**16):
            raise bad("g_levels", "0 (continuous) or an integer in [2, 65536]")
        if not is_int(self.n_shards) or not 1 <= self.n_shards <= self.n_conductance:
            raise bad("n_shards", f"an integer in [1, n_conductance={self.n_conductance}]")
        if not is_seed(self.seed):
            raise bad("seed", SEED_EXPECTED)
        if not is_number(self.linearity_rtol) or self.linearity_rtol <= 0:
            raise bad("linearity_rtol", "a number > 0")
        if not isinstance(self.solver, str) or self.solver not in ("auto", "sweep"):
            raise bad("solver", "'auto' or 'sweep'")
        if not is_number(self.mix_fraction) or not 0.0 <= self.mix_fraction <= 1.0:
            raise bad("mix_fraction", "a number in [0, 1]")
        if not is_int(self.bits_per_cell) or not 1 <= self.bits_per_cell <= 8:
            raise bad("bits_per_cell", "an integer in [1, 8]")
        if not is_int(self.weight_bits) or not 2 <= self.weight_bits <= 16:
            raise bad("weight_bits", "an integer in [2, 16]")
        if not is_int(self.input_bits) or (self.input_bits != 0 and not 2 <= self.input_bits <= 16):
            raise bad("input_bits", "0 (continuous) or an integer in [2, 16]")
        if not is_number(self.pad_probability) or not 0.0 <= self.pad_probability <= 1.0:
            raise bad("pad_probability", "a number in [0, 1]")
        rules = {"w_scale_range": "0 < lo <= hi", "v_zero_range": "0 <= lo <= hi < 1", "v_scale_range": "0 < lo <= hi"}
        for key, rule in rules.items():
            value = getattr(self, key)
            ok = isinstance(value, tuple) and len(value) == 2 and all(is_number(x) for x in value)
            if ok:
                lo, hi = value
                ok = lo <= hi and (0.0 <= lo and hi < 1.0 if key == "v_zero_range" else lo > 0.0)
            if not ok:
                raise bad(key, f"a pair [lo, hi] with {rule}")
        if not isinstance(self.source_file, str):
            raise bad("source_file", "a path (a string)")
        if self.sampler == "from_file" and not self.source_file:
            raise bad("source_file", "a path to an .npz with g_s and v_v when sampler is 'from_file'")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SamplingConfig:
        """From a config slice or a JSON argument: a mapping of known keys (else :class:`CircuitError`)."""
        if d is not None and not isinstance(d, dict):
            raise CircuitError(f"sampling = {short_repr(d)}: expected a mapping of sampling settings")
        d = dict(d or {})
        try:
            reject_unknown(d, set(cls.__dataclass_fields__), "sampling")
        except ValueError as exc:
            raise CircuitError(str(exc)) from None
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def shard_indices(self, shard: int) -> np.ndarray:
        """Indices of the conductance matrices that shard ``shard`` computes."""
        if not 0 <= shard < self.n_shards:
            raise CircuitError(f"shard {shard} out of range [0, {self.n_shards})")
        return np.array_split(np.arange(self.n_conductance), self.n_shards)[shard]


DNN_SAMPLERS = ("dnn_like", "from_file")
"""Samplers whose matrices are what a DNN layer programs and reads (its tiles, or the circuit-only imitation)."""


def matrix_sampler(cfg: SamplingConfig, k: int) -> str:
    """The sampler that draws matrix ``k``: ``cfg.sampler``, with 'mixed' resolved to 'dnn_like' or 'uniform'
    from the matrix's own choice stream ``SeedSequence([seed, k, 2])``."""
    if cfg.sampler != "mixed":
        return cfg.sampler
    choice = np.random.default_rng(np.random.SeedSequence([cfg.seed, k, 2]))
    return "dnn_like" if choice.random() < cfg.mix_fraction else "uniform"


def draw(spec: CircuitSpec, cfg: SamplingConfig, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Conductances [rows, cols] (S) and input vectors [n_vectors, rows] (V) of sample ``k``."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, k]))
    sampler = matrix_sampler(cfg, k)
    if sampler == "dnn_like":
        return draw_dnn_like(spec, cfg, rng)
    if sampler == "uniform":
        g = rng.uniform(spec.g_off_s, spec.g_on_s, size=(spec.rows, spec.cols))
        v = rng.uniform(spec.v_read_min_v, spec.v_read_max_v, size=(cfg.n_vectors, spec.rows))
    else:
        g, v = _draw_from_file(spec, cfg, rng)
    if cfg.g_levels:
        step = (spec.g_on_s - spec.g_off_s) / (cfg.g_levels - 1)
        g = spec.g_off_s + np.round((g - spec.g_off_s) / step) * step
    if cfg.v_zero_fraction > 0:
        v = np.where(rng.random(v.shape) < cfg.v_zero_fraction, 0.0, v)
    return g, v


def draw_dnn_like(spec: CircuitSpec, cfg: SamplingConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One tile a DNN layer could program and inputs it could read, from the circuit alone.

    Conductances: integer weights ``q = min(round(|w|), q_max)``, ``w ~ Laplace(0, s q_max)`` with
    ``q_max = 2^(weight_bits-1) - 1`` and ``s`` log-uniform in ``w_scale_range``; differential
    encoding keeps the weights of one sign (each cell has that sign with a per-matrix probability
    ~ U[0.25, 0.75]; the others are 0 on this array); one bit slice of ``bits_per_cell`` bits, chosen
    uniformly, gives each cell's level (the least significant slice spreads over all levels, the
    higher ones pile up at g_off). With ``pad_probability`` the matrix is an edge tile whose last
    rows and/or columns hold no weights.

    Inputs: per vector, a fraction ~ U(v_zero_range) of the rows is exactly 0 V; the others are
    half-normal with a scale log-uniform in ``v_scale_range`` (times v_read_max_v), clipped to
    [0, v_read_max_v] and rounded to the DAC grid of ``input_bits`` bits.
    """
    rows, cols = spec.rows, spec.cols
    q_max = 2 ** (cfg.weight_bits - 1) - 1
    base = 2 ** cfg.bits_per_cell
    n_slices = math.ceil((cfg.weight_bits - 1) / cfg.bits_per_cell)
    lo, hi = cfg.w_scale_range
    scale = math.exp(rng.uniform(math.log(lo), math.log(hi))) * q_max
    q = np.minimum(np.round(np.abs(rng.laplace(0.0, scale, size=(rows, cols)))), q_max)
    q = np.where(rng.random((rows, cols)) < rng.uniform(0.25, 0.75), q, 0.0)
    level = np.floor(q / base ** int(rng.integers(n_slices))) % base
    if rng.random() < cfg.pad_probability:
        used_rows, used_cols = rows, cols
        kind = int(rng.integers(3))  # 0: rows, 1: columns, 2: both
        if kind != 1 and rows > 1:
            used_rows = int(rng.integers(1, rows))
        if kind != 0 and cols > 1:
            used_cols = int(rng.integers(1, cols))
        level[used_rows:, :] = 0.0
        level[:, used_cols:] = 0.0
    g = spec.g_off_s + level * ((spec.g_on_s - spec.g_off_s) / (base - 1))

    n = cfg.n_vectors
    v_max = spec.v_read_max_v
    z_lo, z_hi = cfg.v_zero_range
    zero = rng.random((n, rows)) < rng.uniform(z_lo, z_hi, size=(n, 1))
    s_lo, s_hi = cfg.v_scale_range
    v_scale = np.exp(rng.uniform(math.log(s_lo), math.log(s_hi), size=(n, 1))) * v_max
    v = np.minimum(np.abs(rng.standard_normal((n, rows))) * v_scale, v_max)
    if cfg.input_bits:
        step = v_max / (2 ** (cfg.input_bits - 1) - 1)
        v = np.minimum(np.round(v / step) * step, v_max)
    v = np.where(zero, 0.0, v)
    return g, np.clip(v, max(spec.v_read_min_v, 0.0), v_max)


def _draw_from_file(spec: CircuitSpec, cfg: SamplingConfig, rng: np.random.Generator):
    g_all, v_all = load_tile_bank(cfg.source_file, spec.rows, spec.cols)
    g = np.clip(g_all[rng.integers(len(g_all))], spec.g_off_s, spec.g_on_s)
    v = np.clip(v_all[rng.integers(len(v_all), size=cfg.n_vectors)], spec.v_read_min_v, spec.v_read_max_v)
    return g.astype(float), v.astype(float)
