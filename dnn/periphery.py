"""The periphery around a crossbar tile: DAC, ADC, sense amplifier and shift-and-add (torch-free).

A documented cost model in which every number cites its source. What it charges, per read of one
physical tile (one input vector, one input phase):

- **DAC**: one conversion per driven row. A k-bit DAC costs ``dac_energy_1bit_j * 2^(k - 1)``: the
  resolution scaling of the ISAAC DAC in hwcomponents-library (``pow_base(2)`` from its 1-bit reference).
  With ``input_polarity: two_phase`` each phase drives the unipolar magnitude (``input_bits - 1`` bits),
  with ``signed`` one bipolar read (``input_bits`` bits).
- **ADC**: one conversion per output column signal (after the analog G+/G- or reference-column
  subtraction). ``adc_model: walden``: ``E = FoM_W * 2^bits`` (ENOB taken equal to the configured bits);
  ``adc_model: schreier``: ``E = P / f_s = 0.5 * 10^((SNDR - FoM_S(f_s)) / 10)`` with the ideal
  ``SNDR = 6.02 bits + 1.76 dB`` and the survey envelope ``FoM_S(f_s) = FoM_S,asymptote - 10 log10(sqrt(1 +
  (f_s / f_corner)^2))`` (B. Murmann, "ADC Performance Survey", github.com/bmurmann/ADC-survey,
  ``plots/foms_plot.ipynb``: the mean of the five best FoM_S,hf and the rate where the envelope bends).
- **Sense** (TIA or sample-and-hold): one sample per converted column signal, ``sense_energy_j``.
- **Shift-and-add**: one digital add per converted value (slices, row tiles and input phases are merged
  into one accumulator), ``shift_add_energy_j``.

Latency of one read: the read pulse ``t_read_s`` (a circuit setting, :class:`spice.tile.Tile`) plus the
conversions of one ADC, ``min(columns_per_adc, columns) / adc_sample_rate_hz`` (the ADC is shared by
``columns_per_adc`` columns and converts them one after another; not overlapped with the next read).
DAC settling and shift-and-add are taken as hidden under the read and the conversions.

Every parameter is configurable: the workflow's ``evaluation.energy`` (:class:`EnergySettings`) names a
preset and overrides any of its fields.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from xbarchar.settings import check, is_int, is_number

ADC_MODELS = ("walden", "schreier")
"""How the ADC energy per conversion follows from a survey figure of merit (see the module docstring)."""

SNDR_IDEAL_OFFSET_DB = 1.76
"""SNDR of an ideal N-bit quantizer with a full-scale sine: 6.02 N + 1.76 dB."""
SNDR_DB_PER_BIT = 6.02


@dataclass(frozen=True)
class PeripheryModel:
    """Energy and time of the converters and digital post-processing around one tile. Units in the names."""

    adc_model: str
    """'walden' or 'schreier' (:data:`ADC_MODELS`)."""
    adc_fom_walden_j: float
    """Walden figure of merit P / (f_s 2^ENOB), joules per conversion step ('walden')."""
    adc_fom_schreier_db: float
    """Schreier figure of merit SNDR + 10 log10(f_s / (2 P)) at low rates, dB ('schreier')."""
    adc_fom_corner_hz: float
    """Sample rate above which the Schreier envelope falls by 10 dB per decade ('schreier'), Hz."""
    adc_sample_rate_hz: float
    """Conversions per second of one ADC, Hz."""
    columns_per_adc: int
    """Columns that share one ADC (converted one after another within a read)."""
    dac_energy_1bit_j: float
    """Energy of one 1-bit DAC drive of one row for one read, joules (k bits: times 2^(k-1))."""
    sense_energy_j: float
    """Energy of sensing (TIA / sample-and-hold) one column signal for one read, joules."""
    shift_add_energy_j: float
    """Energy of one shift-and-add of a converted value into its accumulator, joules."""
    source: str = ""
    """Where the numbers come from."""

    def __post_init__(self) -> None:
        check(isinstance(self.adc_model, str) and self.adc_model in ADC_MODELS, "adc_model",
              f"one of {list(ADC_MODELS)}", self.adc_model)
        for key in ("adc_fom_walden_j", "adc_fom_schreier_db", "adc_fom_corner_hz", "adc_sample_rate_hz",
                    "dac_energy_1bit_j", "sense_energy_j", "shift_add_energy_j"):
            value = getattr(self, key)
            check(is_number(value) and value > 0, key, "a number > 0", value)
        check(is_int(self.columns_per_adc) and 1 <= self.columns_per_adc <= 1 << 20, "columns_per_adc",
              "an integer in [1, 1048576]", self.columns_per_adc)
        check(isinstance(self.source, str), "source", "a string", self.source)

    # ------------------------------------------------------------------ per operation
    def adc_energy_j(self, bits: int) -> float:
        """Energy of one conversion at ``bits`` of resolution and this model's sample rate, joules."""
        _check_bits(bits, "adc bits")
        if self.adc_model == "walden":
            return self.adc_fom_walden_j * 2.0**bits
        fom_db = self.adc_fom_schreier_db - 10.0 * math.log10(math.sqrt(1.0 + (self.adc_sample_rate_hz
                                                                                / self.adc_fom_corner_hz) ** 2))
        sndr_db = SNDR_DB_PER_BIT * bits + SNDR_IDEAL_OFFSET_DB
        return 0.5 * 10.0 ** ((sndr_db - fom_db) / 10.0)

    def dac_energy_j(self, bits: int) -> float:
        """Energy of one DAC conversion (one row, one read) at ``bits`` of resolution, joules."""
        _check_bits(bits, "dac bits")
        return self.dac_energy_1bit_j * 2.0 ** (bits - 1)

    @property
    def adc_conversion_s(self) -> float:
        """Time of one conversion, seconds."""
        return 1.0 / self.adc_sample_rate_hz

    def conversion_time_per_read_s(self, columns: int) -> float:
        """Time the ADCs of a tile of ``columns`` columns need per read: each converts its
        ``min(columns_per_adc, columns)`` columns one after another, seconds."""
        return min(self.columns_per_adc, columns) * self.adc_conversion_s

    def read_time_s(self, t_read_s: float, columns: int) -> float:
        """One read of a tile: the read pulse, then the conversions (not overlapped), seconds."""
        return t_read_s + self.conversion_time_per_read_s(columns)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> PeripheryModel:
        return dataclasses.replace(self, **changes)


