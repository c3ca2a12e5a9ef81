"""Each rule's slice of the config, as the JSON text its stage CLI takes, and the workflow's file names.

A rule's ``params`` hold only the keys it uses, so a config change re-runs exactly the jobs it affects
(Snakemake's ``params`` rerun trigger). Every function takes the validated config
(:func:`pipeline.config.validate_config`) and names; ``rules/common.smk`` binds them to wildcards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from dnn.settings import used_evaluation
from pipeline.config import CIRCUIT_STAGE_KEYS, crossbar_settings

REPORT_PLOT_KINDS = ("accuracy", "accuracy_vs_sigma", "accuracy_vs_drift", "accuracy_vs_size")
"""The report's plots, one file each: ``{results}/report/{kind}.png``."""
DNN_SAMPLES = {"n_conductance": 4, "n_vectors": 256}
"""Size of the held-out DNN-distribution set that checks a surrogate's fidelity."""
DNN_SEED_OFFSET = 1000
"""Added to a circuit's sampling seed for that held-out set (never the training draws)."""
SPICE_S_PER_VECTOR_128 = 0.845
"""ngspice seconds per input vector, 128x128 non-linear (sinh) cell, KLU: bench/bench_spice.py (README). The
slowest route: linear circuits take the superposition path, 40-100x faster."""


def dumps(obj: Any) -> str:
    """Canonical JSON (sorted keys): the same settings always give the same text."""
    return json.dumps(obj, sort_keys=True)


def alternatives(names: Iterable[str]) -> str:
    """A regular expression matching exactly one of ``names`` (a wildcard constraint)."""
    return "|".join(re.escape(n) for n in names)


def circuit_json(config: dict[str, Any], circuit: str) -> str:
    """The circuit's own keys (preset, netlist, sizes, resistances), without stage settings."""
    entry = {k: v for k, v in config["circuits"][circuit].items() if k not in CIRCUIT_STAGE_KEYS}
    return dumps(entry)


def tile_bank_path(results: str, circuit: str) -> str:
    """The tiles and activations of a circuit's source model (``spice_tile_bank``)."""
    return f"{results}/spice/{circuit}.tiles.npz"


def sampling_json(config: dict[str, Any], circuit: str) -> str:
    """Sampler settings; ``source_model`` becomes the from_file sampler over that model's tile bank."""
    sampling = dict(config["circuits"][circuit]["sampling"])
    if sampling.pop("source_model", None):
        sampling["sampler"] = "from_file"
        sampling["source_file"] = tile_bank_path(config["results_dir"], circuit)
    return dumps(sampling)


def spice_shard_inputs(config: dict[str, Any], circuit: str) -> list[str]:
    """A distribution-matched sampler needs the source model's tile bank first."""
    source = config["circuits"][circuit]["sampling"].get("source_model")
    return [tile_bank_path(config["results_dir"], circuit)] if source else []


def source_model_path(config: dict[str, Any], circuit: str) -> str:
    """The model whose tiles and activations give the DNN-distribution samples of a circuit:
    ``sampling.source_model`` when set, else the first entry of ``models``."""
    source = config["circuits"][circuit]["sampling"].get("source_model") or next(iter(config["models"]))
    return f"{config['results_dir']}/models/{source}.pt"


def sampling_seed(config: dict[str, Any], circuit: str) -> int:
    """The circuit's sampling seed."""
    return config["circuits"][circuit]["sampling"]["seed"]


def dnn_sampling_json(config: dict[str, Any], circuit: str) -> str:
    """A small held-out set drawn from the source model's tiles and activations (fidelity check)."""
    return dumps({"sampler": "from_file", "source_file": tile_bank_path(config["results_dir"], circuit),
                  **DNN_SAMPLES, "seed": sampling_seed(config, circuit) + DNN_SEED_OFFSET})


def crossbar_json(config: dict[str, Any]) -> str:
    """The shared ``crossbar`` defaults."""
    return dumps(config.get("crossbar") or {})


def spice_shards(config: dict[str, Any], circuit: str) -> list[str]:
    """The ngspice shard files merged into one circuit's dataset."""
    n = config["circuits"][circuit]["sampling"]["n_shards"]
    return [f"{config['results_dir']}/spice/{circuit}/shard{k}.h5" for k in range(n)]


def surrogate_params_json(config: dict[str, Any], circuit: str) -> str:
    """The circuit's surrogate training settings."""
    return dumps(config["circuits"][circuit].get("surrogate") or {})


def model_json(config: dict[str, Any], model: str) -> str:
    """One model's training settings."""
    return dumps(config["models"][model])


def scenario_circuits(config: dict[str, Any], scenario: str) -> list[str]:
    """The circuits a scenario runs on: its ``circuits`` list, else every circuit."""
    return list(config["scenarios"][scenario].get("circuits") or config["circuits"])


def scenario_json(config: dict[str, Any], scenario: str) -> str:
    """The crossbar settings of one scenario: shared ``crossbar`` defaults overridden by the scenario."""
    return dumps(crossbar_settings(config, scenario))


def evaluation_priority(config: dict[str, Any], scenario: str) -> int:
    """Scheduling priority of a scenario's evaluations: per-read noise costs several times a noiseless
    evaluation (each read draws and loads its own noise), so those start first and the short ones fill the
    job slots at the end (longest first shortens the run on a few cores)."""
    from dnn.config import CrossbarConfig

    cfg = CrossbarConfig.from_dict(crossbar_settings(config, scenario))
    return 1 if cfg.read_noise_on and cfg.read_noise_mode == "per_read" else 0


def device_preset_flag(config: dict[str, Any], scenario: str) -> str:
    """``--device-preset NAME`` when the scenario names one (its drift law; the conductance range is the
    circuit's), else nothing."""
    preset = config["scenarios"][scenario].get("device_preset")
    return f"--device-preset {preset}" if preset else ""


def evaluation_json(config: dict[str, Any]) -> str:
    """The evaluation settings shared by every scenario, without the blocks of methods it does not run
    (``dnn.settings.used_evaluation``): editing those reruns no evaluation."""
    return dumps(used_evaluation(config["evaluation"]))


def report_json(config: dict[str, Any]) -> str:
    """The report's settings."""
    return dumps(config.get("report") or {})


def eval_results(config: dict[str, Any]) -> list[str]:
    """One evaluation per scenario x its circuits x model."""
    return [f"{config['results_dir']}/eval/{circuit}/{model}/{scenario}.json"
            for scenario in config["scenarios"] for circuit in scenario_circuits(config, scenario)
            for model in config["models"]]


def report_plots(results: str) -> dict[str, str]:
    """The report's plot files by kind."""
    return {kind: f"{results}/report/{kind}.png" for kind in REPORT_PLOT_KINDS}


def spice_shard_runtime_min(config: dict[str, Any], circuit: str) -> int:
    """Minutes for one ngspice shard: its vectors at the non-linear rate for the array size (x3, + 5)."""
    entry = config["circuits"][circuit]
    sampling = entry["sampling"]
    rows, cols = entry.get("rows"), entry.get("cols")
    cells = (rows or 64) * (cols or 64)  # presets: 64x64 or 128x128; size the bound for 128x128 then
    if rows is None and "128" in str(entry.get("preset", "")):
        cells = 128 * 128
    matrices = -(-sampling["n_conductance"] // sampling["n_shards"])
    seconds = matrices * sampling["n_vectors"] * SPICE_S_PER_VECTOR_128 * (cells / 128**2) ** 1.6
    return int(5 + 3 * seconds / 60)
