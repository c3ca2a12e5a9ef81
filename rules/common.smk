# Named helpers that hand each rule only its slice of the config (so a config change re-runs exactly
# what it affects), and the wildcard constraints, declared once.
import functools
import hashlib
import importlib.util
import json
import os
import re
import sys

from snakemake.exceptions import WorkflowError

from xbarchar.config import CIRCUIT_STAGE_KEYS, crossbar_settings, exit_on_config_error, validate_config

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
    """Circuits whose surrogate is trained here (no external surrogate_file, none in the output cache)."""
    return [c for c in CIRCUITS if not config["circuits"][c].get("surrogate_file")
            and not cached_file(c, "surrogate")]


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
    """An external surrogate file named in the config, else one from the between-workflow cache, else
    the one trained by the pipeline."""
    external = config["circuits"][wildcards.circuit].get("surrogate_file")
    cached = cached_file(wildcards.circuit, "surrogate")
    return external or cached or f"{RESULTS}/surrogate/{wildcards.circuit}.h5"


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
exit_on_config_error(validate_config, config)


onstart:
    check_cluster()


# ----------------------------------------------------------------------------- resources
# Every rule declares `threads:` and `resources:` (mem_mb, runtime in minutes); the values come from the
# rules' benchmark files (results/benchmarks/, README "Declared resources") with a margin, and a profile
# can override any of them per rule (`set-resources`, `set-threads`). The stage CLIs take their torch,
# BLAS and OpenMP thread counts from `--threads {threads}`, so `--cores N` locally and a SLURM
# allocation (cpus-per-task = threads) are never oversubscribed.

SPICE_S_PER_VECTOR_128 = 0.845
"""ngspice seconds per input vector, 128x128 non-linear (sinh) cell, KLU: bench/bench_spice.py (README). The
slowest route: linear circuits take the superposition path, 40-100x faster."""