def _check_bits(bits: Any, what: str) -> None:
    if not (is_int(bits) and 1 <= bits <= 24):
        raise ValueError(f"{what} = {bits!r}: expected an integer in [1, 24]")


# ----------------------------------------------------------------------------- presets
_HWCOMPONENTS_ISAAC = ("hwcomponents-library (github.com/Accelergy-Project/hwcomponents-library, "
                       "hwcomponents_library/library/isaac.py, commit e21d5b8)")
_MURMANN = ("B. Murmann, 'ADC Performance Survey', github.com/bmurmann/ADC-survey, "
            "plots/foms_plot.json at commit 36d15ce (foms_db_asymp 186.72 dB, f_corner 46.73 MHz)")

ISAAC_ADC_ENERGY_8BIT_J = 16e-3 / (1.2 * 8 * 1e9)
"""ISAAC's ADC (Shafiee et al., ISCA 2016, from Kull et al., ISSCC 2013: 8 bit, 1.2 GS/s, 32 nm): 16 mW for
8 ADCs at 1.2 GS/s each = 1.667 pJ per conversion, as tabulated in hwcomponents-library's isaac.py."""

_ISAAC_COMMON = {
    "adc_sample_rate_hz": 1.2e9,  # ISAAC's ADC rate (Kull et al. ISSCC 2013: 1.2 GS/s)
    "columns_per_adc": 128,  # ISAAC: 8 ADCs for 8 crossbars of 128 columns (hwcomponents isaac.py: 'Area: 9600um^2 / 8')
    "dac_energy_1bit_j": 0.41667e-12,  # ISAAC 1-bit DAC: 4 mW / (128*8*1.2e7) * 128/100 (hwcomponents isaac.py IsaacDAC)
    # ISAAC sample-and-hold: 10 uW for 8 x 128 units read every 100 ns = 0.98 fJ per sample. Recalled from
    # ISAAC's component table, NOT verified against the paper here: treat as an order of magnitude.
    "sense_energy_j": 10e-6 / (8 * 128) * 100e-9,
    "shift_add_energy_j": 0.021e-12,  # ISAAC shift-and-add: 0.2 mW / (1.2*8e9) (hwcomponents isaac.py IsaacShiftAdd)
    "adc_fom_corner_hz": 46.73e6,  # Murmann survey envelope corner (used by 'schreier' only)
}

