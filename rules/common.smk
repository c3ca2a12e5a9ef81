# Named helpers that hand each rule only its slice of the config (so a config change re-runs exactly
# what it affects), and the wildcard constraints, declared once.
import json
import os
import re
import sys

from xbarchar.config import CIRCUIT_STAGE_KEYS, crossbar_settings, validate_config

PY = sys.executable
# Progress bars go to the rule logs: one update every 30 s keeps them readable.
os.environ.setdefault("TQDM_MININTERVAL", "30")
RESULTS = config["results_dir"]
CIRCUITS = list(config["circuits"])
MODELS = list(config["models"])
SCENARIOS = list(config["scenarios"])


REPORT_PLOTS = {kind: f"{RESULTS}/report/{kind}.png"
                for kind in ("accuracy", "accuracy_vs_sigma", "accuracy_vs_drift", "accuracy_vs_size")}


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    circuit=_alternatives(CIRCUITS),
    model=_alternatives(MODELS),
    scenario=_alternatives(SCENARIOS),
    shard=r"\d+",


def _dumps(obj):
    return json.dumps(obj, sort_keys=True)


def simulated_circuits():
    """Circuits whose surrogate is trained here (no external surrogate_file)."""
    return [c for c in CIRCUITS if not config["circuits"][c].get("surrogate_file")]


def circuit_json(wildcards):
    """The circuit's own keys (preset, netlist, sizes, resistances), without stage settings."""
    entry = dict(config["circuits"][wildcards.circuit])
    for key in CIRCUIT_STAGE_KEYS:
        entry.pop(key, None)
    return _dumps(entry)


def tile_bank_path(circuit):
    return f"{RESULTS}/spice/{circuit}.tiles.npz"


def sampling_json(wildcards):
    """Sampler settings; `source_model` becomes the from_file sampler over that model's tile bank."""
    sampling = dict(config["circuits"][wildcards.circuit]["sampling"])
    if sampling.pop("source_model", None):
        sampling["sampler"] = "from_file"
        sampling["source_file"] = tile_bank_path(wildcards.circuit)
    return _dumps(sampling)


def spice_shard_inputs(wildcards):
    """A distribution-matched sampler needs the source model's tile bank first."""
    source = config["circuits"][wildcards.circuit]["sampling"].get("source_model")
    return [tile_bank_path(wildcards.circuit)] if source else []


def source_model_path(wildcards):
    """The model whose tiles and activations give the DNN-distribution samples of a circuit:
    `sampling.source_model` when set, else the first entry of `models`."""
    source = config["circuits"][wildcards.circuit]["sampling"].get("source_model") or MODELS[0]
    return f"{RESULTS}/models/{source}.pt"


def sampling_seed(wildcards):
    return config["circuits"][wildcards.circuit]["sampling"]["seed"]


def dnn_sampling_json(wildcards):
    """A small held-out set drawn from the source model's tiles and activations (fidelity check)."""
    seed = config["circuits"][wildcards.circuit]["sampling"]["seed"] + 1000
    return _dumps({"sampler": "from_file", "source_file": tile_bank_path(wildcards.circuit),
                   "n_conductance": 4, "n_vectors": 256, "seed": seed})


def crossbar_json(wildcards):
    return _dumps(config.get("crossbar", {}))


def spice_shards(wildcards):
    n = config["circuits"][wildcards.circuit]["sampling"]["n_shards"]
    return [f"{RESULTS}/spice/{wildcards.circuit}/shard{k}.h5" for k in range(n)]


def surrogate_params_json(wildcards):
    return _dumps(config["circuits"][wildcards.circuit].get("surrogate", {}))


def surrogate_path(wildcards):
    """An external surrogate file named in the config, else the one trained by the pipeline."""
    external = config["circuits"][wildcards.circuit].get("surrogate_file")
    return external if external else f"{RESULTS}/surrogate/{wildcards.circuit}.h5"


def model_json(wildcards):
    return _dumps(config["models"][wildcards.model])


def scenario_circuits(scenario):
    """The circuits a scenario runs on: its `circuits` list, else every circuit."""
    return list(config["scenarios"][scenario].get("circuits") or CIRCUITS)


def scenario_json(wildcards):
    """The crossbar settings of one scenario: shared `crossbar` defaults overridden by the scenario."""
    return _dumps(crossbar_settings(config, wildcards.scenario))


def device_preset_flag(wildcards):
    """`--device-preset NAME` when the scenario names one (its drift law; the conductance range is the
    circuit's), else nothing."""
    preset = config["scenarios"][wildcards.scenario].get("device_preset")
    return f"--device-preset {preset}" if preset else ""


def evaluation_json(wildcards):
    return _dumps(config["evaluation"])


def eval_results():
    """One evaluation per scenario x its circuits x model."""
    return [f"{RESULTS}/eval/{circuit}/{model}/{scenario}.json"
            for scenario in SCENARIOS for circuit in scenario_circuits(scenario) for model in MODELS]


def report_json(wildcards):
    return _dumps(config.get("report", {}))


def all_targets():
    return [
        *expand(f"{RESULTS}/surrogate/{{circuit}}.fidelity.json", circuit=simulated_circuits()),
        *expand(f"{RESULTS}/surrogate/{{circuit}}.fidelity_dnn.json", circuit=simulated_circuits()),
        *eval_results(),
        f"{RESULTS}/report/results.md",
        f"{RESULTS}/report/results.csv",
        *REPORT_PLOTS.values(),
    ]


# Every config mistake fails here, when the workflow is parsed (`snakemake -n` included), naming the key.
validate_config(config)