def spice_shard_runtime_min(wildcards):
    """Minutes for one ngspice shard: its vectors at the non-linear rate for the array size (x3, + 5)."""
    entry = config["circuits"][wildcards.circuit]
    sampling = entry["sampling"]
    rows, cols = entry.get("rows"), entry.get("cols")
    cells = (rows or 64) * (cols or 64)  # presets: 64x64 or 128x128; size the bound for 128x128 then
    if rows is None and "128" in str(entry.get("preset", "")):
        cells = 128 * 128
    matrices = -(-sampling["n_conductance"] // sampling["n_shards"])
    seconds = matrices * sampling["n_vectors"] * SPICE_S_PER_VECTOR_128 * (cells / 128**2) ** 1.6
    return int(5 + 3 * seconds / 60)


# ----------------------------------------------------------------------------- cluster check
def _cluster_check_module():
    """scripts/cluster_check.py (standard library only), loaded by path."""
    name = "_xbarchar_cluster_check"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(workflow.basedir, "scripts",
                                                                          "cluster_check.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


SLURM_EXECUTORS = ("slurm", "slurm-bounded")
"""Executors that submit to SLURM (profiles/slurm uses slurm-bounded; see plugins/slurm-bounded)."""


def check_cluster():
    """With the SLURM executor, before anything is submitted: the cluster answers (munge, slurmctld) and
    knows every partition and account the jobs ask for, and the status command works. One error naming
    every missing piece; no job, folder or file is made."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.cli_prefix not in SLURM_EXECUTORS:
        return
    jobs = list(workflow.dag.needrun_jobs())
    partitions = {job.resources.get("slurm_partition") for job in jobs} - {None}
    accounts = {job.resources.get("slurm_account") for job in jobs} - {None}
    status_command = workflow.executor_settings.status_command
    problems = _cluster_check_module().slurm_problems(partitions, accounts, status_command)
    if problems:
        raise WorkflowError("the SLURM cluster cannot run this workflow:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------- between-workflow cache
# `snakemake --cache` with SNAKEMAKE_OUTPUT_CACHE=/shared/folder: the SPICE-dataset and surrogate rules
# (`cache:`, set when the run uses `--cache`) store their outputs there, keyed by Snakemake's provenance hash, and another project
# that would make the same file fetches it instead. Snakemake still runs the *upstream* jobs of a
# cached job (the ngspice shards), so the workflow also keeps an index of what the cache holds by
# circuit provenance ($SNAKEMAKE_OUTPUT_CACHE/xbarchar/{spice,surrogate}-KEY.h5, links to the cached
# files, written when a run succeeds). A circuit whose surrogate is in that index is used like
# `surrogate_file`: no SPICE, no training; a circuit whose SPICE dataset is in it skips ngspice.
# The key: the circuit's keys (not its name), the netlist's text, the sampling and surrogate settings,
# the rules' commands and the spice/ and surrogate/ package sources (a code change is a new key).
CACHE_INDEX_STAGES = ("spice", "surrogate")


def between_workflow_cache():
    """True when this run uses Snakemake's between-workflow output cache (`--cache`). The cached rules
    are marked only then: otherwise Snakemake warns on every run that they could be cached."""
    return workflow.workflow_settings.cache is not None


def output_cache_index():
    """The index folder when this run uses the between-workflow cache (`--cache`), else None."""
    folder = os.environ.get("SNAKEMAKE_OUTPUT_CACHE")
    if workflow.workflow_settings.cache is None or not folder:
        return None
    return os.path.join(folder, "xbarchar")


def _package_sha256(package):
    """sha256 over the package's Python sources (sorted by name)."""
    h = hashlib.sha256()
    folder = os.path.join(workflow.basedir, package)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            h.update(name.encode())
            with open(os.path.join(folder, name), "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


@functools.cache
def provenance_key(circuit, stage):
    """What a circuit's SPICE dataset (stage "spice") or surrogate ("surrogate") is made from, as a
    sha256; None where it depends on a trained model (`sampling.source_model`)."""
    from spice.circuit import spec_from_config

    entry = config["circuits"][circuit]
    if entry["sampling"].get("source_model"):
        return None
    keys = {k: v for k, v in entry.items() if k not in CIRCUIT_STAGE_KEYS}
    spec = spec_from_config(circuit, dict(keys))
    what = {"circuit": keys, "netlist_sha256": hashlib.sha256(spec.netlist_text.encode()).hexdigest(),
            "sampling": entry["sampling"], "spice_code": _package_sha256("spice"),
            "commands": [workflow.get_rule(r).shellcmd for r in ("spice_shard", "spice_merge")]}
    if stage == "surrogate":
        what.update(surrogate=entry.get("surrogate", {}), surrogate_code=_package_sha256("surrogate"),
                    surrogate_command=workflow.get_rule("surrogate_train").shellcmd)
    return hashlib.sha256(_dumps(what).encode()).hexdigest()


def _index_path(circuit, stage):
    """Where the index links this circuit's dataset or surrogate; None without `--cache` or a key."""
    folder = output_cache_index()
    key = provenance_key(circuit, stage) if folder else None
    return os.path.join(folder, f"{stage}-{key}.h5") if key else None


@functools.cache
def cached_file(circuit, stage):
    """The cached SPICE dataset or surrogate of this circuit when the cache index has it, else None."""
    path = _index_path(circuit, stage)
    return os.path.realpath(path) if path and os.path.exists(path) else None


def spice_dataset_path(wildcards):
    """The circuit's SPICE dataset: from the between-workflow cache when it holds one, else made here."""
    return cached_file(wildcards.circuit, "spice") or f"{RESULTS}/spice/{wildcards.circuit}.h5"


def index_cached_outputs():
    """After a successful run with `--cache`: link every SPICE dataset and surrogate Snakemake moved into
    the cache (the result is then a link into it) from the index, under its provenance key."""
    if output_cache_index() is None:
        return
    os.makedirs(output_cache_index(), exist_ok=True)
    for circuit in simulated_circuits():
        for stage in CACHE_INDEX_STAGES:
            made, index = f"{RESULTS}/{stage}/{circuit}.h5", _index_path(circuit, stage)
            if index and os.path.islink(made) and not os.path.exists(index):
                tmp = f"{index}.tmp{os.getpid()}"
                os.symlink(os.path.realpath(made), tmp)
                os.replace(tmp, index)


onsuccess:
    index_cached_outputs()
