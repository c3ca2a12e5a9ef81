"""Samplers of conductance matrices and input-voltage vectors.

Every conductance matrix ``k`` has its own random stream ``SeedSequence([seed, k])``, so a sample
is the same whichever shard computes it: sharding never changes the numbers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spice.circuit import CircuitError, CircuitSpec

SAMPLERS = ("uniform", "from_file")


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
    v_v [m, rows] (e.g. quantized DNN weights and real layer activations)."""
    v_zero_fraction: float = 0.0
    """Fraction of input rows set to 0 V (ReLU activations are sparse)."""
    g_levels: int = 0
    """Quantize conductances to this many evenly spaced levels (0 = continuous)."""
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
            return CircuitError(f"sampling.{key}: expected {expected}, got {getattr(self, key)!r}")

        if not isinstance(self.n_conductance, int) or self.n_conductance < 1:
            raise bad("n_conductance", "an integer >= 1")
        if not isinstance(self.n_vectors, int) or not 1 <= self.n_vectors <= 100000:
            raise bad("n_vectors", "an integer in [1, 100000]")
        if self.sampler not in SAMPLERS:
            raise bad("sampler", f"one of {SAMPLERS}")
        if not 0.0 <= self.v_zero_fraction < 1.0:
            raise bad("v_zero_fraction", "a number in [0, 1)")
        if not isinstance(self.g_levels, int) or self.g_levels < 0 or self.g_levels == 1:
            raise bad("g_levels", "0 (continuous) or an integer >= 2")
        if not isinstance(self.n_shards, int) or not 1 <= self.n_shards <= self.n_conductance:
            raise bad("n_shards", f"an integer in [1, n_conductance={self.n_conductance}]")
        if self.solver not in ("auto", "sweep"):
            raise bad("solver", "'auto' or 'sweep'")
        if self.sampler == "from_file" and not self.source_file:
            raise bad("source_file", "a path to an .npz with g_s and v_v when sampler is 'from_file'")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SamplingConfig:
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise CircuitError(f"sampling: unknown key(s) {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def shard_indices(self, shard: int) -> np.ndarray:
        """Indices of the conductance matrices that shard ``shard`` computes."""
        if not 0 <= shard < self.n_shards:
            raise CircuitError(f"shard {shard} out of range [0, {self.n_shards})")
        return np.array_split(np.arange(self.n_conductance), self.n_shards)[shard]


def draw(spec: CircuitSpec, cfg: SamplingConfig, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Conductances [rows, cols] (S) and input vectors [n_vectors, rows] (V) of sample ``k``."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, k]))
    if cfg.sampler == "uniform":
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


def _draw_from_file(spec: CircuitSpec, cfg: SamplingConfig, rng: np.random.Generator):
    path = Path(cfg.source_file)
    if not path.is_file():
        raise CircuitError(f"sampling.source_file: {path} does not exist; expected an .npz with g_s, v_v")
    with np.load(path) as data:
        if "g_s" not in data or "v_v" not in data:
            raise CircuitError(f"sampling.source_file {path}: expected arrays 'g_s' and 'v_v', has {list(data)}")
        g_all, v_all = data["g_s"], data["v_v"]
    if g_all.ndim != 3 or g_all.shape[1:] != (spec.rows, spec.cols) or v_all.ndim != 2 or v_all.shape[1] != spec.rows:
        raise CircuitError(
            f"sampling.source_file {path}: g_s {g_all.shape} / v_v {v_all.shape} do not fit a "
            f"{spec.rows}x{spec.cols} array (expected [n, {spec.rows}, {spec.cols}] and [m, {spec.rows}])"
        )
    g = np.clip(g_all[rng.integers(len(g_all))], spec.g_off_s, spec.g_on_s)
    v = np.clip(v_all[rng.integers(len(v_all), size=cfg.n_vectors)], spec.v_read_min_v, spec.v_read_max_v)
    return g.astype(float), v.astype(float)