PERIPHERY_PRESETS: dict[str, PeripheryModel] = {
    "isaac_32nm": PeripheryModel(
        adc_model="walden",
        adc_fom_walden_j=ISAAC_ADC_ENERGY_8BIT_J / 2**8,  # 6.5 fJ/step: ISAAC's 1.667 pJ at 8 bits
        adc_fom_schreier_db=186.72,  # unused by 'walden'; the survey's envelope (see survey_envelope)
        **_ISAAC_COMMON,
        source=f"ISAAC (Shafiee et al., ISCA 2016) components as tabulated in {_HWCOMPONENTS_ISAAC}: ADC 1.667 pJ "
               "per 8-bit conversion at 1.2 GS/s (Kull et al., ISSCC 2013), 128 columns per ADC, 1-bit DAC "
               "0.417 pJ, shift-add 0.021 pJ; sample-and-hold ~1 fJ recalled from ISAAC's table (unverified)",
    ),
    "survey_envelope": PeripheryModel(
        adc_model="schreier",
        adc_fom_walden_j=ISAAC_ADC_ENERGY_8BIT_J / 2**8,  # unused by 'schreier'
        adc_fom_schreier_db=186.72,  # Murmann survey: mean of the 5 best FoM_S,hf (linear), in dB
        **_ISAAC_COMMON,
        source=f"ADC: the state-of-the-art envelope of {_MURMANN} at ISAAC's 1.2 GS/s (an optimistic bound: "
               f"the best published designs); DAC, sense and shift-add as isaac_32nm ({_HWCOMPONENTS_ISAAC})",
    ),
}
DEFAULT_PERIPHERY_PRESET = "isaac_32nm"

PERIPHERY_KEYS = tuple(f.name for f in dataclasses.fields(PeripheryModel) if f.name != "source")
"""The periphery parameters a config may override."""


def get_periphery_preset(name: str) -> PeripheryModel:
    """Preset by name; the error lists the valid names."""
    try:
        return PERIPHERY_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown periphery preset {name!r}; valid: {sorted(PERIPHERY_PRESETS)}") from None


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class EnergySettings:
    """What the evaluation measures of energy and latency (the workflow's ``evaluation.energy``).

    ``periphery_preset`` names a :data:`PERIPHERY_PRESETS` entry; every other periphery key, when given,
    overrides the preset's value (None: the preset's)."""

    enabled: bool = True
    """Measure energy and latency per layer and per inference."""
    n_images: int = 32
    """Test images the energy pass runs (per method, first seed); energies are per image."""
    power_sample_vectors: int = 64
    """Row-voltage vectors per layer forward whose array power is computed (evenly spaced; their mean
    power stands for every read of that forward); 0: every vector."""
    periphery_preset: str = DEFAULT_PERIPHERY_PRESET
    adc_model: str | None = None
    adc_fom_walden_j: float | None = None
    adc_fom_schreier_db: float | None = None
    adc_fom_corner_hz: float | None = None
    adc_sample_rate_hz: float | None = None
    columns_per_adc: int | None = None
    dac_energy_1bit_j: float | None = None
    sense_energy_j: float | None = None
    shift_add_energy_j: float | None = None

    def __post_init__(self) -> None:
        check(isinstance(self.enabled, bool), "enabled", "true or false", self.enabled)
        check(is_int(self.n_images) and 1 <= self.n_images <= 100_000, "n_images", "an integer in [1, 100000]",
              self.n_images)
        check(is_int(self.power_sample_vectors) and 0 <= self.power_sample_vectors <= 10**9,
              "power_sample_vectors", "0 (every vector) or an integer >= 1", self.power_sample_vectors)
        check(isinstance(self.periphery_preset, str) and self.periphery_preset in PERIPHERY_PRESETS,
              "periphery_preset", f"one of {sorted(PERIPHERY_PRESETS)}", self.periphery_preset)
        self.periphery()  # every override checked by the model, naming its key

    def overrides(self) -> dict[str, Any]:
        """The periphery keys set here (not None)."""
        return {k: getattr(self, k) for k in PERIPHERY_KEYS if getattr(self, k) is not None}

    def periphery(self) -> PeripheryModel:
        """The preset with the overrides applied (validated)."""
        preset = get_periphery_preset(self.periphery_preset)
        changes = self.overrides()
        if not changes:
            return preset
        return preset.replace(**changes, source=f"{preset.source}; overridden: {sorted(changes)}")
