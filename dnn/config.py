"""Crossbar-mapping configuration and device presets (frozen dataclasses, validated in one place).

`CrossbarConfig` says *how* a DNN layer is put on crossbar tiles (bits, encoding, converters, noise,
drift). The physical tile (size, conductance range, read voltage) is not here: it belongs to the
`TileMVM` (see `dnn.mvm`), because the surrogate of a circuit fixes it. `DevicePreset` bundles the
numbers of a memory technology (conductance range, drift) with the source of every value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from xbarchar.settings import SEED_EXPECTED, is_seed
from xbarchar.yamlsafe import short_repr

ENCODINGS = ("differential", "offset")
INPUT_POLARITIES = ("signed", "two_phase")
ADC_RANGE_MODES = ("fixed", "calibrated")
READ_NOISE_MODES = ("per_forward", "per_read")
ANALOG_LAYERS = ("conv", "all")
PROG_CLIPS = ("range", "nonnegative")  # dnn/device.py PROG_CLIPS
NU_LAWS = ("linear", "aihwkit_pcm")  # dnn/device.py NU_LAWS
CONDUCTANCE_LEVELS_MAX = 65536
G_RANGE_SPREAD_MAX = 0.2
"""Largest device-to-device range spread: at 0.2 a device's range factor 1 + 0.2 N(0, 1) is negative only
beyond 5 sigma (fewer than 3 in 10^7 devices); above it the spread would give negative conductances."""


@dataclass(frozen=True)
class CrossbarConfig:
    """How layers are mapped onto crossbar tiles.

    Weights: symmetric per-layer quantization to `weight_bits` signed levels
    (q in [-(2^(b-1)-1), 2^(b-1)-1]), split into slices of `bits_per_cell`-bit cells.
    Inputs: per-tile, per-vector abs-max scaling onto a `input_bits` DAC in [-v_max, v_max].
    Outputs: one `adc_bits` ADC per (signed) column current, full scale fixed from the ideal tile.
    """

    weight_bits: int = 8
    """Bits of the signed integer weight (8 -> q in [-127, 127])."""
    bits_per_cell: int = 4
    """Bits stored per device; slices = ceil(magnitude bits / bits_per_cell)."""
    encoding: str = "differential"
    """'differential': G+ / G- pair per weight; 'offset': one device per weight, level = q + offset,
    a reference column at g_min per tile and digital removal of the integer offset."""
    input_bits: int = 8
    """Signed DAC resolution in bits (2^(b-1)-1 levels per polarity); 0 = no input quantization."""
    input_polarity: str = "two_phase"
    """'two_phase': a positive and a negative read with unipolar voltages in [0, v_max], digitized
    separately and subtracted digitally; the negative read is skipped when no input is negative (e.g.
    after ReLU), and both reads of one forward see the same read-noise draw. 'signed': bipolar row
    voltages in one read (only for tile models that accept negative voltages). Default two_phase because
    SPICE data and surrogates cover [v_read_min, v_max] with v_read_min = 0 by default."""
    adc_bits: int = 8
    """Signed ADC resolution in bits; 0 = no ADC (ideal readout)."""
    adc_range: str = "fixed"
    """'fixed': full scale = adc_range_fraction * rows * v_max * (g_max - g_min), the largest ideal
    signed column current of one tile; 'calibrated': full scale = adc_range_fraction * the largest
    |column current| of the layer while calibration data runs through the programmed array once
    (`dnn.layers.calibrate_adc`), as an ADC range trimmed on the chip itself."""
    adc_range_fraction: float = 1.0
    """Scale of the ADC full scale relative to its reference (the ideal maximum, or the calibration
    maximum), dimensionless, > 0."""
    analog_layers: str = "conv"
    """'conv': only Conv2d layers analog (Paper 1 setting); 'all': Conv2d and Linear."""
    exclude: tuple[str, ...] = field(default_factory=tuple)
    """Qualified module names kept digital."""
    read_noise_sigma: float = 0.0
    """Relative Gaussian read noise, g * (1 + sigma * N(0, 1)), 0 = off; how often it is drawn: see
    `read_noise_mode`."""
    read_noise_mode: str = "per_read"
    """'per_forward': one draw of every conductance per layer forward, shared by every input vector of the
    batch. 'per_read': every input vector reads its own draw; each cell's current contribution v_i T_ij
    gets its own relative Gaussian error, so column j's noise is N(0, sigma^2 sum_i (v_i T_ij)^2), with
    T the tile's effective transfer matrix (its response to one row at a time, A/V; G for the ideal
    tile)."""
    t_drift_s: float = 0.0
    """Time since programming at which the array is read, seconds; 0 = no drift."""
    t0_s: float = 1.0
    """Drift reference time t0 in G(t) = G0 * (t / t0)^(-nu), seconds."""
    drift_nu_mean: float = 0.0
    """Mean drift exponent nu (dimensionless)."""
    drift_nu_std: float = 0.0
    """Device-to-device std of nu, drawn once per programming (clamped at nu >= 0)."""
    drift_nu_slope: float = 0.0
    """Slope of the mean drift exponent over the normalized target conductance: the mean of a device's nu
    is drift_nu_mean + drift_nu_slope * g / g_on (dimensionless; 0 = one mean for every conductance)."""
    drift_nu_law: str = "linear"
    """'linear': nu ~ N(drift_nu_mean + drift_nu_slope g / g_on, drift_nu_std), clamped at 0; 'aihwkit_pcm':
    aihwkit's clamped log law of PCMLikeNoiseModel (dnn/device.py aihwkit_pcm_nu; drift_nu_mean, _std and
    _slope are then unused)."""
    conductance_levels: int = 0
    """Finite conductance levels: each target conductance is snapped to the nearest of this many evenly
    spaced levels in [g_off, g_on] before it is programmed (0 = continuous)."""
    prog_noise_c0_rel: float = 0.0
    """Programming noise sigma_prog(g) = g_on (c0 + c1 x + c2 x^2), x = g / g_on: constant term, in units
    of g_on (0 with c1 = c2 = 0: programmed = target)."""
    prog_noise_c1_rel: float = 0.0
    """Linear term of sigma_prog(g), in units of g_on."""
    prog_noise_c2_rel: float = 0.0
    """Quadratic term of sigma_prog(g), in units of g_on."""
    prog_noise_clip: str = "range"
    """Where a programmed conductance is clipped: 'range' = [g_off, g_on]; 'nonnegative' = only at 0, as
    aihwkit's PCMLikeNoiseModel (a device may land below g_off or above g_on)."""
    program_verify_iterations: int = 0
    """Program-and-verify: up to this many re-draws of devices whose programming error exceeds
    program_verify_tolerance (0 = program once)."""
    program_verify_tolerance: float = 0.02
    """Largest accepted |programmed - target| in program-and-verify, relative to g_on - g_off."""
    stuck_on_probability: float = 0.0
    """Probability that a device is stuck at its ON conductance (placement seeded per layer and programming)."""
    stuck_off_probability: float = 0.0
    """Probability that a device is stuck at its OFF conductance."""
    g_range_spread: float = 0.0
    """Device-to-device relative std of the reachable range: device k reaches [f_k g_off, f_k g_on],
    f_k = 1 + g_range_spread N(0, 1) (kept >= 0.05); programmed conductances are clipped per device."""
    read_noise_g_exponent: float = 0.0
    """Conductance dependence of read noise: a read's std is read_noise_sigma * g * (g_prog / g_on)^exponent,
    g the conductance read and g_prog the programmed one before drift (aihwkit's 1/f law follows g_prog)
    (0 = relative noise; -0.5 = std growing as sqrt(g))."""
    clip_conductances: bool = True
    """Clip drifted and per-forward noisy conductances to [g_min, g_max] (the range a surrogate was trained
    on). Per-read noise is a read fluctuation and is never clipped: the modelled noise currents are
    Gaussian, and exact mode's redraws are only kept positive (``dnn.noise.READ_G_FLOOR_FRACTION``)."""
    seed: int = 0
    """Seed for noise and drift draws (each layer derives its own stream from it and its name)."""

    def __post_init__(self) -> None:
        if isinstance(self.exclude, list):  # accept lists from JSON/YAML, store a hashable tuple
            object.__setattr__(self, "exclude", tuple(self.exclude))
        _validate(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CrossbarConfig:
        """Build from a plain dict; unknown keys are an error that lists the valid ones."""
        if not isinstance(d, dict):
            raise ValueError(f"CrossbarConfig settings = {short_repr(d)}: expected a mapping")
        return cls().replace(**d)

    def replace(self, **changes: Any) -> CrossbarConfig:
        """Copy with `changes` applied (validated; unknown keys rejected)."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - valid)
        if unknown:
            raise ValueError(f"unknown CrossbarConfig key(s) {short_repr(unknown)}; valid keys: {sorted(valid)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serializable)."""
        d = dataclasses.asdict(self)
        d["exclude"] = list(self.exclude)
        return d

    @property
    def n_slices(self) -> int:
        """Number of bit slices (devices per weight and polarity)."""
        magnitude_bits = self.weight_bits - 1 if self.encoding == "differential" else self.weight_bits
        return math.ceil(magnitude_bits / self.bits_per_cell)

    @property
    def drift_on(self) -> bool:
        return self.t_drift_s > 0.0

    @property
    def read_noise_on(self) -> bool:
        return self.read_noise_sigma > 0.0

    @property
    def prog_noise_on(self) -> bool:
        return (self.prog_noise_c0_rel, self.prog_noise_c1_rel, self.prog_noise_c2_rel) != (0.0, 0.0, 0.0)

    @property
    def faults_on(self) -> bool:
        return self.stuck_on_probability > 0.0 or self.stuck_off_probability > 0.0


def _check(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"CrossbarConfig.{key} = {short_repr(value)}: expected {expected}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _validate(c: CrossbarConfig) -> None:
    """All range checks of CrossbarConfig; each error names the key and the expected range."""
    _check(_is_int(c.weight_bits) and 2 <= c.weight_bits <= 16, "weight_bits", "an int in [2, 16]",
           c.weight_bits)
    _check(_is_int(c.bits_per_cell) and 1 <= c.bits_per_cell <= min(8, c.weight_bits), "bits_per_cell",
           f"an int in [1, min(8, weight_bits={c.weight_bits})]", c.bits_per_cell)
    _check(c.encoding in ENCODINGS, "encoding", f"one of {ENCODINGS}", c.encoding)
    _check(_is_int(c.input_bits) and (c.input_bits == 0 or 2 <= c.input_bits <= 16), "input_bits",
           "0 (off) or an int in [2, 16]", c.input_bits)
    _check(c.input_polarity in INPUT_POLARITIES, "input_polarity", f"one of {INPUT_POLARITIES}",
           c.input_polarity)
    _check(_is_int(c.adc_bits) and (c.adc_bits == 0 or 2 <= c.adc_bits <= 16), "adc_bits",
           "0 (off) or an int in [2, 16]", c.adc_bits)
    _check(c.adc_range in ADC_RANGE_MODES, "adc_range", f"one of {ADC_RANGE_MODES}", c.adc_range)
    _check(_is_num(c.adc_range_fraction) and 0.0 < c.adc_range_fraction <= 10.0, "adc_range_fraction",
           "a number in (0, 10]", c.adc_range_fraction)
    _check(c.analog_layers in ANALOG_LAYERS, "analog_layers", f"one of {ANALOG_LAYERS}", c.analog_layers)
    _check(isinstance(c.exclude, tuple) and all(isinstance(n, str) for n in c.exclude), "exclude",
           "a list of module names (str)", c.exclude)
    _check(_is_num(c.read_noise_sigma) and 0.0 <= c.read_noise_sigma <= 1.0, "read_noise_sigma",
           "a number in [0, 1]", c.read_noise_sigma)
    _check(c.read_noise_mode in READ_NOISE_MODES, "read_noise_mode", f"one of {READ_NOISE_MODES}",
           c.read_noise_mode)
    _check(_is_num(c.t0_s) and c.t0_s > 0.0, "t0_s", "a number > 0 (seconds)", c.t0_s)
    _check(_is_num(c.t_drift_s) and (c.t_drift_s == 0.0 or c.t_drift_s >= c.t0_s), "t_drift_s",
           f"0 (off) or a number >= t0_s = {c.t0_s} (seconds)", c.t_drift_s)
    _check(_is_num(c.drift_nu_mean) and 0.0 <= c.drift_nu_mean <= 1.0, "drift_nu_mean",
           "a number in [0, 1]", c.drift_nu_mean)
    _check(_is_num(c.drift_nu_std) and 0.0 <= c.drift_nu_std <= 1.0, "drift_nu_std",
           "a number in [0, 1]", c.drift_nu_std)
    _check(_is_num(c.drift_nu_slope) and -1.0 <= c.drift_nu_slope <= 1.0, "drift_nu_slope",
           "a number in [-1, 1]", c.drift_nu_slope)
    for key in ("prog_noise_c0_rel", "prog_noise_c1_rel", "prog_noise_c2_rel"):
        _check(_is_num(getattr(c, key)) and -1.0 <= getattr(c, key) <= 1.0, key,
               "a number in [-1, 1] (units of g_on)", getattr(c, key))
    _check(_is_int(c.program_verify_iterations) and 0 <= c.program_verify_iterations <= 100,
           "program_verify_iterations", "an int in [0, 100]", c.program_verify_iterations)
    _check(_is_num(c.program_verify_tolerance) and 0.0 < c.program_verify_tolerance <= 1.0,
           "program_verify_tolerance", "a number in (0, 1] (relative to g_on - g_off)", c.program_verify_tolerance)
    for key in ("stuck_on_probability", "stuck_off_probability"):
        _check(_is_num(getattr(c, key)) and 0.0 <= getattr(c, key) <= 1.0, key, "a probability in [0, 1]",
               getattr(c, key))
    _check(c.stuck_on_probability + c.stuck_off_probability <= 1.0, "stuck_off_probability",
           f"stuck_on_probability + stuck_off_probability <= 1 (stuck_on_probability = {c.stuck_on_probability})",
           c.stuck_off_probability)
    _check(_is_num(c.g_range_spread) and 0.0 <= c.g_range_spread <= G_RANGE_SPREAD_MAX, "g_range_spread",
           f"a number in [0, {G_RANGE_SPREAD_MAX}] (relative std; a larger spread makes some devices' "
           "conductances negative)", c.g_range_spread)
    poly = (c.prog_noise_c0_rel, c.prog_noise_c1_rel, c.prog_noise_c2_rel)
    _check(all(_is_num(v) for v in poly) and _poly_min_01(*poly) >= 0.0, "prog_noise_c0_rel",
           "coefficients with sigma_prog = c0 + c1 x + c2 x^2 >= 0 for every x = g / g_on in [0, 1] "
           f"(prog_noise_c1_rel = {c.prog_noise_c1_rel}, prog_noise_c2_rel = {c.prog_noise_c2_rel})",
           c.prog_noise_c0_rel)
    _check(c.prog_noise_clip in PROG_CLIPS, "prog_noise_clip", f"one of {PROG_CLIPS}", c.prog_noise_clip)
    _check(c.drift_nu_law in NU_LAWS, "drift_nu_law", f"one of {NU_LAWS}", c.drift_nu_law)
    _check(_is_int(c.conductance_levels) and (c.conductance_levels == 0
                                              or 2 <= c.conductance_levels <= CONDUCTANCE_LEVELS_MAX),
           "conductance_levels", f"0 (continuous) or an int in [2, {CONDUCTANCE_LEVELS_MAX}]", c.conductance_levels)
    _check(_is_num(c.read_noise_g_exponent) and -2.0 <= c.read_noise_g_exponent <= 2.0, "read_noise_g_exponent",
           "a number in [-2, 2]", c.read_noise_g_exponent)
    _check(isinstance(c.clip_conductances, bool), "clip_conductances", "a bool", c.clip_conductances)
    _check(is_seed(c.seed), "seed", SEED_EXPECTED, c.seed)


def _poly_min_01(c0: float, c1: float, c2: float) -> float:
    """Smallest value of c0 + c1 x + c2 x^2 over x in [0, 1]."""
    xs = [0.0, 1.0] + ([-c1 / (2.0 * c2)] if c2 > 0.0 and 0.0 < -c1 / (2.0 * c2) < 1.0 else [])
    return min(c0 + c1 * x + c2 * x * x for x in xs)


@dataclass(frozen=True)
class DevicePreset:
    """Numbers of one memory technology, each traceable to a source (see `source`)."""

    name: str
    g_on_s: float
    """Highest programmable conductance (ON state), siemens."""
    on_off_ratio: float
    """g_max / g_min (dimensionless)."""
    drift_nu_mean: float = 0.0
    drift_nu_std: float = 0.0
    t0_s: float = 1.0
    """Reference time of the drift law, seconds."""
    drift_nu_slope: float = 0.0
    """Slope of the mean nu over g / g_on (CrossbarConfig.drift_nu_slope)."""
    prog_noise_rel: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Programming-noise coefficients (c0, c1, c2) in units of g_on (CrossbarConfig.prog_noise_c*_rel)."""
    extra: tuple[tuple[str, Any], ...] = ()
    """Further CrossbarConfig keys the source gives numbers for, as (key, value) pairs."""
    source: str = ""

    @property
    def g_off_s(self) -> float:
        """Lowest programmable conductance (OFF state), siemens."""
        return self.g_on_s / self.on_off_ratio

    def drift_config(self, t_drift_s: float = 0.0) -> dict[str, Any]:
        """The CrossbarConfig keys this preset sets (pass to `CrossbarConfig.replace`)."""
        return {"drift_nu_mean": self.drift_nu_mean, "drift_nu_std": self.drift_nu_std,
                "t0_s": self.t0_s, "t_drift_s": t_drift_s}

    def device_config(self, t_drift_s: float = 0.0) -> dict[str, Any]:
        """Every CrossbarConfig key this preset sets: the drift law with its nu(g) slope and the
        programming noise (pass to `CrossbarConfig.replace`)."""
        c0, c1, c2 = self.prog_noise_rel
        return {**self.drift_config(t_drift_s), "drift_nu_slope": self.drift_nu_slope,
                "prog_noise_c0_rel": c0, "prog_noise_c1_rel": c1, "prog_noise_c2_rel": c2, **dict(self.extra)}


DEVICE_PRESETS: dict[str, DevicePreset] = {
    "rram": DevicePreset(
        name="rram",
        g_on_s=1.0 / 20e3,  # R_on ~ 20 kOhm: Paper 1 (Bhattacharjee et al. 2023, arXiv 2305.18416)
        on_off_ratio=10.0,  # ON/OFF 10: Paper 1
        drift_nu_mean=0.0,  # RRAM conductance drift is usually neglected at room temperature
        drift_nu_std=0.0,  # (typical literature assumption, not a measured value)
        source="Paper 1 = Bhattacharjee et al. 2023, arXiv 2305.18416 (R_on 20 kOhm, ON/OFF 10)",
    ),
    "pcm_40": DevicePreset(
        name="pcm_40",
        g_on_s=25e-6,  # 25 uS: g_max of aihwkit's PCMLikeNoiseModel (Joshi et al., Nat. Commun. 2020)
        on_off_ratio=40.0,  # typical PCM ON/OFF (literature range ~10-100); a chosen variant
        drift_nu_mean=0.05,  # aihwkit PCM preset: mean nu clamped to [0.049, 0.1]; ~0.05 near g_max
        drift_nu_std=0.02,  # aihwkit PCM preset: std of nu in [0.008, 0.045]; mid-range value chosen
        t0_s=20.0,  # t_0 = 20 s in aihwkit's PCMLikeNoiseModel
        source="Joshi et al., Nat. Commun. 11, 2473 (2020); aihwkit PCMLikeNoiseModel (g_max 25 uS, "
               "t0 20 s, nu ~0.05 with device spread); ON/OFF 40 is a typical literature value",
    ),
    "pcm_80": DevicePreset(
        name="pcm_80",
        g_on_s=25e-6,  # as pcm_40
        on_off_ratio=80.0,  # typical PCM ON/OFF (literature range ~10-100); a chosen variant
        drift_nu_mean=0.05,
        drift_nu_std=0.02,
        t0_s=20.0,
        source="as pcm_40 with ON/OFF 80 (typical literature value)",
    ),
    "aihwkit_pcm": DevicePreset(
        name="aihwkit_pcm",
        g_on_s=25e-6,  # g_max = 25 uS of aihwkit's PCMLikeNoiseModel (Joshi et al., Nat. Commun. 2020)
        on_off_ratio=40.0,  # aihwkit has no g_min (targets down to 0); ON/OFF 40 as pcm_40, a chosen value
        # aihwkit PCMLikeNoiseModel.generate_drift_coefficients, x = g_target / g_max:
        #   mu_nu = clamp(-0.0155 ln x + 0.0244, 0.049, 0.1), sig_nu = clamp(-0.0125 ln x - 0.0059, 0.008, 0.045).
        # Here: the least-squares line of mu_nu over x uniform in [1/40, 1] (mu_nu 0.082 at x = 1/40, 0.049
        # for x >= 0.25): mu_nu(x) = 0.0568 - 0.0112 x; one std, the mean of sig_nu over the same range.
        drift_nu_mean=0.0568,
        drift_nu_slope=-0.0112,
        drift_nu_std=0.0111,
        t0_s=20.0,  # t_0 = 20 s in aihwkit's PCMLikeNoiseModel
        # aihwkit PCMLikeNoiseModel prog_coeff = [0.26348, 1.9650, -1.1731] uS for x = g_target / g_max,
        # g_max = 25 uS: sigma_prog = c0 + c1 x + c2 x^2 (uS); divided by 25 uS for units of g_on.
        prog_noise_rel=(0.26348 / 25.0, 1.9650 / 25.0, -1.1731 / 25.0),
        extra=(
            # aihwkit's own nu(g) law with its clamps (dnn/device.py aihwkit_pcm_nu); the linear fit above
            # stays for drift_nu_law: linear
            ("drift_nu_law", "aihwkit_pcm"),
            # aihwkit clamps a programmed conductance at 0 only (g_prog.clamp_(min=0.0)), not to the range
            ("prog_noise_clip", "nonnegative"),
            # aihwkit's 1/f read noise: relative std 0.0088 (g / g_max)^-0.65 sqrt(ln((t + t_read) / (2 t_read)));
            # the exponent here; read_noise_sigma (off by default) = dnn/device.py aihwkit_read_noise_sigma(t)
            ("read_noise_g_exponent", -0.65),
        ),
        source="aihwkit 1.1.0 PCMLikeNoiseModel, src/aihwkit/inference/noise/pcm.py (Joshi et al., Nat. "
               "Commun. 11, 2473 (2020)): g_max 25 uS, prog_coeff [0.26348, 1.9650, -1.1731] uS, clamp at 0, "
               "nu(g) clamped log law, t0 20 s, read noise (g/g_max)^-0.65; ON/OFF 40 chosen",
    ),
    "pcm_joshi": DevicePreset(
        name="pcm_joshi",
        g_on_s=25e-6,  # CrossSim PCM_Joshi: "SUGGESTED ON/OFF RATIO : 100 (0.25 to 25 uS)", Gmax <= 25 uS
        on_off_ratio=100.0,
        # CrossSim simulator/devices/custom/PCM_Joshi.py, quadratic fit to Fig. 3(b) of Joshi et al. 2020:
        #   sigma_G = max(A G^2 + B G + C, 0) uS, G in uS, A = -0.00178767, B = 0.07585724, C = 0.28638599.
        # With x = G / 25 uS, in units of g_on = 25 uS: c0 = C / 25, c1 = B, c2 = A * 25.
        prog_noise_rel=(0.28638599 / 25.0, 0.07585724, -0.00178767 * 25.0),
        source="CrossSim PCM_Joshi (simulator/devices/custom/PCM_Joshi.py; Joshi et al., Nat. Commun. 11, "
               "2473 (2020), Fig. 3(b)): sigma_G = -0.00178767 G^2 + 0.07585724 G + 0.28638599 uS, "
               "0.25-25 uS (ON/OFF 100); no drift (CrossSim models none for it)",
    ),
    "rram_milo": DevicePreset(
        name="rram_milo",
        g_on_s=225e-6,  # CrossSim RRAM_Milo: Gmax = 225 uS, "SUGGESTED ON/OFF RATIO : 4.5 (50 to 225 uS)"
        on_off_ratio=4.5,
        # CrossSim simulator/devices/custom/RRAM_Milo.py, linear fit to Fig. 4 of Milo et al., IRPS 2021
        # (IGVVA-100 algorithm): sigma_G = max(A G + B, 0) uS, A = -0.009107, B = 4.782321, G in uS.
        # With x = G / 225 uS, in units of g_on = 225 uS: c0 = B / 225, c1 = A, c2 = 0.
        prog_noise_rel=(4.782321 / 225.0, -0.009107, 0.0),
        source="CrossSim RRAM_Milo (simulator/devices/custom/RRAM_Milo.py; Milo et al., IRPS 2021, Fig. 4): "
               "sigma_G = -0.009107 G + 4.782321 uS, 50-225 uS (ON/OFF 4.5); no drift (CrossSim models none)",
    ),
    "fefet": DevicePreset(
        name="fefet",
        g_on_s=1.0 / 20e3,  # no single source: chosen equal to the RRAM read-current scale
        on_off_ratio=45.0,  # ~45x with 32 levels reported for HfO2 FeFET synapses (Jerry et al.,
        # IEDM 2017); quoted from memory of the paper: a typical literature value, verify before citing
        drift_nu_mean=0.0,  # FeFET retention loss is not a power-law drift; neglected here
        drift_nu_std=0.0,
        source="typical literature values (ON/OFF ~45: Jerry et al., IEDM 2017); g_max chosen",
    ),
}


def get_device_preset(name: str) -> DevicePreset:
    """Preset by name; the error lists the valid names."""
    try:
        return DEVICE_PRESETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown device preset {name!r}; valid: {sorted(DEVICE_PRESETS)}") from None
